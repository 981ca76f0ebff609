/*
 * test_log.c — the structured JSON logger (server/core/log.c).
 *
 * Each test gets its own mkdtemp directory (the log dir is DIR/logs, so
 * cq_log_open must create it) and a fake clock that drives both the "ts"
 * field and the rotation day. Criterion runs each test in its own process,
 * so the process-wide logger starts fresh every time.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log-int.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "fakes/fake_clock.h"

/* 2025-11-21T11:16:00.123456Z */
#define T_WALL_US 1763723760123456LL
/* 2025-11-21T23:59:59.900000Z */
#define T_BEFORE_MIDNIGHT_US 1763769599900000LL
#define T_DAY_US (86400LL * 1000000)

static char tmp_dir[256];
static char log_dir[300];
static struct fake_clock fc = FAKE_CLOCK_INIT(1000, T_WALL_US);
static struct cq_clock clk;

/* ---- fixtures and helpers --------------------------------------------------- */

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            for (e = readdir(d); e != NULL; e = readdir(d)) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                    continue;
                }
                char child[1024];
                snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void setup(void)
{
    cq_strlcpy(tmp_dir, "/tmp/cq-test-log-XXXXXX", sizeof(tmp_dir));
    cr_assert_not_null(mkdtemp(tmp_dir));
    snprintf(log_dir, sizeof(log_dir), "%s/logs", tmp_dir);
    atomic_store(&fc.mono_ms, 1000);
    atomic_store(&fc.wall_us, T_WALL_US);
    clk = fake_clock_as_clock(&fc);
}

static void teardown(void)
{
    cq_log_close();
    rm_rf(tmp_dir);
}

static struct cq_log_options default_opts(void)
{
    struct cq_log_options o = {
        .dir = log_dir,
        .to_stderr = false,
        .level = CQ_LOG_INFO,
        .max_bytes = 10 * 1024 * 1024,
        .keep = 5,
        .ring_lines = 0,
        .clock = &clk,
    };
    return o;
}

static void open_log(const struct cq_log_options *o)
{
    struct cq_err err = {0};
    int rc = cq_log_open(o, &err);
    cr_assert_eq(rc, 0, "cq_log_open: %s (%s)", cq_strerror(rc), err.message);
}

static void log_path(char *out, size_t out_len, int n)
{
    if (n == 0) {
        snprintf(out, out_len, "%s/coinquantd.log", log_dir);
    } else {
        snprintf(out, out_len, "%s/coinquantd.log.%d", log_dir, n);
    }
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return (int64_t)st.st_size;
}

/* Whole file (log file n), NUL-terminated; caller frees. */
static char *slurp(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    struct cq_err err = {0};
    int rc = cq_fs_read_file(path, 64u << 20, &buf, &len, &err);
    cr_assert_eq(rc, 0, "read %s: %s", path, err.message);
    cr_assert_eq(strlen(buf), len, "%s holds a NUL byte", path);
    return buf;
}

static char *slurp_log(int n)
{
    char path[512];
    log_path(path, sizeof(path), n);
    return slurp(path);
}

struct lines {
    char **v; /* owned strings without '\n' */
    size_t n;
};

/* Split text into lines; every line must end with '\n'. */
static struct lines split_lines(const char *text)
{
    struct lines l = {0};
    size_t cap = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        cr_assert_not_null(nl, "last line is not newline-terminated: %.80s", p);
        if (l.n == cap) {
            cap = cap > 0 ? cap * 2 : 64;
            l.v = realloc(l.v, cap * sizeof(*l.v));
            cr_assert_not_null(l.v);
        }
        size_t len = (size_t)(nl - p);
        l.v[l.n] = malloc(len + 1);
        memcpy(l.v[l.n], p, len);
        l.v[l.n][len] = '\0';
        l.n++;
        p = nl + 1;
    }
    return l;
}

static void free_lines(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static struct lines read_log_lines(int n)
{
    char *text = slurp_log(n);
    struct lines l = split_lines(text);
    free(text);
    return l;
}

/* Parse one line: must be exactly one JSON object. Caller decrefs. */
static json_t *parse_line(const char *line)
{
    json_error_t jerr;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    cr_assert_not_null(o, "not JSON (%s): %.200s", jerr.text, line);
    cr_assert(json_is_object(o), "not an object: %.200s", line);
    return o;
}

static const char *str_member(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert_not_null(s, "missing string member \"%s\"", key);
    return s;
}

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    size_t nl = strlen(needle);
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + nl, needle)) {
        n++;
    }
    return n;
}

/* Ring contents joined with '\n' (each line also checked for '\n'). */
struct ring_dump {
    char buf[1 << 20];
    size_t len;
    size_t lines;
    bool saw_newline;
};

static void ring_collect(const char *line, void *ctx)
{
    struct ring_dump *d = ctx;
    size_t n = strlen(line);
    if (strchr(line, '\n') != NULL) {
        d->saw_newline = true;
    }
    if (d->len + n + 2 < sizeof(d->buf)) {
        memcpy(d->buf + d->len, line, n);
        d->buf[d->len + n] = '\n';
        d->len += n + 1;
        d->buf[d->len] = '\0';
    }
    d->lines++;
}

/* ---- line format -------------------------------------------------------------- */

