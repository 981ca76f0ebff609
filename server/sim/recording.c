/*
 * recording.c — raw Binance spot WebSocket recordings into typed events
 * (sim-recording.h). Load-time only: zlib's gzgets reads gzip and plain
 * files alike, jansson parses each line's JSON (about 200k lines for all of
 * ../shared/data/ws/recordings: well under a second), and every price and
 * quantity goes through cq_dec_parse.
 *
 * Threads: none. Bounds: SIM_REC_LINE_MAX bytes per line, SIM_REC_FILES_MAX
 * files, SIM_REC_EVENTS_MAX events and SIM_REC_LEVELS_MAX levels per load;
 * the arrays double as they grow.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "cq/text.h"
#include "sim-recording.h"

struct loader {
    struct cq_sim__recording *r;
    const struct cq_sim__recording_options *opts;
    size_t cap_events, cap_levels;
    int64_t last_recv_us;
    uint64_t last_depth_u; /* 0 before the first diff */
    int time_digits;       /* digits of this file's receive times, 0 before the first */
    const char *path;
    size_t line_no;
    struct cq_err *err;
};

/* A bad line: the message names file:line; 1 when skipped, else < 0. */
CQ_PRINTF(3, 4)
static int bad_line(struct loader *ld, const char *fix, const char *fmt, ...)
{
    char problem[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    if (ld->opts->skip_bad_lines) {
        if (ld->r->bad_lines++ == 0) {
            snprintf(ld->r->first_bad, sizeof(ld->r->first_bad), "%s:%zu: %s", ld->path,
                     ld->line_no, problem);
        }
        return 1;
    }
    return cq_err_set(ld->err, CQ_EPARSE, 0, fix, "%s:%zu: %s; %s", ld->path, ld->line_no, problem,
                      fix);
}

/* A broken recording: always fatal. */
CQ_PRINTF(3, 4)
static int broken(struct loader *ld, const char *fix, const char *fmt, ...)
{
    char problem[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return cq_err_set(ld->err, CQ_EPARSE, 0, fix, "%s:%zu: %s; %s", ld->path, ld->line_no, problem,
                      fix);
}

static struct cq_sim__rec_event *push_event(struct loader *ld)
{
    struct cq_sim__recording *r = ld->r;
    if (r->n_events == ld->cap_events) {
        size_t ncap = ld->cap_events == 0 ? 4096 : ld->cap_events * 2;
        struct cq_sim__rec_event *ne = realloc(r->events, ncap * sizeof(*ne));
        if (ne == NULL) {
            return NULL;
        }
        r->events = ne;
        ld->cap_events = ncap;
    }
    struct cq_sim__rec_event *e = &r->events[r->n_events];
    memset(e, 0, sizeof(*e));
    return e;
}

static int reserve_levels(struct loader *ld, size_t n)
{
    struct cq_sim__recording *r = ld->r;
    if (r->n_levels + n > SIM_REC_LEVELS_MAX) {
        return broken(ld, "replay a shorter recording",
                      "more than %zu depth levels in the recording", SIM_REC_LEVELS_MAX);
    }
    if (r->n_levels + n <= ld->cap_levels) {
        return 0;
    }
    size_t ncap = ld->cap_levels == 0 ? 65536 : ld->cap_levels;
    while (ncap < r->n_levels + n) {
        ncap *= 2;
    }
    struct cq_sim__rec_level *nl = realloc(r->levels, ncap * sizeof(*nl));
    if (nl == NULL) {
        return cq_err_set(ld->err, CQ_ENOMEM, 0, NULL, "%s:%zu: out of memory for depth levels",
                          ld->path, ld->line_no);
    }
    r->levels = nl;
    ld->cap_levels = ncap;
    return 0;
}

/* ---- fields --------------------------------------------------------------- */

/* 0 ok, 1 skipped, < 0 error. */
static int get_dec(struct loader *ld, json_t *obj, const char *key, bool positive, cq_dec *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        return bad_line(ld, "record the raw Binance message", "field \"%s\" is %s, not a string",
                        key, v == NULL ? "missing" : "of the wrong type");
    }
    const char *s = json_string_value(v);
    if (cq_dec_parse(s, json_string_length(v), out) < 0) {
        return bad_line(ld, "record the raw Binance message",
                        "field \"%s\" '%.40s' is not a decimal number", key, s);
    }
    if (positive ? cq_dec_sign(*out) <= 0 : cq_dec_sign(*out) < 0) {
        return bad_line(ld, "record the raw Binance message", "field \"%s\" %.40s must be %s", key,
                        s, positive ? "above zero" : "zero or more");
    }
    return 0;
}

static int get_uint(struct loader *ld, json_t *obj, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return bad_line(ld, "record the raw Binance message",
                        "field \"%s\" is %s, not a non-negative integer", key,
                        v == NULL ? "missing" : "of the wrong type");
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Levels [[price, qty], ...] into r->levels; *n_out the count. */
static int get_levels(struct loader *ld, json_t *obj, const char *key, bool allow_zero,
                      uint32_t *n_out)
{
    json_t *arr = json_object_get(obj, key);
    if (!json_is_array(arr)) {
        return bad_line(ld, "record the raw Binance message", "field \"%s\" is %s, not an array",
                        key, arr == NULL ? "missing" : "of the wrong type");
    }
    size_t n = json_array_size(arr);
    int rc = reserve_levels(ld, n);
    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *lv = json_array_get(arr, i);
        json_t *p = json_array_get(lv, 0);
        json_t *q = json_array_get(lv, 1);
        struct cq_sim__rec_level *out = &ld->r->levels[ld->r->n_levels + i];
        if (!json_is_array(lv) || json_array_size(lv) != 2 || !json_is_string(p) ||
            !json_is_string(q) ||
            cq_dec_parse(json_string_value(p), json_string_length(p), &out->price) < 0 ||
            cq_dec_parse(json_string_value(q), json_string_length(q), &out->qty) < 0) {
            return bad_line(ld, "record the raw Binance message",
                            "\"%s\"[%zu] is not a [\"price\",\"qty\"] pair of decimals", key, i);
        }
        if (cq_dec_sign(out->price) <= 0 || cq_dec_sign(out->qty) < 0 ||
            (!allow_zero && cq_dec_sign(out->qty) == 0)) {
            return bad_line(ld, "record the raw Binance message",
                            "\"%s\"[%zu]: price must be above zero and quantity %s", key, i,
                            allow_zero ? "zero or more" : "above zero");
        }
    }
    ld->r->n_levels += n;
    *n_out = (uint32_t)n;
    return 0;
}

/* ---- one line ------------------------------------------------------------- */

static int check_symbol(struct loader *ld, const char *sym, size_t len)
{
    char up[CQ_SYMBOL_LEN];
    if (len == 0 || len > CQ_SYMBOL_MAX_CHARS) {
        return bad_line(ld, "record the raw Binance message", "stream symbol of %zu characters",
                        len);
    }
    for (size_t i = 0; i < len; i++) {
        char c = sym[i];
        up[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    }
    up[len] = '\0';
    if (ld->r->symbol[0] == '\0') {
        memcpy(ld->r->symbol, up, len + 1);
        return 0;
    }
    if (strcmp(ld->r->symbol, up) != 0) {
        return broken(ld, "give one symbol's files per recording",
                      "symbol %s after %s: a recording holds one symbol", up, ld->r->symbol);
    }
    return 0;
}

static int parse_depth(struct loader *ld, json_t *data, struct cq_sim__rec_event *e, bool snapshot)
{
    int rc;
    size_t level0 = ld->r->n_levels;
    uint32_t nb = 0, na = 0;
    if (snapshot) {
        rc = get_uint(ld, data, "lastUpdateId", &e->u.depth.last_update_id);
        e->u.depth.first_update_id = e->u.depth.last_update_id;
    } else {
        uint64_t ev_ms = 0;
        rc = get_uint(ld, data, "U", &e->u.depth.first_update_id);
        if (rc == 0) {
            rc = get_uint(ld, data, "u", &e->u.depth.last_update_id);
        }
        if (rc == 0) {
            rc = get_uint(ld, data, "E", &ev_ms);
        }
        e->u.depth.event_ms = (int64_t)ev_ms;
        if (rc == 0 && e->u.depth.first_update_id > e->u.depth.last_update_id) {
            rc = bad_line(ld, "record the raw Binance message", "depth U %llu is above u %llu",
                          (unsigned long long)e->u.depth.first_update_id,
                          (unsigned long long)e->u.depth.last_update_id);
        }
    }
    if (rc == 0) {
        rc = get_levels(ld, data, snapshot ? "bids" : "b", !snapshot, &nb);
    }
    if (rc == 0) {
        rc = get_levels(ld, data, snapshot ? "asks" : "a", !snapshot, &na);
    }
    if (rc != 0) {
        ld->r->n_levels = level0; /* a skipped line leaves no levels behind */
        return rc;
    }
    e->u.depth.level0 = level0;
    e->u.depth.n_bids = nb;
    e->u.depth.n_asks = na;
    if (!snapshot) {
        if (ld->last_depth_u != 0 && e->u.depth.first_update_id != ld->last_depth_u + 1) {
            return broken(ld, "replay an unbroken capture (each diff's U = the previous u + 1)",
                          "depth diff U=%llu does not follow the previous u=%llu",
                          (unsigned long long)e->u.depth.first_update_id,
                          (unsigned long long)ld->last_depth_u);
        }
        ld->last_depth_u = e->u.depth.last_update_id;
    }
    return 0;
}

static int parse_line(struct loader *ld, char *line, size_t len)
{
    size_t i = 0;
    int64_t t = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9' && i < 19) {
        t = t * 10 + (line[i] - '0');
        i++;
    }
    if (i == 0 || i >= len || line[i] != ' ') {
        return bad_line(ld, "each line is '<receive time> <raw JSON>'",
                        "no receive time followed by a space");
    }
    int digits = (int)i;
    if (digits != 13 && digits != 16 && digits != 19) {
        return bad_line(ld, "write receive times in ms (13 digits), us (16) or ns (19)",
                        "receive time of %d digits", digits);
    }
    if (ld->time_digits != 0 && digits != ld->time_digits) {
        return broken(ld, "use one time unit per file",
                      "receive time of %d digits after %d-digit ones", digits, ld->time_digits);
    }
    ld->time_digits = digits;
    int64_t recv_us = digits == 19 ? t / 1000 : digits == 16 ? t : t * 1000;
    if (recv_us < ld->last_recv_us) {
        return broken(ld, "give the files in time order, each sorted by receive time",
                      "receive time goes backwards (%lld us before the previous line)",
                      (long long)(ld->last_recv_us - recv_us));
    }

    json_error_t jerr;
    json_t *root = json_loadb(line + i + 1, len - i - 1, 0, &jerr);
    if (root == NULL) {
        return bad_line(ld, "each line is '<receive time> <raw JSON>'", "not JSON: %s", jerr.text);
    }
    if (ld->r->n_events >= SIM_REC_EVENTS_MAX) {
        json_decref(root);
        return broken(ld, "replay a shorter recording", "more than %zu events", SIM_REC_EVENTS_MAX);
    }
    struct cq_sim__rec_event *e = push_event(ld);
    int rc = 0;
    if (e == NULL) {
        json_decref(root);
        return cq_err_set(ld->err, CQ_ENOMEM, 0, NULL, "%s:%zu: out of memory", ld->path,
                          ld->line_no);
    }
    e->recv_us = recv_us;
    json_t *stream = json_object_get(root, "stream");
    json_t *data = json_object_get(root, "data");
    if (stream == NULL && json_object_get(root, "lastUpdateId") != NULL) {
        e->kind = SIM_REC_SNAPSHOT;
        rc = parse_depth(ld, root, e, true);
        goto done;
    }
    if (!json_is_string(stream) || !json_is_object(data)) {
        rc = bad_line(ld, "record the combined stream ({\"stream\":…,\"data\":{…}})",
                      "no \"stream\" string and \"data\" object");
        goto done;
    }
    const char *sname = json_string_value(stream);
    const char *at = strchr(sname, '@');
    if (at == NULL) {
        rc = bad_line(ld, "record <symbol>@trade, @bookTicker or @depth streams",
                      "stream '%.60s' has no '@'", sname);
        goto done;
    }
    rc = check_symbol(ld, sname, (size_t)(at - sname));
    if (rc != 0) {
        goto done;
    }
    if (strcmp(at, "@trade") == 0) {
        json_t *m = json_object_get(data, "m");
        uint64_t tms = 0;
        e->kind = SIM_REC_TRADE;
        rc = get_uint(ld, data, "t", &e->u.trade.id);
        if (rc == 0) {
            rc = get_dec(ld, data, "p", true, &e->u.trade.price);
        }
        if (rc == 0) {
            rc = get_dec(ld, data, "q", true, &e->u.trade.qty);
        }
        if (rc == 0) {
            rc = get_uint(ld, data, "T", &tms);
        }
        if (rc == 0 && !json_is_boolean(m)) {
            rc = bad_line(ld, "record the raw Binance message", "field \"m\" is not a boolean");
        }
        e->u.trade.time_ms = (int64_t)tms;
        e->u.trade.buyer_is_maker = json_is_true(m);
    } else if (strcmp(at, "@bookTicker") == 0) {
        e->kind = SIM_REC_BOOK_TICKER;
        rc = get_uint(ld, data, "u", &e->u.ticker.update_id);
        if (rc == 0) {
            rc = get_dec(ld, data, "b", true, &e->u.ticker.bid);
        }
        if (rc == 0) {
            rc = get_dec(ld, data, "B", false, &e->u.ticker.bid_qty);
        }
        if (rc == 0) {
            rc = get_dec(ld, data, "a", true, &e->u.ticker.ask);
        }
        if (rc == 0) {
            rc = get_dec(ld, data, "A", false, &e->u.ticker.ask_qty);
        }
        if (rc == 0 && cq_dec_cmp(e->u.ticker.bid, e->u.ticker.ask) >= 0) {
            rc = bad_line(ld, "record the raw Binance message", "bookTicker bid is not below ask");
        }
    } else if (strcmp(at, "@depth") == 0 || strcmp(at, "@depth@100ms") == 0) {
        e->kind = SIM_REC_DEPTH;
        rc = parse_depth(ld, data, e, false);
    } else {
        rc = bad_line(ld, "record <symbol>@trade, @bookTicker or @depth streams",
                      "stream '%.60s' is not one the replay reads", sname);
    }
done:
    json_decref(root);
    if (rc != 0) {
        return rc; /* skipped (1) or an error (< 0) */
    }
    switch (e->kind) {
    case SIM_REC_TRADE:
        ld->r->n_trades++;
        break;
    case SIM_REC_BOOK_TICKER:
        ld->r->n_tickers++;
        break;
    case SIM_REC_DEPTH:
        ld->r->n_depths++;
        break;
    case SIM_REC_SNAPSHOT:
    default:
        ld->r->n_snapshots++;
        break;
    }
    ld->r->n_events++;
    ld->last_recv_us = recv_us;
    return 0;
}

static int load_file(struct loader *ld, const char *path, char *buf)
{
    int rc = 0;
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL) {
        return cq_err_set(ld->err, CQ_EIO, errno,
                          "give a recording file such as "
                          "../shared/data/ws/recordings/binance-spot-BTCUSDT-20240808.txt.gz",
                          "%s: cannot open the recording", path);
    }
    ld->path = path;
    ld->line_no = 0;
    ld->time_digits = 0;
    while (gzgets(gz, buf, (int)SIM_REC_LINE_MAX + 2) != NULL) {
        size_t len = strlen(buf);
        ld->line_no++;
        if (len > 0 && buf[len - 1] == '\n') {
            buf[--len] = '\0';
        } else if (!gzeof(gz) || len > SIM_REC_LINE_MAX) {
            rc = broken(ld, "each message is one line", "line longer than %zu bytes",
                        SIM_REC_LINE_MAX);
            goto out;
        }
        if (len > 0 && buf[len - 1] == '\r') {
            buf[--len] = '\0';
        }
        if (len == 0) {
            continue; /* a trailing empty line */
        }
        rc = parse_line(ld, buf, len);
        if (rc < 0) {
            goto out;
        }
        rc = 0;
    }
    int zerr = Z_OK;
    const char *zmsg = gzerror(gz, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        rc = cq_err_set(ld->err, CQ_EIO, zerr == Z_ERRNO ? errno : 0,
                        "check the file (a truncated .gz fails here)", "%s:%zu: read error: %s",
                        path, ld->line_no, zmsg);
    }
out:
    gzclose(gz);
    return rc;
}

