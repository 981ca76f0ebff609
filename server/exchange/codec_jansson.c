/*
 * codec_jansson.c — the reference decoder of Binance WebSocket market
 * messages (include/cq/codec.h), built on jansson: json_loadb with no
 * flags, then field extraction with the contract written at the top of
 * codec.c. It exists to be obviously right, not fast: tests require the
 * fast path to agree with it on every recorded message and on a table of
 * edge cases, the fuzzer on any input, and the benchmark measures the fast
 * path against it. Pure and reentrant (jansson allocates per call).
 *
 * err_offset is approximate: jansson's byte position for a JSON syntax
 * error, 0 for a contract error (missing field, wrong type).
 *
 * One jansson quirk is corrected before parsing: its byte stream uses NUL
 * as the "buffer empty" mark, so a NUL byte that the lexer reads and puts
 * back (the byte right after a number or a true/false/null) is silently
 * skipped and {"x":1<NUL>} parses. A raw NUL is never valid JSON (no token
 * outside strings, a control character inside them), so any NUL in the
 * input is refused here, as the fast path refuses it (found by
 * tests/fuzz/fuzz_codec.c).
 */
#include "cq/codec.h"

#include <jansson.h>
#include <string.h>

#include "cq/decimal.h"

/* codec.c mirrors jansson's nesting limit without including jansson. */
_Static_assert(JSON_PARSER_MAX_DEPTH == 2048, "codec.c assumes jansson's depth limit of 2048");
/* json_int_t must be int64 for integers to be capped as codec.c caps them. */
_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "codec.c assumes 64-bit json_int_t");

#define DEC_TEXT_MAX 64 /* as in codec.c */

static int get_int(const json_t *v, int64_t max, int64_t *out)
{
    if (!json_is_integer(v)) {
        return -1;
    }
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > max) {
        return -1;
    }
    *out = (int64_t)i;
    return 0;
}

static int get_time(const json_t *obj, const char *key, int64_t *out)
{
    return get_int(json_object_get(obj, key), INT64_MAX, out);
}

static int get_id(const json_t *obj, const char *key, uint64_t *out)
{
    int64_t i;
    if (get_int(json_object_get(obj, key), INT64_MAX, &i) < 0) {
        return -1;
    }
    *out = (uint64_t)i;
    return 0;
}

static int get_bool(const json_t *obj, const char *key, bool *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_boolean(v)) {
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int get_dec(const json_t *obj, const char *key, cq_dec *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        return -1;
    }
    size_t n = json_string_length(v);
    if (n > DEC_TEXT_MAX || cq_dec_parse(json_string_value(v), n, out) < 0) {
        return -1;
    }
    return 0;
}