Test(log, line_format, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    open_log(&o);
    cr_assert(file_exists(log_dir), "cq_log_open did not create %s", log_dir);

    cq_log_info("api", "admin_listening",
                json_pack("{s:s, s:i, s:s, s:s, s:s, s:{s:[i,i]}}", "symbol", "BTCUSDT", "qty", 3,
                          "msg", "fake msg", "ts", "fake ts", "zeta", "last", "nested", "a", 1, 2),
                "listening on %s:%d", "127.0.0.1", 8080);
    atomic_store(&fc.wall_us, T_WALL_US + 1);
    cq_log_warn("feeder", "stream_stale", NULL, "no data for %d ms", 1500);
    cq_log_error("trader", "order_rejected", json_pack("{s:s}", "level", "x"), "rejected");
    cq_log_close();

    char *text = slurp_log(0);
    const char *want_prefix =
        "{\"ts\":\"2025-11-21T11:16:00.123456Z\",\"level\":\"info\",\"service\":\"api\","
        "\"event\":\"admin_listening\",\"msg\":\"listening on 127.0.0.1:8080\","
        "\"symbol\":\"BTCUSDT\",\"qty\":3,";
    cr_assert(strncmp(text, want_prefix, strlen(want_prefix)) == 0, "line 1 is %.300s", text);
    struct lines l = split_lines(text);
    free(text);
    cr_assert_eq(l.n, 3);

    static const char *const want_keys[] = {"ts",       "level",  "service", "event",
                                            "msg",      "symbol", "qty",     "field_msg",
                                            "field_ts", "zeta",   "nested"};
    json_t *o1 = parse_line(l.v[0]);
    void *it = json_object_iter(o1);
    for (size_t i = 0; i < CQ_ARRAY_LEN(want_keys); i++) {
        cr_assert_not_null(it, "line has only %zu members", i);
        cr_assert_str_eq(json_object_iter_key(it), want_keys[i]);
        it = json_object_iter_next(o1, it);
    }
    cr_assert_null(it, "extra member %s", json_object_iter_key(it));
    cr_assert_str_eq(str_member(o1, "field_msg"), "fake msg");
    cr_assert_str_eq(str_member(o1, "field_ts"), "fake ts");
    cr_assert_eq(
        json_integer_value(json_array_get(json_object_get(json_object_get(o1, "nested"), "a"), 1)),
        2);
    json_decref(o1);

    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    static const char *const want_levels[] = {"info", "warn", "error"};
    static const char *const want_ts[] = {"2025-11-21T11:16:00.123456Z",
                                          "2025-11-21T11:16:00.123457Z",
                                          "2025-11-21T11:16:00.123457Z"};
    for (size_t i = 0; i < l.n; i++) {
        json_t *obj = parse_line(l.v[i]);
        const char *ts = str_member(obj, "ts");
        cr_assert_eq(regexec(&re, ts, 0, NULL, 0), 0, "ts \"%s\" is not RFC 3339 with µs", ts);
        cr_assert_str_eq(ts, want_ts[i]);
        cr_assert_str_eq(str_member(obj, "level"), want_levels[i]);
        cr_assert_null(json_object_get(obj, "truncated"));
        cr_assert_null(strstr(l.v[i], "\": "), "not compact: %s", l.v[i]);
        json_decref(obj);
    }
    regfree(&re);

    json_t *o2 = parse_line(l.v[1]);
    cr_assert_str_eq(str_member(o2, "msg"), "no data for 1500 ms");
    cr_assert_str_eq(str_member(o2, "event"), "stream_stale");
    cr_assert_eq(json_object_size(o2), 5, "NULL fields add nothing");
    json_decref(o2);
    json_t *o3 = parse_line(l.v[2]);
    cr_assert_str_eq(str_member(o3, "level"), "error");
    cr_assert_str_eq(str_member(o3, "field_level"), "x");
    json_decref(o3);
    free_lines(&l);
}

Test(log, invalid_utf8_and_non_object_fields, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_info("svc", "ev", json_pack("[i,i]", 1, 2), "bad %s end", "\xff\xfe");
    cq_log_info("svc", "ev", json_pack("{s:s#}", "k", "a\0b", 3), "nul field");
    cq_log_close();
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 2);
    json_t *a = parse_line(l.v[0]);
    cr_assert_str_eq(str_member(a, "msg"), "bad ?? end");
    cr_assert(json_is_array(json_object_get(a, "fields")));
    json_t *b = parse_line(l.v[1]);
    cr_assert_eq(json_string_length(json_object_get(b, "k")), 3);
    json_decref(a);
    json_decref(b);
    free_lines(&l);
}

/* ---- levels --------------------------------------------------------------------- */

Test(log, level_parse_and_name)
{
    static const struct {
        const char *text;
        int rc;
        enum cq_log_level level;
    } cases[] = {
        {"debug", 0, CQ_LOG_DEBUG}, {"info", 0, CQ_LOG_INFO}, {"warn", 0, CQ_LOG_WARN},
        {"error", 0, CQ_LOG_ERROR}, {"", -CQ_EINVAL, 0},      {"INFO", -CQ_EINVAL, 0},
        {"fatal", -CQ_EINVAL, 0},   {"info ", -CQ_EINVAL, 0}, {"warning", -CQ_EINVAL, 0},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        enum cq_log_level got = CQ_LOG_ERROR;
        int rc = cq_log_level_parse(cases[i].text, &got);
        cr_assert_eq(rc, cases[i].rc, "parse \"%s\"", cases[i].text);
        if (rc == 0) {
            cr_assert_eq(got, cases[i].level, "parse \"%s\"", cases[i].text);
            cr_assert_str_eq(cq_log_level_name(got), cases[i].text);
        }
    }
    cr_assert_eq(cq_log_level_parse(NULL, &(enum cq_log_level){0}), -CQ_EINVAL);
    cr_assert_str_eq(cq_log_level_name((enum cq_log_level)42), "unknown");
}

static int fields_evaluated;
static int msg_evaluated;

static json_t *counted_fields(void)
{
    fields_evaluated++;
    return json_pack("{s:i}", "n", fields_evaluated);
}

static const char *counted_msg(void)
{
    msg_evaluated++;
    return "counted";
}