struct cq_sim__recording *cq_sim__recording_load(const char *const *paths, size_t n_paths,
                                                 const struct cq_sim__recording_options *opts,
                                                 struct cq_err *err)
{
    static const struct cq_sim__recording_options defaults = {.skip_bad_lines = false};
    struct loader ld;
    memset(&ld, 0, sizeof(ld));
    if (n_paths == 0 || n_paths > SIM_REC_FILES_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "give 1 to 64 recording files", "%zu recording files given",
                   n_paths);
        return NULL;
    }
    ld.opts = opts != NULL ? opts : &defaults;
    ld.err = err;
    ld.r = calloc(1, sizeof(*ld.r));
    char *buf = malloc(SIM_REC_LINE_MAX + 2);
    if (ld.r == NULL || buf == NULL) {
        free(buf);
        free(ld.r);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "out of memory loading a recording");
        return NULL;
    }
    for (size_t i = 0; i < n_paths; i++) {
        if (load_file(&ld, paths[i], buf) < 0) {
            free(buf);
            cq_sim__recording_free(ld.r);
            return NULL;
        }
    }
    free(buf);
    if (ld.r->n_events == 0) {
        cq_err_set(err, CQ_EPARSE, 0, "give a recording with trade, bookTicker or depth lines",
                   "%s: no events", paths[0]);
        cq_sim__recording_free(ld.r);
        return NULL;
    }
    return ld.r;
}