static int get_text(const json_t *v, char *dst, size_t cap)
{
    if (!json_is_string(v)) {
        return -1;
    }
    size_t n = json_string_length(v);
    if (n == 0 || n > cap - 1) {
        return -1;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return 0;
}

static int get_symbol(const json_t *obj, struct cq_msg *out)
{
    return get_text(json_object_get(obj, "s"), out->symbol, sizeof(out->symbol));
}

static int get_trade(const json_t *p, const char *id_key, struct cq_msg *out)
{
    struct cq_trade_tick *t = &out->u.trade;
    if (get_symbol(p, out) < 0 || get_time(p, "E", &out->event_ms) < 0 ||
        get_id(p, id_key, &t->trade_id) < 0 || get_dec(p, "p", &t->price) < 0 ||
        get_dec(p, "q", &t->qty) < 0 || get_time(p, "T", &t->time_ms) < 0 ||
        get_bool(p, "m", &t->buyer_is_maker) < 0) {
        return -1;
    }
    return 0;
}

static int get_book(const json_t *p, struct cq_msg *out)
{
    struct cq_book_top *b = &out->u.book;
    if (get_symbol(p, out) < 0 || get_id(p, "u", &b->update_id) < 0 ||
        get_dec(p, "b", &b->bid) < 0 || get_dec(p, "B", &b->bid_qty) < 0 ||
        get_dec(p, "a", &b->ask) < 0 || get_dec(p, "A", &b->ask_qty) < 0) {
        return -1;
    }
    if (json_object_get(p, "E") != NULL && get_time(p, "E", &out->event_ms) < 0) {
        return -1;
    }
    return 0;
}

static int get_kline(const json_t *p, struct cq_msg *out)
{
    struct cq_candle *c = &out->u.kline.candle;
    const json_t *k = json_object_get(p, "k");
    char *interval = out->u.kline.interval;
    int64_t trades;

    if (get_symbol(p, out) < 0 || get_time(p, "E", &out->event_ms) < 0 || !json_is_object(k)) {
        return -1;
    }
    if (get_time(k, "t", &c->open_ms) < 0 || get_time(k, "T", &c->close_ms) < 0 ||
        get_dec(k, "o", &c->open) < 0 || get_dec(k, "h", &c->high) < 0 ||
        get_dec(k, "l", &c->low) < 0 || get_dec(k, "c", &c->close) < 0 ||
        get_dec(k, "v", &c->volume) < 0 || get_dec(k, "q", &c->quote_volume) < 0 ||
        get_int(json_object_get(k, "n"), UINT32_MAX, &trades) < 0 ||
        get_bool(k, "x", &c->closed) < 0 ||
        get_text(json_object_get(k, "i"), interval, sizeof(out->u.kline.interval)) < 0) {
        return -1;
    }
    c->trades = (uint32_t)trades;
    return 0;
}

static int get_depth(const json_t *p, struct cq_msg *out)
{
    if (get_symbol(p, out) < 0 || get_time(p, "E", &out->event_ms) < 0 ||
        get_id(p, "U", &out->u.depth.first_update_id) < 0 ||
        get_id(p, "u", &out->u.depth.last_update_id) < 0) {
        return -1;
    }
    return 0;
}

static int extract(const json_t *root, struct cq_msg *out)
{
    const json_t *p = root;
    const json_t *e;

    if (!json_is_object(root)) {
        return -1;
    }
    if (json_object_get(root, "stream") != NULL) {
        if (get_text(json_object_get(root, "stream"), out->stream, sizeof(out->stream)) < 0) {
            return -1;
        }
        p = json_object_get(root, "data");
        if (!json_is_object(p)) {
            return -1;
        }
    }

    e = json_object_get(p, "e");
    if (e != NULL) {
        if (!json_is_string(e)) {
            return -1;
        }
        const char *name = json_string_value(e);
        if (strcmp(name, "trade") == 0) {
            out->kind = CQ_MSG_TRADE;
            return get_trade(p, "t", out);
        }
        if (strcmp(name, "aggTrade") == 0) {
            out->kind = CQ_MSG_AGG_TRADE;
            return get_trade(p, "a", out);
        }
        if (strcmp(name, "depthUpdate") == 0) {
            out->kind = CQ_MSG_DEPTH_UPDATE;
            return get_depth(p, out);
        }
        if (strcmp(name, "kline") == 0) {
            out->kind = CQ_MSG_KLINE;
            return get_kline(p, out);
        }
        if (strcmp(name, "bookTicker") == 0) {
            out->kind = CQ_MSG_BOOK_TICKER;
            return get_book(p, out);
        }
        out->kind = CQ_MSG_EVENT_OTHER;
        return 0;
    }
    if (json_object_get(p, "u") != NULL && json_object_get(p, "s") != NULL) {
        out->kind = CQ_MSG_BOOK_TICKER;
        return get_book(p, out);
    }
    if (json_object_get(p, "id") != NULL &&
        (json_object_get(p, "result") != NULL || json_object_get(p, "error") != NULL)) {
        out->kind = CQ_MSG_CONTROL;
        return 0;
    }
    out->kind = CQ_MSG_EVENT_OTHER;
    return 0;
}

int cq_codec_decode_jansson(const char *data, size_t len, struct cq_msg *out, size_t *err_offset)
{
    json_error_t jerr;
    json_t *root;
    int rc;
    size_t offset = 0;

    memset(out, 0, sizeof(*out));
    if (data == NULL) {
        rc = -CQ_EPARSE;
        goto out;
    }
    const char *nul = memchr(data, '\0', len);
    if (nul != NULL) {
        offset = (size_t)(nul - data);
        rc = -CQ_EPARSE;
        goto out;
    }
    root = json_loadb(data, len, 0, &jerr);
    if (root == NULL) {
        offset = jerr.position > 0 ? (size_t)jerr.position : 0;
        rc = -CQ_EPARSE;
        goto out;
    }
    rc = extract(root, out) < 0 ? -CQ_EPARSE : 0;
    json_decref(root);

out:
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        if (err_offset != NULL) {
            *err_offset = offset < len ? offset : len;
        }
    }
    return rc;
}