Test(log, level_filter_skips_arguments, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.level = CQ_LOG_WARN;
    open_log(&o);
    cr_assert_not(cq_log_enabled(CQ_LOG_DEBUG));
    cr_assert_not(cq_log_enabled(CQ_LOG_INFO));
    cr_assert(cq_log_enabled(CQ_LOG_WARN));
    cr_assert(cq_log_enabled(CQ_LOG_ERROR));

    /* Fields are built (once) and released at every level, so owned
     * references passed into them never leak; the message is not built. */
    cq_log_debug("t", "dropped_debug", counted_fields(), "%s", counted_msg());
    cq_log_info("t", "dropped_info", counted_fields(), "%s", counted_msg());
    cr_assert_eq(fields_evaluated, 2, "fields must be evaluated exactly once per call");
    cr_assert_eq(msg_evaluated, 0, "msg evaluated for a filtered level");

    cq_log_warn("t", "kept_warn", counted_fields(), "%s", counted_msg());
    cq_log_error("t", "kept_error", counted_fields(), "%s", counted_msg());
    cr_assert_eq(fields_evaluated, 4);

    cq_log_set_level(CQ_LOG_DEBUG);
    cr_assert(cq_log_enabled(CQ_LOG_DEBUG));
    cq_log_debug("t", "kept_debug", counted_fields(), "%s", counted_msg());
    cq_log_set_level(CQ_LOG_ERROR);
    cq_log_warn("t", "dropped_warn", counted_fields(), "%s", counted_msg());
    cr_assert_eq(fields_evaluated, 6);
    cr_assert_eq(msg_evaluated, 3);

    /* Direct calls to the emitter still respect the level (and free fields). */
    cq_log__emit(CQ_LOG_INFO, "t", "dropped_direct", json_pack("{s:i}", "x", 1), "x");

    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.lines_total, 3);

    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 3);
    static const char *const want[] = {"kept_warn", "kept_error", "kept_debug"};
    for (size_t i = 0; i < l.n; i++) {
        json_t *obj = parse_line(l.v[i]);
        cr_assert_str_eq(str_member(obj, "event"), want[i]);
        static const json_int_t want_n[] = {3, 4, 5};
        cr_assert_eq(json_integer_value(json_object_get(obj, "n")), want_n[i]);
        json_decref(obj);
    }
    free_lines(&l);
}

/* Issue 9.11: fields that carry owned references ("s:o", as the supervisor's
 * reload report and the version banner pass them) are released at every
 * level, logged or not. Checked twice: the reference count of an object the
 * test still holds (any build), and plain owned objects handed over and
 * never touched again (leaks under the ASan/LSan pass of scripts/test). */
Test(log, owned_fields_released_at_every_level, .init = setup, .fini = teardown, .timeout = 20)
{
    static const enum cq_log_level levels[] = {CQ_LOG_DEBUG, CQ_LOG_INFO, CQ_LOG_WARN,
                                               CQ_LOG_ERROR};
    struct cq_log_options o = default_opts();
    open_log(&o);
    json_t *held = json_object();
    cr_assert_not_null(held);
    for (size_t set = 0; set < CQ_ARRAY_LEN(levels); set++) {
        cq_log_set_level(levels[set]);
        for (size_t at = 0; at < CQ_ARRAY_LEN(levels); at++) {
            json_incref(held); /* the reference "s:o" steals */
            cq_log(levels[at], "t", "owned_field", json_pack("{s:o}", "held", held), "held at %s",
                   cq_log_level_name(levels[at]));
            cr_assert_eq(held->refcount, 1,
                         "CQ_LOG_LEVEL=%s: a %s line kept a reference to its fields "
                         "(refcount %zu)",
                         cq_log_level_name(levels[set]), cq_log_level_name(levels[at]),
                         held->refcount);
            /* Nobody else holds these: a filtered line that forgets them leaks. */
            cq_log(levels[at], "t", "owned_field_leak",
                   json_pack("{s:o,s:o}", "thresholds", json_pack("{s:i}", "stall_ms", 5000),
                             "errors", json_pack("[s]", "CQ_X: bad")),
                   "thresholds");
        }
    }
    json_decref(held);
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    /* debug: 4 levels, info: 3, warn: 2, error: 1; two lines each */
    cr_assert_eq(st.lines_total, 2 * (4 + 3 + 2 + 1));
}

/* ---- redaction -------------------------------------------------------------------- */

#define SECRET_PLAIN "s3cr3tKEY9q"
#define SECRET_QUOTED "pa\"ss\\wo\"rd"           /* raw: pa"ss\wo"rd */
#define SECRET_QUOTED_ESC "pa\\\"ss\\\\wo\\\"rd" /* in JSON: pa\"ss\\wo\"rd */
#define SECRET_NEWLINE "line1\nline2-zz"
#define SECRET_NEWLINE_ESC "line1\\nline2-zz"

static void assert_no_secrets(const char *text, const char *where)
{
    static const char *const forbidden[] = {SECRET_PLAIN,   SECRET_QUOTED,      SECRET_QUOTED_ESC,
                                            SECRET_NEWLINE, SECRET_NEWLINE_ESC, "s3cr3t",
                                            "ss\\\\wo",     "line2-zz"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(forbidden); i++) {
        cr_assert_null(strstr(text, forbidden[i]), "%s contains \"%s\": %s", where, forbidden[i],
                       text);
    }
}