void cq_sim__recording_free(struct cq_sim__recording *r)
{
    if (r == NULL) {
        return;
    }
    free(r->events);
    free(r->levels);
    free(r);
}

int cq_sim__recording_peek_symbol(const char *path, char out[CQ_SYMBOL_LEN], struct cq_err *err)
{
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL) {
        return cq_err_set(err, CQ_EIO, errno,
                          "give a recording file such as "
                          "../shared/data/ws/recordings/binance-spot-BTCUSDT-20240808.txt.gz",
                          "%s: cannot open the recording", path);
    }
    char *buf = malloc(SIM_REC_LINE_MAX + 2);
    int rc = cq_err_set(err, CQ_EPARSE, 0,
                        "give a recording of <symbol>@trade/@bookTicker/@depth streams",
                        "%s: no stream name in its first %d lines", path, SIM_REC_PEEK_LINES);
    for (int line = 0; buf != NULL && line < SIM_REC_PEEK_LINES &&
                       gzgets(gz, buf, (int)SIM_REC_LINE_MAX + 2) != NULL;
         line++) {
        const char *key = strstr(buf, "\"stream\":\"");
        if (key == NULL) {
            continue;
        }
        const char *name = key + 10;
        const char *at = strchr(name, '@');
        size_t len = at != NULL ? (size_t)(at - name) : 0;
        if (len == 0 || len > CQ_SYMBOL_MAX_CHARS) {
            continue;
        }
        for (size_t i = 0; i < len; i++) {
            char c = name[i];
            out[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
        }
        out[len] = '\0';
        rc = 0;
        break;
    }
    if (buf == NULL) {
        rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "out of memory reading %s", path);
    }
    free(buf);
    gzclose(gz);
    return rc;
}