Test(log, redaction_file_and_ring, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.ring_lines = 100;
    open_log(&o);
    cq_log_add_secret(SECRET_PLAIN);
    cq_log_add_secret(SECRET_QUOTED);
    cq_log_add_secret(SECRET_NEWLINE);
    cq_log_add_secret(SECRET_PLAIN); /* duplicates are harmless */
    cq_log_add_secret("");           /* ignored: would redact everything */

    cq_log_info("api", "m1", NULL, "key is %s", SECRET_PLAIN);
    cq_log_info("api", "m2", NULL, "prefix-%s-suffix", SECRET_PLAIN);
    cq_log_info("api", "m3", json_pack("{s:s}", "api_key", SECRET_PLAIN), "field value");
    cq_log_info("api", "m4", json_pack("{s:{s:[s,s]}}", "outer", "list", "x", "a" SECRET_PLAIN "b"),
                "nested");
    cq_log_info("api", "m5", json_pack("{s:i}", SECRET_PLAIN, 1), "secret as a key");
    cq_log_info("api", "m6", json_pack("{s:s}", "pw", SECRET_QUOTED), "quoted %s!", SECRET_QUOTED);
    cq_log_info("api", "m7", NULL, "newline [%s]", SECRET_NEWLINE);
    cq_log_info("api" SECRET_PLAIN, "m8", NULL, "in service");

    char *text = slurp_log(0);
    assert_no_secrets(text, "log file");
    cr_assert_eq(count_occurrences(text, "<redacted>"), 9, "file: %s", text);

    struct lines l = split_lines(text);
    free(text);
    cr_assert_eq(l.n, 8);
    static const struct {
        const char *member;
        const char *want;
    } decoded[] = {
        {"msg", "key is <redacted>"},
        {"msg", "prefix-<redacted>-suffix"},
        {"api_key", "<redacted>"},
        {NULL, NULL},
        {"<redacted>", NULL},
        {"msg", "quoted <redacted>!"},
        {"msg", "newline [<redacted>]"},
        {"service", "api<redacted>"},
    };
    for (size_t i = 0; i < l.n; i++) {
        json_t *obj = parse_line(l.v[i]);
        if (decoded[i].member != NULL && decoded[i].want != NULL) {
            cr_assert_str_eq(str_member(obj, decoded[i].member), decoded[i].want, "line %zu", i);
        } else if (decoded[i].member != NULL) {
            cr_assert_not_null(json_object_get(obj, decoded[i].member), "line %zu", i);
        }
        json_decref(obj);
    }
    json_t *m4 = parse_line(l.v[3]);
    cr_assert_str_eq(
        json_string_value(json_array_get(json_object_get(json_object_get(m4, "outer"), "list"), 1)),
        "a<redacted>b");
    json_decref(m4);
    json_t *m6 = parse_line(l.v[5]);
    cr_assert_str_eq(str_member(m6, "pw"), "<redacted>");
    json_decref(m6);
    free_lines(&l);

    struct ring_dump *d = calloc(1, sizeof(*d));
    cq_log_ring_foreach(ring_collect, d);
    cr_assert_eq(d->lines, 8);
    cr_assert_not(d->saw_newline);
    assert_no_secrets(d->buf, "ring");
    cr_assert_eq(count_occurrences(d->buf, "<redacted>"), 9, "ring: %s", d->buf);
    free(d);
}

Test(log, redaction_before_truncation, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_add_secret(SECRET_PLAIN);

    /* "<secret>x" repeated past the line limit: wherever the cut falls, no
     * piece of a secret may survive it. */
    static char msg[16000];
    size_t n = 0;
    while (n + sizeof(SECRET_PLAIN) + 1 < sizeof(msg)) {
        memcpy(msg + n, SECRET_PLAIN "x", sizeof(SECRET_PLAIN));
        n += sizeof(SECRET_PLAIN);
    }
    msg[n] = '\0';
    cq_log_info("api", "long", NULL, "%s", msg);

    /* A long secret repeated past the 64 KiB formatting bound: the last copy
     * is cut by the bound and must not leak as an unmatched piece. */
    static char long_secret[2001];
    for (size_t i = 0; i < 2000; i++) {
        long_secret[i] = (char)('A' + (i * 7 + i / 26) % 26);
    }
    long_secret[2000] = '\0';
    cq_log_add_secret(long_secret);
    static char huge[70000];
    size_t h = 0;
    while (h + 2000 < sizeof(huge)) {
        memcpy(huge + h, long_secret, 2000);
        h += 2000;
    }
    huge[h] = '\0';
    cq_log_info("api", "huge", json_pack("{s:s}", "v", huge), "%s", huge);

    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 2);
    char piece[17];
    memcpy(piece, long_secret, 16);
    piece[16] = '\0';
    for (size_t i = 0; i < l.n; i++) {
        cr_assert_lt(strlen(l.v[i]), CQ_LOG_LINE_MAX);
        cr_assert_null(strstr(l.v[i], "s3cr"), "line %zu leaks a piece: %.200s", i, l.v[i]);
        cr_assert_null(strstr(l.v[i], piece), "line %zu leaks the long secret", i);
    }
    json_t *h0 = parse_line(l.v[0]);
    cr_assert(json_is_true(json_object_get(h0, "truncated")));
    cr_assert(strncmp(str_member(h0, "msg"), "<redacted>x<redacted>x", 22) == 0);
    json_decref(h0);

    /* msg: 32 whole copies fit the bound, the cut 33rd is dropped; the
     * field (not bounded) holds 34 copies. Redacted, both fit the line. */
    char want_msg[32 * 10 + 1] = "";
    char want_field[34 * 10 + 1] = "";
    for (int i = 0; i < 34; i++) {
        if (i < 32) {
            strcat(want_msg, "<redacted>");
        }
        strcat(want_field, "<redacted>");
    }
    json_t *h1 = parse_line(l.v[1]);
    cr_assert_str_eq(str_member(h1, "msg"), want_msg);
    cr_assert_str_eq(str_member(h1, "v"), want_field);
    cr_assert_null(json_object_get(h1, "truncated"));
    json_decref(h1);
    free_lines(&l);
}

/* ---- truncation ------------------------------------------------------------------ */

Test(log, truncation_stays_valid_json, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    open_log(&o);

    static char long_msg[20001];
    memset(long_msg, 'm', 20000);
    cq_log_info("svc", "long_msg", json_pack("{s:i}", "a", 1), "%s", long_msg);

    static char big_field[10001];
    memset(big_field, 'f', 10000);
    cq_log_info(
        "svc", "big_field",
        json_pack("{s:i, s:s, s:i, s:b}", "first", 1, "big", big_field, "small", 7, "truncated", 0),
        "short msg");

    static char ctl[5001];
    memset(ctl, '\x01', 5000);
    cq_log_info("svc", "escapes", NULL, "%s", ctl);

    static char utf8[12001];
    for (size_t i = 0; i < 12000; i += 2) {
        utf8[i] = (char)0xC3; /* é */
        utf8[i + 1] = (char)0xA9;
    }
    cq_log_info("svc", "utf8", NULL, "%s", utf8);

    char *text = slurp_log(0);
    struct lines l = split_lines(text);
    free(text);
    cr_assert_eq(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        cr_assert_lt(strlen(l.v[i]) + 1, CQ_LOG_LINE_MAX + 1, "line %zu too long", i);
    }

    json_t *a = parse_line(l.v[0]);
    cr_assert(json_is_true(json_object_get(a, "truncated")));
    const char *m = str_member(a, "msg");
    cr_assert_gt(strlen(m), 7000, "msg kept only %zu bytes", strlen(m));
    cr_assert_eq(strspn(m, "m"), strlen(m));
    cr_assert_null(json_object_get(a, "a"), "no room for fields after a full msg");
    json_decref(a);

    json_t *b = parse_line(l.v[1]);
    static const char *const want_keys[] = {
        "ts", "level", "service", "event", "msg", "truncated", "first", "small", "field_truncated"};
    void *it = json_object_iter(b);
    for (size_t i = 0; i < CQ_ARRAY_LEN(want_keys); i++) {
        cr_assert_not_null(it, "only %zu members in %s", i, l.v[1]);
        cr_assert_str_eq(json_object_iter_key(it), want_keys[i]);
        it = json_object_iter_next(b, it);
    }
    cr_assert_null(it);
    cr_assert_str_eq(str_member(b, "msg"), "short msg");
    cr_assert(json_is_true(json_object_get(b, "truncated")));
    cr_assert(json_is_false(json_object_get(b, "field_truncated")));
    cr_assert_eq(json_integer_value(json_object_get(b, "small")), 7);
    json_decref(b);

    json_t *c = parse_line(l.v[2]);
    cr_assert(json_is_true(json_object_get(c, "truncated")));
    const char *cm = str_member(c, "msg");
    cr_assert_gt(strlen(cm), 1000);
    cr_assert_eq(strspn(cm, "\x01"), strlen(cm));
    json_decref(c);

    json_t *d = parse_line(l.v[3]); /* parses only if no character was split */
    cr_assert(json_is_true(json_object_get(d, "truncated")));
    cr_assert_gt(strlen(str_member(d, "msg")), 7000);
    json_decref(d);
    free_lines(&l);
}

/* ---- rotation by size ------------------------------------------------------------ */

static int64_t seq_of(const char *line)
{
    json_t *obj = parse_line(line);
    json_t *v = json_object_get(obj, "seq");
    cr_assert(json_is_integer(v), "no seq in %s", line);
    int64_t s = (int64_t)json_integer_value(v);
    json_decref(obj);
    return s;
}

static void log_seq(int seq)
{
    cq_log_info("svc", "tick", json_pack("{s:i}", "seq", seq), "line %d padding %s", seq,
                "................................................................");
}

Test(log, rotation_by_size, .init = setup, .fini = teardown, .timeout = 30)
{
    struct cq_log_options o = default_opts();
    o.max_bytes = 2000;
    o.keep = 3;
    open_log(&o);
    const int total = 300;
    for (int i = 0; i < total; i++) {
        log_seq(i);
    }

    char path[512];
    for (int n = 0; n <= 3; n++) {
        log_path(path, sizeof(path), n);
        cr_assert(file_exists(path), "%s missing", path);
        int64_t size = file_size(path);
        cr_assert_gt(size, 0);
        cr_assert_leq(size, 2000, "%s is %lld bytes", path, (long long)size);
    }
    log_path(path, sizeof(path), 4);
    cr_assert_not(file_exists(path), "more than keep files");

    /* Oldest to newest: one unbroken run of seq ending at the last line. */
    int64_t expect = -1;
    size_t lines_seen = 0;
    for (int n = 3; n >= 0; n--) {
        struct lines l = read_log_lines(n);
        cr_assert_gt(l.n, 0);
        for (size_t i = 0; i < l.n; i++) {
            int64_t s = seq_of(l.v[i]);
            if (expect >= 0) {
                cr_assert_eq(s, expect, "file .%d line %zu: seq %lld, want %lld", n, i,
                             (long long)s, (long long)expect);
            }
            expect = s + 1;
            lines_seen++;
        }
        free_lines(&l);
    }
    cr_assert_eq(expect, total, "the newest line is not the last one logged");
    cr_assert_lt(lines_seen, (size_t)total, "nothing was deleted beyond keep?");

    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.lines_total, (uint64_t)total);
    cr_assert_eq(st.write_errors, 0);
    /* Every file but the newest was full enough that the next line did not fit. */
    cr_assert_geq(st.rotations, 3);
    cr_assert_geq(st.rotations, (uint64_t)(total * 120 / 2000));

    /* A reload to keep=1 deletes the older files at the next rotation. */
    cq_log_set_rotation(2000, 1);
    for (int i = total; i < total + 40; i++) {
        log_seq(i);
    }
    log_path(path, sizeof(path), 1);
    cr_assert(file_exists(path));
    for (int n = 2; n <= 4; n++) {
        log_path(path, sizeof(path), n);
        cr_assert_not(file_exists(path), "%s kept after keep=1", path);
    }
    struct lines l1 = read_log_lines(1);
    struct lines l0 = read_log_lines(0);
    cr_assert_eq(seq_of(l1.v[l1.n - 1]) + 1, seq_of(l0.v[0]));
    cr_assert_eq(seq_of(l0.v[l0.n - 1]), total + 39);
    free_lines(&l1);
    free_lines(&l0);
}

Test(log, rotation_line_bigger_than_max_bytes, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.max_bytes = 300;
    o.keep = 5;
    open_log(&o);
    static char big[1001];
    memset(big, 'B', 1000);
    cq_log_info("svc", "small_1", NULL, "a");
    cq_log_info("svc", "big", NULL, "%s", big);
    cq_log_info("svc", "small_2", NULL, "b");

    struct lines l2 = read_log_lines(2);
    struct lines l1 = read_log_lines(1);
    struct lines l0 = read_log_lines(0);
    cr_assert_eq(l2.n, 1);
    cr_assert_eq(l1.n, 1);
    cr_assert_eq(l0.n, 1);
    cr_assert(strstr(l2.v[0], "\"small_1\"") != NULL);
    cr_assert(strstr(l1.v[0], "\"big\"") != NULL);
    cr_assert(strstr(l0.v[0], "\"small_2\"") != NULL);
    char path[512];
    log_path(path, sizeof(path), 1);
    cr_assert_gt(file_size(path), 300, "the big line is written whole");
    free_lines(&l2);
    free_lines(&l1);
    free_lines(&l0);
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.rotations, 2);
}

Test(log, rotation_keep_zero, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.max_bytes = 400;
    o.keep = 0;
    open_log(&o);
    for (int i = 0; i < 20; i++) {
        log_seq(i);
    }
    char path[512];
    log_path(path, sizeof(path), 1);
    cr_assert_not(file_exists(path));
    struct lines l = read_log_lines(0);
    cr_assert_geq(l.n, 1);
    cr_assert_eq(seq_of(l.v[l.n - 1]), 19);
    free_lines(&l);
}

/* ---- rotation at midnight ------------------------------------------------------------ */

Test(log, rotation_at_utc_midnight, .init = setup, .fini = teardown, .timeout = 20)
{
    atomic_store(&fc.wall_us, T_BEFORE_MIDNIGHT_US);
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_info("svc", "before_midnight", NULL, "late");
    cq_log_info("svc", "before_midnight_2", NULL, "later");
    char path[512];
    log_path(path, sizeof(path), 1);
    cr_assert_not(file_exists(path), "rotated without a day change");

    fake_clock_advance_ms(&fc, 200); /* 2025-11-22T00:00:00.100000Z */
    cq_log_info("svc", "after_midnight", NULL, "early");
    cq_log_info("svc", "after_midnight_2", NULL, "earlier");

    struct lines l1 = read_log_lines(1);
    struct lines l0 = read_log_lines(0);
    cr_assert_eq(l1.n, 2);
    cr_assert_eq(l0.n, 2);
    json_t *b = parse_line(l1.v[1]);
    cr_assert_str_eq(str_member(b, "event"), "before_midnight_2");
    cr_assert_str_eq(str_member(b, "ts"), "2025-11-21T23:59:59.900000Z");
    json_decref(b);
    json_t *a = parse_line(l0.v[0]);
    cr_assert_str_eq(str_member(a, "event"), "after_midnight");
    cr_assert_str_eq(str_member(a, "ts"), "2025-11-22T00:00:00.100000Z");
    json_decref(a);
    free_lines(&l1);
    free_lines(&l0);

    /* Another day: another rotation. */
    fake_clock_advance_ms(&fc, 86400 * 1000);
    cq_log_info("svc", "next_day", NULL, "x");
    struct lines l2 = read_log_lines(2);
    cr_assert_eq(l2.n, 2);
    free_lines(&l2);
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.rotations, 2);
}

static void write_old_log(int64_t mtime_us)
{
    char path[512];
    cr_assert_eq(cq_fs_mkdir_p(log_dir, 0750, NULL), 0);
    log_path(path, sizeof(path), 0);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"old\":true}\n", f);
    fclose(f);
    if (mtime_us != 0) {
        struct timespec times[2] = {
            {.tv_sec = (time_t)(mtime_us / 1000000), .tv_nsec = 0},
            {.tv_sec = (time_t)(mtime_us / 1000000), .tv_nsec = 0},
        };
        cr_assert_eq(utimensat(AT_FDCWD, path, times, 0), 0);
    }
}

Test(log, existing_file_from_an_earlier_day_rotates, .init = setup, .fini = teardown, .timeout = 20)
{
    write_old_log(T_WALL_US - 2 * T_DAY_US);
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_info("svc", "fresh", NULL, "x");
    char *old = slurp_log(1);
    cr_assert_str_eq(old, "{\"old\":true}\n");
    free(old);
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 1);
    cr_assert(strstr(l.v[0], "\"fresh\"") != NULL);
    free_lines(&l);
}

Test(log, existing_file_from_today_is_appended, .init = setup, .fini = teardown, .timeout = 20)
{
    write_old_log(T_WALL_US - 3600LL * 1000000);
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_info("svc", "fresh", NULL, "x");
    char path[512];
    log_path(path, sizeof(path), 1);
    cr_assert_not(file_exists(path));
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.v[0], "{\"old\":true}");
    free_lines(&l);
}

/* ---- the writer thread ------------------------------------------------------------------ */

#define PRODUCER_LINES 2500

static void *producer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int n = 0; n < PRODUCER_LINES; n++) {
        cq_log_info("svc", "burst", json_pack("{s:i, s:i}", "t", t, "n", n), "thread %d line %d", t,
                    n);
    }
    return NULL;
}

Test(log, writer_thread_two_producers, .init = setup, .fini = teardown, .timeout = 60)
{
    struct cq_log_options o = default_opts();
    open_log(&o);
    pthread_t writer, p[2];
    cr_assert_eq(pthread_create(&writer, NULL, cq_log_writer_main, NULL), 0);
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(pthread_create(&p[t], NULL, producer, (void *)(intptr_t)t), 0);
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(p[t], NULL);
    }
    cq_log_writer_stop();
    pthread_join(writer, NULL);

    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.lines_total, 2 * PRODUCER_LINES);
    cr_assert_eq(st.lines_dropped, 0);
    cr_assert_eq(st.queue_bytes, 0, "writer returned before draining");
    cr_assert_eq(st.queue_max_bytes, 1u << 20);

    /* After the writer stops, logging is synchronous again. */
    cq_log_info("svc", "after_stop", NULL, "sync");

    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 2 * PRODUCER_LINES + 1);
    int next[2] = {0, 0};
    for (size_t i = 0; i + 1 < l.n; i++) {
        json_t *obj = parse_line(l.v[i]);
        int t = (int)json_integer_value(json_object_get(obj, "t"));
        int n = (int)json_integer_value(json_object_get(obj, "n"));
        cr_assert(t == 0 || t == 1, "line %zu: %s", i, l.v[i]);
        cr_assert_eq(n, next[t], "thread %d: line %d where %d was due", t, n, next[t]);
        next[t]++;
        json_decref(obj);
    }
    cr_assert_eq(next[0], PRODUCER_LINES);
    cr_assert_eq(next[1], PRODUCER_LINES);
    cr_assert(strstr(l.v[l.n - 1], "\"after_stop\"") != NULL);
    free_lines(&l);

    char path[512];
    log_path(path, sizeof(path), 0);
    cq_log_get_stats(&st);
    cr_assert_eq(st.bytes_written, (uint64_t)file_size(path));
}

Test(log, writer_stop_before_start_returns, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    open_log(&o);
    cq_log_writer_stop();
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, cq_log_writer_main, NULL), 0);
    pthread_join(writer, NULL);
    cq_log_info("svc", "still_logging", NULL, "x");
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 1);
    free_lines(&l);
}

/* ---- queue full: the writer is stuck on a stderr pipe nobody reads ---------------------- */

/* Lines are queued only once the writer runs; before that they are written
 * synchronously (and here would block the test on the pipe). */
static void wait_for_writer(void)
{
    for (int i = 0; i < 5000 && !cq_log__writer_running(); i++) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    cr_assert(cq_log__writer_running(), "writer thread did not start");
}

struct pipe_reader {
    int fd;
    size_t bytes;
    size_t lines;
};

static void *pipe_reader_main(void *arg)
{
    struct pipe_reader *r = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        r->bytes += (size_t)n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                r->lines++;
            }
        }
    }
    return NULL;
}

Test(log, queue_full_drops_and_counts, .init = setup, .fini = teardown, .timeout = 60)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(saved_stderr, 0);
    cr_assert_geq(dup2(fds[1], STDERR_FILENO), 0);
    close(fds[1]);

    struct cq_log_options o = default_opts();
    o.to_stderr = true;
    o.ring_lines = 10;
    open_log(&o);
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, cq_log_writer_main, NULL), 0);
    wait_for_writer();

    static char pad[901];
    memset(pad, 'x', 900);
    const int total = 4096; /* ~4 MiB: more than the pipe, the batch and the queue together */
    for (int i = 0; i < total; i++) {
        cq_log_info("svc", "flood", json_pack("{s:i}", "seq", i), "%s", pad);
    }
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.lines_total, (uint64_t)total);
    cr_assert_gt(st.lines_dropped, 0, "nothing dropped while the writer was stuck");
    cr_assert_gt(st.queue_bytes, (1u << 20) - 2000, "queue not full: %llu bytes",
                 (unsigned long long)st.queue_bytes);
    cr_assert_leq(st.queue_bytes, 1u << 20);
    uint64_t dropped = st.lines_dropped;

    /* The ring still saw every line, dropped or not. */
    struct ring_dump *d = calloc(1, sizeof(*d));
    cq_log_ring_foreach(ring_collect, d);
    cr_assert_eq(d->lines, 10);
    cr_assert(strstr(d->buf, "\"seq\":4095") != NULL);
    free(d);

    struct pipe_reader r = {.fd = fds[0]};
    pthread_t reader;
    cr_assert_eq(pthread_create(&reader, NULL, pipe_reader_main, &r), 0);
    cq_log_writer_stop();
    pthread_join(writer, NULL);
    cr_assert_not(cq_log__writer_running());
    cr_assert_geq(dup2(saved_stderr, STDERR_FILENO), 0); /* closes the pipe's last write end */
    close(saved_stderr);
    pthread_join(reader, NULL);
    close(fds[0]);

    cq_log_get_stats(&st);
    cr_assert_eq(st.lines_dropped, dropped, "drops after the flood stopped");
    cr_assert_eq(r.lines, (size_t)total - dropped);
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, (size_t)total - dropped);
    int64_t prev = -1;
    for (size_t i = 0; i < l.n; i++) {
        int64_t s = seq_of(l.v[i]);
        cr_assert_gt(s, prev, "order broken at line %zu", i);
        prev = s;
    }
    cr_assert_eq(r.bytes, st.bytes_written, "stderr and the file got the same lines");
    free_lines(&l);
}

/* ---- write errors: a rename that keeps failing ------------------------------------------ */

Test(log, rename_failure_counted_reported_once, .init = setup, .fini = teardown, .timeout = 20)
{
    char path[512];
    char inner[600];
    cr_assert_eq(cq_fs_mkdir_p(log_dir, 0750, NULL), 0);
    log_path(path, sizeof(path), 1);
    snprintf(inner, sizeof(inner), "%s/blocker", path);
    cr_assert_eq(cq_fs_mkdir_p(inner, 0750, NULL), 0); /* .1 is a non-empty directory */

    char capture[512];
    snprintf(capture, sizeof(capture), "%s/stderr.txt", tmp_dir);
    int cap_fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(cap_fd, 0);
    int saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(dup2(cap_fd, STDERR_FILENO), 0);
    close(cap_fd);

    struct cq_log_options o = default_opts();
    o.max_bytes = 500;
    o.keep = 1;
    open_log(&o);
    for (int i = 0; i < 30; i++) {
        log_seq(i);
    }
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cq_log_close();
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);

    cr_assert_geq(st.write_errors, 2, "each failed rotation is counted");
    cr_assert_eq(st.rotations, 0);
    char *err_text = slurp(capture);
    cr_assert_eq(count_occurrences(err_text, "rename"), 2, "reported once: %s", err_text);
    cr_assert_eq(count_occurrences(err_text, "\n"), 1, "one report line: %s", err_text);
    free(err_text);
    struct lines l = read_log_lines(0);
    cr_assert_eq(l.n, 30, "lines lost while rotation failed");
    free_lines(&l);
}

/* ---- open ------------------------------------------------------------------------------- */

Test(log, open_errors, .init = setup, .fini = teardown, .timeout = 20)
{
    char file[512];
    snprintf(file, sizeof(file), "%s/plain", tmp_dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    char bad_dir[600];
    snprintf(bad_dir, sizeof(bad_dir), "%s/sub", file);

    struct cq_log_options o = default_opts();
    o.dir = bad_dir;
    struct cq_err err = {0};
    cr_assert_eq(cq_log_open(&o, &err), -CQ_EIO);
    cr_assert_neq(err.message[0], '\0');

    o = default_opts();
    open_log(&o);
    cr_assert_eq(cq_log_open(&o, &err), -CQ_ESTATE);
    cq_log_close();
    open_log(&o); /* again after close */
    o.level = (enum cq_log_level)17;
    cq_log_close();
    cr_assert_eq(cq_log_open(&o, NULL), -CQ_EINVAL);
    cr_assert_eq(cq_log_open(NULL, NULL), -CQ_EINVAL);
}

/* Issue 17.5: a log file that is a symbolic link (here to a file outside the
 * data directory) is refused, not followed; a FIFO in its place neither
 * blocks the open nor receives lines. */
Test(log, refuses_symlink_and_fifo_log_file, .init = setup, .fini = teardown, .timeout = 20)
{
    char outside[512];
    char path[512];
    snprintf(outside, sizeof(outside), "%s/outside.txt", tmp_dir);
    snprintf(path, sizeof(path), "%s/coinquantd.log", log_dir);
    cr_assert_eq(mkdir(log_dir, 0750), 0);
    FILE *f = fopen(outside, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(symlink(outside, path), 0);

    struct cq_log_options o = default_opts();
    struct cq_err err = {0};
    cr_assert_eq(cq_log_open(&o, &err), -CQ_EIO, "a symlinked log file was opened");
    cr_assert(strstr(err.message, "symbolic link") != NULL, "message: %s", err.message);
    cr_assert(strstr(err.message, "coinquantd.log") != NULL, "message: %s", err.message);
    cr_assert(strstr(err.hint, "remove") != NULL, "hint: %s", err.hint);
    cq_log_info("t", "after_refusal", NULL, "must not reach %s", outside);
    cr_assert_eq(file_size(outside), 0, "a line went through the symlink");

    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkfifo(path, 0640), 0);
    err = (struct cq_err){0};
    cr_assert_eq(cq_log_open(&o, &err), -CQ_EIO, "a FIFO was accepted as the log file");
    cr_assert(strstr(err.message, "not a regular file") != NULL, "message: %s", err.message);
}

Test(log, no_dir_means_no_file, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.dir = NULL;
    o.ring_lines = 4;
    open_log(&o);
    cq_log_info("svc", "ring_only", NULL, "x");
    cr_assert_not(file_exists(log_dir));
    struct ring_dump *d = calloc(1, sizeof(*d));
    cq_log_ring_foreach(ring_collect, d);
    cr_assert_eq(d->lines, 1);
    free(d);
    struct cq_log_stats st;
    cq_log_get_stats(&st);
    cr_assert_eq(st.bytes_written, 0);
    cr_assert_eq(st.write_errors, 0);
}

/* ---- ring -------------------------------------------------------------------------------- */

struct seq_list {
    int64_t seq[64];
    size_t n;
};

static void ring_seq(const char *line, void *ctx)
{
    struct seq_list *s = ctx;
    cr_assert_null(strchr(line, '\n'));
    cr_assert_lt(s->n, CQ_ARRAY_LEN(s->seq));
    s->seq[s->n++] = seq_of(line);
}

Test(log, ring_bound_and_order, .init = setup, .fini = teardown, .timeout = 20)
{
    struct cq_log_options o = default_opts();
    o.ring_lines = 5;
    open_log(&o);
    struct seq_list s = {0};
    cq_log_ring_foreach(ring_seq, &s);
    cr_assert_eq(s.n, 0);
    for (int i = 0; i < 3; i++) {
        log_seq(i);
    }
    cq_log_ring_foreach(ring_seq, &s);
    cr_assert_eq(s.n, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(s.seq[i], (int64_t)i);
    }
    for (int i = 3; i < 12; i++) {
        log_seq(i);
    }
    s.n = 0;
    cq_log_ring_foreach(ring_seq, &s);
    cr_assert_eq(s.n, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(s.seq[i], (int64_t)(7 + i), "ring[%zu] = %lld", i, (long long)s.seq[i]);
    }
    cq_log_close();

    o.ring_lines = 0;
    open_log(&o);
    log_seq(99);
    s.n = 0;
    cq_log_ring_foreach(ring_seq, &s);
    cr_assert_eq(s.n, 0, "ring_lines = 0 keeps nothing (and close freed the old ring)");
}

/* ---- rate limiting ------------------------------------------------------------------------ */

Test(log, ratelimit_table)
{
    struct cq_log_ratelimit rl = {.window_ms = 1000, .burst = 2};
    static const struct {
        int64_t now_ms;
        bool allow;
        uint64_t suppressed;
    } steps[] = {
        {0, true, 0},    {10, true, 0},   {20, false, 0},   {30, false, 0},   {999, false, 0},
        {1000, true, 3}, {1001, true, 0}, {1002, false, 0}, {1999, false, 0}, {2000, true, 2},
        {5000, true, 0}, {5001, true, 0}, {5002, false, 0}, {6001, true, 1},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(steps); i++) {
        uint64_t sup = 12345;
        bool ok = cq_log_ratelimit_allow(&rl, steps[i].now_ms, &sup);
        cr_assert_eq(ok, steps[i].allow, "step %zu (t=%lld)", i, (long long)steps[i].now_ms);
        cr_assert_eq(sup, steps[i].suppressed, "step %zu (t=%lld): suppressed %llu", i,
                     (long long)steps[i].now_ms, (unsigned long long)sup);
    }
    /* suppressed may be NULL */
    cr_assert(cq_log_ratelimit_allow(&rl, 9000, NULL));

    struct cq_log_ratelimit none = {.window_ms = 1000, .burst = 0};
    cr_assert_not(cq_log_ratelimit_allow(&none, 5000, NULL));
    cr_assert_eq(none.suppressed, 1);
}
