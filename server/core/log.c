/*
 * log.c — the process-wide structured JSON logger (interface: cq/log.h).
 *
 * What runs where
 *   Any thread calls cq_log__emit() (through the cq_log_* macros, which check
 *   the level first: one relaxed atomic load; the fields object is built at
 *   every level and released by cq_log__discard() when the line is filtered
 *   out, so owned references passed into it never leak). On the caller's
 *   thread emit
 *     1. formats msg (bounded) and reads the clock once: that wall time is
 *        both the line's "ts" and the day it is filed under for rotation;
 *     2. redacts every registered secret from every decoded string — msg,
 *        service, event, field keys and string values at any depth — before
 *        anything is serialised or truncated, so a cut can never leave half a
 *        secret behind;
 *     3. builds {"ts","level","service","event","msg",<fields…>} with jansson
 *        and serialises it compactly; a line that would be longer than
 *        CQ_LOG_LINE_MAX (newline included) loses fields, then msg text, and
 *        gets "truncated":true right after "msg";
 *     4. runs a last pass over the line text replacing each secret's raw and
 *        JSON-escaped forms, only inside JSON strings and on escape-sequence
 *        boundaries so the line stays valid JSON (after step 2 this finds
 *        nothing unless a raw form happens to look like escaped text);
 *     5. copies the line into the ring of recent lines (its own mutex);
 *     6. hands the line to the sink, under the queue mutex:
 *          - while the writer thread runs, the line is copied into the queue
 *            and the caller returns; it never touches the file or stderr;
 *          - before the writer starts and after it stops (startup, shutdown,
 *            tests, tools) the caller writes the line itself, still under the
 *            queue mutex, so lines from different threads never interleave.
 *
 *   The writer thread (cq_log_writer_main, created and joined by the
 *   supervisor) waits on the queue's condvar, swaps the queue buffer with its
 *   empty spare buffer under the mutex (O(1): producers wait at most for a
 *   memcpy, never for I/O), then writes the batch to the file and stderr with
 *   the mutex released. cq_log_writer_stop() makes it drain the queue and
 *   return.
 *
 * The queue and what happens when it is full
 *   One byte buffer of LOG_QUEUE_MAX_BYTES (1 MiB) holding records
 *   {int64 wall_us, uint32 len, line bytes}. While the writer is busy with a
 *   batch (at most the other 1 MiB buffer, so up to 2 MiB are in flight)
 *   producers fill the queue; a record that does not fit is dropped and
 *   counted in stats.lines_dropped (it still reached the ring). Logging never
 *   applies backpressure: a slow disk or a stuck stderr pipe costs log lines,
 *   never trading latency.
 *
 *   "Writer runs" means: cq_log_writer_main has taken the mutex and said so,
 *   which is a little after pthread_create() returns; lines in between are
 *   written synchronously (log-int.h lets tests wait for the switch). A
 *   cq_log_writer_stop() that comes before the writer starts makes it return
 *   at once. Before cq_log_open() (and after cq_log_close()) lines go to
 *   stderr only, at level info, so config errors are never lost.
 *
 * The file (the "sink")
 *   DIR/coinquantd.log, O_APPEND, 0640. It belongs to whoever writes: the
 *   writer thread while it runs, otherwise the holder of the queue mutex. A
 *   line is filed by the UTC day of its own timestamp: when that day is later
 *   than the file's day (the day it was started; the mtime's day for an
 *   existing file), or when the line would push the file past max_bytes, the
 *   files shift (.N-1 -> .N … base -> .1), anything beyond `keep` is deleted,
 *   and a new file is opened. A line longer than max_bytes still goes whole
 *   into an empty file. Failures (open, rename, write…) are counted in
 *   stats.write_errors and reported on stderr once per kind; a failed open is
 *   retried at most once a second of log time; nothing here loops or aborts.
 *
 * Locks: queue mutex (+condvar), ring mutex, secrets rwlock. Emit takes them
 * one after the other, never nested. Counters and the level are atomics.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log-int.h"
#include "cq/buf.h"
#include "cq/fs.h"
#include "cq/text.h"
#include "cq/log.h"

#define LOG_FILE_NAME "coinquantd.log"
#define LOG_REDACTED "<redacted>"
#define LOG_REDACTED_LEN (sizeof(LOG_REDACTED) - 1)

#define LOG_QUEUE_MAX_BYTES ((size_t)1 << 20) /* the queue (1 MiB of records) */
#define LOG_REC_HDR_BYTES (sizeof(int64_t) + sizeof(uint32_t))
#define LOG_STAGE_BYTES ((size_t)64 * 1024) /* lines gathered per write() */
#define LOG_PATH_MAX 4096
#define LOG_SECRETS_MAX 32
#define LOG_SECRET_MAX_BYTES 4096 /* longer secrets: their first 4096 bytes are redacted */
#define LOG_NAME_MAX_BYTES 64     /* service and event, after redaction */
#define LOG_NAME_SCAN_MAX 1024    /* how much of service/event is read at all */
#define LOG_MSG_FORMAT_MAX ((size_t)64 * 1024) /* msg as formatted, before redaction */
#define LOG_JSON_DEPTH_MAX 32                  /* deeper field values are replaced */
#define LOG_KEEP_MAX 1000
#define LOG_RING_MAX_LINES ((size_t)100000)
#define LOG_REOPEN_DELAY_US ((int64_t)1000000)

/* ---- counters and level ---------------------------------------------------
 * Independent statistics: every access is memory_order_relaxed because no
 * other data is published through them; readers only want a recent value. */
static struct {
    _Atomic uint64_t lines_total;
    _Atomic uint64_t lines_dropped;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t rotations;
    _Atomic uint64_t write_errors;
} counters;

/* The minimum level logged. Relaxed: a level change needs no ordering with
 * anything else; a thread seeing the old level for a few more lines is fine. */
static _Atomic int log_level = CQ_LOG_INFO;

/* Set by cq_log_open() before other threads exist, cleared by cq_log_close()
 * after they are gone; read without a lock in between. NULL = system clock. */
static const struct cq_clock *log_clock;

static void count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed); /* statistic only */
}

/* ---- small helpers ------------------------------------------------------- */

static char *memdup0(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool contains(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
{
    if (needle_len == 0 || needle_len > hay_len) {
        return false;
    }
    const char *p = hay;
    const char *last = hay + (hay_len - needle_len);
    while (p <= last) {
        p = memchr(p, needle[0], (size_t)(last - p) + 1);
        if (p == NULL) {
            return false;
        }
        if (memcmp(p, needle, needle_len) == 0) {
            return true;
        }
        p++;
    }
    return false;
}

/* Replace every byte that is not part of a valid UTF-8 character with '?'. */
static void utf8_sanitize(char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = cq_text_utf8_char_len((const unsigned char *)s + i, len - i);
        if (n == 0) {
            s[i] = '?';
            i++;
        } else {
            i += n;
        }
    }
}

/* How many bytes jansson's serialiser spends on byte c inside a string. */
static size_t json_escaped_byte_len(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
        return 2;
    }
    if (c < 0x20) {
        return 6; /* \u00XX */
    }
    return 1;
}

static size_t json_escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += json_escaped_byte_len((unsigned char)s[i]);
    }
    return n;
}

/* Longest prefix of valid UTF-8 s whose escaped length is at most budget. */
static size_t json_prefix_within(const char *s, size_t len, size_t budget)
{
    size_t used = 0;
    size_t i = 0;
    while (i < len) {
        size_t n = cq_text_utf8_char_len((const unsigned char *)s + i, len - i);
        if (n == 0) {
            n = 1;
        }
        size_t cost = n == 1 ? json_escaped_byte_len((unsigned char)s[i]) : n;
        if (used + cost > budget) {
            break;
        }
        used += cost;
        i += n;
    }
    return i;
}

/* ---- secrets -------------------------------------------------------------- */

struct log_secret {
    char *raw; /* owned, cq_secret_dup (fs.h): not dumped, wiped on free */
    size_t raw_len;
    char *escaped; /* owned, cq_secret_dup; as jansson writes it inside a string; NULL if == raw */
    size_t escaped_len;
};

/* Read-locked by every emit (readers never block each other), write-locked
 * only to add or clear. Items are sorted longest raw form first so that a
 * secret containing another is replaced whole. */
static struct {
    pthread_rwlock_t lock;
    struct log_secret items[LOG_SECRETS_MAX];
    size_t count;
    size_t longest_bytes; /* longest escaped or raw form */
    bool full_reported;
} secrets = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static void stderr_note(const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, text, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return; /* nowhere left to complain to */
        }
        text += n;
        len -= (size_t)n;
    }
}

void cq_log_add_secret(const char *value)
{
    if (value == NULL || value[0] == '\0') {
        return;
    }
    size_t raw_len = strnlen(value, LOG_SECRET_MAX_BYTES);
    char *raw = cq_secret_dupn(value, raw_len); /* raw_len <= 4096: fits a secret buffer */
    char *escaped = NULL;
    size_t escaped_len = 0;
    if (raw == NULL) {
        stderr_note("coinquantd: log: out of memory registering a secret; it is NOT redacted\n");
        return;
    }
    json_t *js = json_stringn(raw, raw_len); /* NULL when not UTF-8: no escaped form */
    if (js != NULL) {
        char *dumped = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(js);
        if (dumped != NULL) {
            size_t n = strlen(dumped);
            if (n >= 2 && (n - 2 != raw_len || memcmp(dumped + 1, raw, raw_len) != 0)) {
                escaped_len = n - 2;
                /* the escaped form holds no NUL: dupn copies escaped_len bytes */
                escaped = cq_secret_dupn(dumped + 1, escaped_len);
            }
            cq_secret_wipe(dumped, n);
            free(dumped);
        }
    }

    pthread_rwlock_wrlock(&secrets.lock);
    for (size_t i = 0; i < secrets.count; i++) {
        if (secrets.items[i].raw_len == raw_len &&
            memcmp(secrets.items[i].raw, raw, raw_len) == 0) {
            pthread_rwlock_unlock(&secrets.lock);
            cq_secret_free(raw);
            cq_secret_free(escaped);
            return;
        }
    }
    if (secrets.count == LOG_SECRETS_MAX) {
        bool report = !secrets.full_reported;
        secrets.full_reported = true;
        pthread_rwlock_unlock(&secrets.lock);
        cq_secret_free(raw);
        cq_secret_free(escaped);
        if (report) {
            stderr_note("coinquantd: log: too many secrets registered (32); "
                        "further secrets are NOT redacted\n");
        }
        return;
    }
    size_t at = 0;
    while (at < secrets.count && secrets.items[at].raw_len >= raw_len) {
        at++;
    }
    memmove(&secrets.items[at + 1], &secrets.items[at],
            (secrets.count - at) * sizeof(secrets.items[0]));
    secrets.items[at] = (struct log_secret){raw, raw_len, escaped, escaped_len};
    secrets.count++;
    size_t longest = escaped != NULL ? escaped_len : raw_len;
    if (longest > secrets.longest_bytes) {
        secrets.longest_bytes = longest;
    }
    pthread_rwlock_unlock(&secrets.lock);
}

/* Replace every secret's raw form in s[0, len) by "<redacted>". Returns NULL
 * when nothing matched, else a new NUL-terminated heap buffer. On allocation
 * failure *oom is set. *tail_from (optional) gets the offset in s after the
 * last match: s[*tail_from, len) is the unchanged end of the output. Caller
 * holds secrets.lock (read). */
static char *redact_bytes(const char *s, size_t len, size_t *out_len, bool *oom, size_t *tail_from)
{
    bool any = false;
    if (tail_from != NULL) {
        *tail_from = 0;
    }
    for (size_t k = 0; k < secrets.count && !any; k++) {
        any = contains(s, len, secrets.items[k].raw, secrets.items[k].raw_len);
    }
    if (!any) {
        return NULL;
    }
    struct cq_buf out = {0}; /* bounded by the input line's length */
    size_t i = 0;
    size_t from = 0;
    while (i < len) {
        size_t matched = 0;
        for (size_t k = 0; k < secrets.count; k++) {
            const struct log_secret *sec = &secrets.items[k];
            if (len - i >= sec->raw_len && memcmp(s + i, sec->raw, sec->raw_len) == 0) {
                matched = sec->raw_len;
                break;
            }
        }
        if (matched > 0) {
            cq_buf_put(&out, s + from, i - from);
            cq_buf_put(&out, LOG_REDACTED, LOG_REDACTED_LEN);
            i += matched;
            from = i;
        } else {
            i++;
        }
    }
    cq_buf_put(&out, s + from, len - from);
    char *red = cq_buf_take(&out, out_len);
    if (red == NULL) {
        *oom = true;
        return NULL;
    }
    if (tail_from != NULL) {
        *tail_from = from;
    }
    return red;
}

char *cq_log_redact_dup(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t len = strlen(s);
    bool oom = false;
    size_t n = 0;
    pthread_rwlock_rdlock(&secrets.lock);
    char *out = redact_bytes(s, len, &n, &oom, NULL);
    pthread_rwlock_unlock(&secrets.lock);
    if (oom) {
        return NULL;
    }
    return out != NULL ? out : memdup0(s, len);
}

/* Owned copy of s[0, len): redacted, valid UTF-8, at most max_out bytes.
 * `was_cut`: s is a prefix of a longer text, so a secret may straddle its
 * end, unmatched; after redaction the unchanged tail loses its last
 * (longest secret - 1) bytes, which is where such a piece would be. Caller
 * holds secrets.lock (read). NULL on allocation failure. */
static char *clean_text(const char *s, size_t len, bool was_cut, size_t max_out, size_t *out_len)
{
    bool oom = false;
    size_t n = 0;
    size_t tail_from = 0;
    char *out = redact_bytes(s, len, &n, &oom, &tail_from);
    if (oom) {
        return NULL;
    }
    if (out == NULL) {
        out = memdup0(s, len);
        n = len;
        if (out == NULL) {
            return NULL;
        }
    }
    if (was_cut && secrets.longest_bytes > 1) {
        size_t tail = len - tail_from;
        size_t drop = tail < secrets.longest_bytes - 1 ? tail : secrets.longest_bytes - 1;
        n -= drop;
    }
    utf8_sanitize(out, n);
    n = cq_text_utf8_cut(out, n, max_out);
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* A new reference to v with every secret removed from its strings and
 * object keys. v itself is never modified: nested values may be shared with
 * the caller. NULL on allocation failure. Caller holds secrets.lock (read). */
static json_t *redact_json(json_t *v, int depth)
{
    if (depth > LOG_JSON_DEPTH_MAX) {
        return json_string("<too deep>");
    }
    if (secrets.count == 0) {
        return json_incref(v);
    }
    if (json_is_string(v)) {
        size_t n = 0;
        bool oom = false;
        char *r = redact_bytes(json_string_value(v), json_string_length(v), &n, &oom, NULL);
        if (oom) {
            return NULL;
        }
        if (r == NULL) {
            return json_incref(v);
        }
        utf8_sanitize(r, n); /* only a non-UTF-8 secret could break it */
        json_t *s = json_stringn(r, n);
        free(r);
        return s;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *item;
        if (out == NULL) {
            return NULL;
        }
        json_array_foreach(v, i, item)
        {
            if (json_array_append_new(out, redact_json(item, depth + 1)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *key;
        json_t *item;
        if (out == NULL) {
            return NULL;
        }
        json_object_foreach(v, key, item)
        {
            size_t n = 0;
            bool oom = false;
            char *k = redact_bytes(key, strlen(key), &n, &oom, NULL);
            int rc =
                oom ? -1
                    : json_object_set_new(out, k != NULL ? k : key, redact_json(item, depth + 1));
            free(k);
            if (rc != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    return json_incref(v);
}

/* Length of the JSON string unit at s — one escape sequence or one UTF-8
 * character — where s is inside a string of serialised JSON. */
static size_t json_unit_len(const char *s, size_t left)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = 1;
    if (c == '\\') {
        n = (left >= 2 && s[1] == 'u') ? 6 : 2;
    } else if (c >= 0xF0) {
        n = 4;
    } else if (c >= 0xE0) {
        n = 3;
    } else if (c >= 0xC0) {
        n = 2;
    }
    return n < left ? n : left;
}

/* Does pat match line at i (a unit boundary inside a string), ending on a
 * unit boundary of the same string? */
static bool unit_match(const char *line, size_t len, size_t i, const char *pat, size_t pat_len)
{
    if (pat == NULL || len - i < pat_len || memcmp(line + i, pat, pat_len) != 0) {
        return false;
    }
    size_t j = i;
    while (j < i + pat_len) {
        if (line[j] == '"') {
            return false; /* the string ends inside the match */
        }
        j += json_unit_len(line + j, len - j);
    }
    return j == i + pat_len;
}

/* The final pass over a serialised line: each secret's escaped and raw forms
 * become "<redacted>", inside strings only and on unit boundaries, so the
 * result is still valid JSON. NULL if unchanged (or on allocation failure,
 * with *oom set). Caller holds secrets.lock (read). */
static char *redact_line(const char *line, size_t len, size_t *out_len, bool *oom)
{
    bool any = false;
    for (size_t k = 0; k < secrets.count && !any; k++) {
        const struct log_secret *sec = &secrets.items[k];
        any = contains(line, len, sec->raw, sec->raw_len) ||
              (sec->escaped != NULL && contains(line, len, sec->escaped, sec->escaped_len));
    }
    if (!any) {
        return NULL;
    }
    struct cq_buf out = {0}; /* bounded by the input line's length */
    bool in_string = false;
    bool changed = false;
    size_t i = 0;
    size_t from = 0;
    while (i < len) {
        if (!in_string) {
            in_string = line[i] == '"';
            i++;
            continue;
        }
        if (line[i] == '"') {
            in_string = false;
            i++;
            continue;
        }
        if (len - i >= LOG_REDACTED_LEN && memcmp(line + i, LOG_REDACTED, LOG_REDACTED_LEN) == 0) {
            i += LOG_REDACTED_LEN; /* already redacted: do not redact inside it */
            continue;
        }
        size_t matched = 0;
        for (size_t k = 0; k < secrets.count && matched == 0; k++) {
            const struct log_secret *sec = &secrets.items[k];
            if (unit_match(line, len, i, sec->escaped, sec->escaped_len)) {
                matched = sec->escaped_len;
            } else if (unit_match(line, len, i, sec->raw, sec->raw_len)) {
                matched = sec->raw_len;
            }
        }
        if (matched > 0) {
            cq_buf_put(&out, line + from, i - from);
            cq_buf_put(&out, LOG_REDACTED, LOG_REDACTED_LEN);
            i += matched;
            from = i;
            changed = true;
        } else {
            i += json_unit_len(line + i, len - i);
        }
    }
    if (!changed) {
        cq_buf_free(&out);
        return NULL;
    }
    cq_buf_put(&out, line + from, len - from);
    char *red = cq_buf_take(&out, out_len);
    if (red == NULL) {
        *oom = true;
    }
    return red;
}

/* ---- ring of recent lines ----------------------------------------------- */

struct ring_line {
    char *text; /* owned, NUL-terminated, no newline */
    size_t len;
};

static struct {
    pthread_mutex_t mu;
    struct ring_line *lines; /* owned, cap entries */
    size_t cap;
    size_t next;  /* slot the next line goes to */
    size_t count; /* lines held, <= cap */
} ring = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void ring_push(const char *line, size_t len)
{
    char *copy = memdup0(line, len); /* allocate outside the lock */
    if (copy == NULL) {
        return;
    }
    pthread_mutex_lock(&ring.mu);
    if (ring.cap == 0) {
        pthread_mutex_unlock(&ring.mu);
        free(copy);
        return;
    }
    char *old = ring.lines[ring.next].text;
    ring.lines[ring.next] = (struct ring_line){copy, len};
    ring.next = (ring.next + 1) % ring.cap;
    if (ring.count < ring.cap) {
        ring.count++;
    }
    pthread_mutex_unlock(&ring.mu);
    free(old);
}

/* fn runs on a snapshot, outside the lock, so it may itself log. */
void cq_log_ring_foreach(void (*fn)(const char *line, void *ctx), void *ctx)
{
    pthread_mutex_lock(&ring.mu);
    size_t n = ring.count;
    size_t total = 0;
    size_t first = (ring.next + ring.cap - ring.count) % (ring.cap > 0 ? ring.cap : 1);
    for (size_t i = 0; i < n; i++) {
        total += ring.lines[(first + i) % ring.cap].len + 1;
    }
    char *snap = n > 0 ? malloc(total) : NULL;
    if (snap != NULL) {
        char *p = snap;
        for (size_t i = 0; i < n; i++) {
            const struct ring_line *l = &ring.lines[(first + i) % ring.cap];
            memcpy(p, l->text, l->len + 1);
            p += l->len + 1;
        }
    }
    pthread_mutex_unlock(&ring.mu);
    if (snap == NULL) {
        return;
    }
    const char *p = snap;
    for (size_t i = 0; i < n; i++) {
        fn(p, ctx);
        p += strlen(p) + 1;
    }
    free(snap);
}

static void ring_reset(size_t cap, struct ring_line *lines)
{
    pthread_mutex_lock(&ring.mu);
    struct ring_line *old = ring.lines;
    size_t old_cap = ring.cap;
    ring.lines = lines;
    ring.cap = cap;
    ring.next = 0;
    ring.count = 0;
    pthread_mutex_unlock(&ring.mu);
    for (size_t i = 0; i < old_cap; i++) {
        free(old[i].text);
    }
    free(old);
}

/* ---- the sink: stderr and the file ---------------------------------------- */

enum sink_err {
    SINK_ERR_OPEN,
    SINK_ERR_STAT,
    SINK_ERR_WRITE,
    SINK_ERR_RENAME,
    SINK_ERR_UNLINK,
    SINK_ERR_STDERR,
    SINK_ERR__COUNT
};

static const char *const sink_err_names[SINK_ERR__COUNT] = {
    [SINK_ERR_OPEN] = "open",     [SINK_ERR_STAT] = "stat",     [SINK_ERR_WRITE] = "write",
    [SINK_ERR_RENAME] = "rename", [SINK_ERR_UNLINK] = "unlink", [SINK_ERR_STDERR] = "stderr write",
};

/* Owned by the writer thread while it runs, otherwise by whoever holds
 * q.mu. max_bytes/keep are copies of q's settings taken under q.mu. */
struct log_sink {
    bool to_stderr;
    bool file_enabled;
    char path[LOG_PATH_MAX]; /* DIR/coinquantd.log */
    int fd;                  /* -1 when closed */
    int64_t file_bytes;      /* size of the open file as we wrote it */
    int64_t file_day;        /* UTC day the open file belongs to */
    int64_t reopen_after_us; /* after a failed open: next try (log time) */
    int64_t max_bytes;       /* <= 0: no size rotation */
    int keep;
    bool reported[SINK_ERR__COUNT];
    size_t stage_len;
    char stage[LOG_STAGE_BYTES]; /* lines not yet written */
};

/* The queue's two buffers (static: logging must not fail for lack of memory). */
static unsigned char queue_store[2][LOG_QUEUE_MAX_BYTES];

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* queue became non-empty, or stop requested */
    bool open;
    bool writer_running;
    bool stop_requested;
    unsigned char *buf;   /* the queue: one of queue_store; borrowed */
    size_t len;           /* bytes in buf */
    unsigned char *spare; /* the other buffer; the writer's while it writes a batch */
    int64_t max_bytes;    /* rotation settings (set_rotation) */
    int keep;
    struct log_sink sink;
} q = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .buf = queue_store[0],
    .spare = queue_store[1],
    .sink = {.to_stderr = true, .fd = -1},
};

static void sink_error(struct log_sink *s, enum sink_err kind, int sys_errno, const char *path)
{
    count(&counters.write_errors);
    if (s->reported[kind] || kind == SINK_ERR_STDERR) {
        return;
    }
    s->reported[kind] = true;
    char why[128];
    if (kind == SINK_ERR_OPEN && sys_errno == ELOOP) {
        cq_strlcpy(why, "it is a symbolic link (refused: remove it)", sizeof(why)); /* fits */
    } else if (kind == SINK_ERR_OPEN && (sys_errno == ENOTSUP || sys_errno == ENXIO)) {
        cq_strlcpy(why, "it is not a regular file (refused: remove it)", sizeof(why)); /* fits */
    } else if (strerror_r(sys_errno, why, sizeof(why)) != 0) {
        cq_strlcpy(why, "unknown error", sizeof(why)); /* fits */
    }
    /* Bounded: path < LOG_PATH_MAX (cq_log_open keeps 16 bytes spare for
     * ".N"), why < 128, the names and fixed text < 120 bytes. */
    char note[LOG_PATH_MAX + 256];
    snprintf(note, sizeof(note),
             "coinquantd: log: %s %s failed: %s (further %s errors are counted, not reported)\n",
             sink_err_names[kind], path, why, sink_err_names[kind]);
    stderr_note(note);
}

/* Write all of buf. 0, or an errno value: EINTR is retried, anything else
 * (EAGAIN from a non-blocking stderr included) gives up on this buffer. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (n == 0) {
            return EIO;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sink_rotated_path(const struct log_sink *s, int n, char *out, size_t out_len)
{
    if (n == 0) {
        cq_strlcpy(out, s->path, out_len); /* fits: out_len >= sizeof(s->path) */
    } else {
        /* fits: s->path leaves 16 bytes (cq_log_open), ".%d" <= ".1001" */
        snprintf(out, out_len, "%s.%d", s->path, n);
    }
}

/* Open (or create) the file. Its day is today, or the day of its mtime if it
 * already holds lines from an earlier day.
 *
 * Only a regular file is written: O_NOFOLLOW refuses a symbolic link in its
 * place (ELOOP: someone who can write the log directory must not redirect
 * our lines into a file of their choosing), O_NONBLOCK keeps a FIFO from
 * blocking the open, and anything that is not a regular file after fstat
 * (FIFO with a reader, device, socket) is refused with ENOTSUP. */
static int sink_open_file(struct log_sink *s, int64_t now_us)
{
    int64_t today = cq_time_utc_day(now_us);
    int fd =
        open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
    struct stat st;
    int e = 0;
    if (fd < 0) {
        e = errno;
    } else if (fstat(fd, &st) != 0) {
        e = errno;
    } else if (!S_ISREG(st.st_mode)) {
        e = ENOTSUP;
    }
    if (e != 0) {
        if (fd >= 0) {
            close(fd);
        }
        s->reopen_after_us = now_us + LOG_REOPEN_DELAY_US;
        sink_error(s, SINK_ERR_OPEN, e, s->path);
        return e;
    }
    s->fd = fd;
    s->file_bytes = 0;
    s->file_day = today;
    s->file_bytes = (int64_t)st.st_size;
    if (st.st_size > 0) {
        int64_t mtime_day = cq_time_utc_day((int64_t)st.st_mtime * 1000000);
        if (mtime_day < today) {
            s->file_day = mtime_day;
        }
    }
    return 0;
}

static void sink_flush(struct log_sink *s)
{
    if (s->stage_len == 0) {
        return;
    }
    if (s->fd >= 0) {
        int e = write_all(s->fd, s->stage, s->stage_len);
        if (e == 0) {
            s->file_bytes += (int64_t)s->stage_len;
            atomic_fetch_add_explicit(&counters.bytes_written, s->stage_len,
                                      memory_order_relaxed); /* statistic only */
        } else {
            /* Take back a partial line so the next one starts cleanly. */
            if (ftruncate(s->fd, (off_t)s->file_bytes) != 0) {
                /* nothing more to do; the write error is what we report */
            }
            sink_error(s, SINK_ERR_WRITE, e, s->path);
        }
    }
    if (s->to_stderr && write_all(STDERR_FILENO, s->stage, s->stage_len) != 0) {
        sink_error(s, SINK_ERR_STDERR, 0, "stderr");
    }
    s->stage_len = 0;
}

/* Shift the files (.N-1 -> .N … base -> .1), delete what is beyond keep and
 * open a fresh file for `day`. A failed rename leaves the old file in use;
 * its size is then counted from zero so the next attempt comes only after
 * another max_bytes, not on every line. */
static void sink_rotate(struct log_sink *s, int64_t now_us)
{
    char from[LOG_PATH_MAX + 16];
    char to[LOG_PATH_MAX + 16];
    if (s->fd >= 0 && s->file_bytes == 0) {
        s->file_day = cq_time_utc_day(now_us); /* empty: nothing to move */
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    /* Files beyond keep, left by a larger keep before a reload. */
    for (int n = s->keep + 1; n <= LOG_KEEP_MAX + 1; n++) {
        sink_rotated_path(s, n, to, sizeof(to));
        if (unlink(to) != 0) {
            if (errno != ENOENT) {
                sink_error(s, SINK_ERR_UNLINK, errno, to);
            }
            break;
        }
    }
    bool moved = true;
    for (int n = s->keep; n >= 1; n--) {
        sink_rotated_path(s, n - 1, from, sizeof(from));
        sink_rotated_path(s, n, to, sizeof(to));
        if (rename(from, to) != 0 && errno != ENOENT) {
            sink_error(s, SINK_ERR_RENAME, errno, from);
            if (n == 1) {
                moved = false;
            }
        }
    }
    if (s->keep == 0 && unlink(s->path) != 0 && errno != ENOENT) {
        sink_error(s, SINK_ERR_UNLINK, errno, s->path);
        moved = false;
    }
    if (moved) {
        count(&counters.rotations);
    }
    if (sink_open_file(s, now_us) == 0) {
        if (!moved) {
            s->file_bytes = 0;
        }
        s->file_day = cq_time_utc_day(now_us);
    }
}

/* Stage one line (no newline in `line`), rotating first when it belongs to a
 * later day or would push the file past max_bytes. */
static void sink_line(struct log_sink *s, int64_t wall_us, const char *line, size_t len)
{
    size_t need = len + 1;
    if (s->file_enabled) {
        if (s->fd < 0 && wall_us >= s->reopen_after_us) {
            sink_flush(s); /* staged lines go to stderr only */
            if (sink_open_file(s, wall_us) != 0) {
                /* reported and counted; retried after LOG_REOPEN_DELAY_US */
            }
        }
        if (s->fd >= 0) {
            int64_t pending = s->file_bytes + (int64_t)s->stage_len;
            bool new_day = cq_time_utc_day(wall_us) > s->file_day;
            bool too_big =
                s->max_bytes > 0 && pending > 0 && pending + (int64_t)need > s->max_bytes;
            if (new_day || too_big) {
                sink_flush(s);
                sink_rotate(s, wall_us);
            }
        }
    }
    if (s->stage_len + need > sizeof(s->stage)) {
        sink_flush(s);
    }
    memcpy(s->stage + s->stage_len, line, len);
    s->stage[s->stage_len + len] = '\n';
    s->stage_len += need;
}

/* Write a batch of queue records, then flush. */
static void sink_records(struct log_sink *s, const unsigned char *buf, size_t n)
{
    size_t off = 0;
    while (n - off >= LOG_REC_HDR_BYTES) {
        int64_t wall_us;
        uint32_t len;
        memcpy(&wall_us, buf + off, sizeof(wall_us));
        memcpy(&len, buf + off + sizeof(wall_us), sizeof(len));
        off += LOG_REC_HDR_BYTES;
        if (len > n - off) {
            break; /* records are appended whole; cannot happen */
        }
        sink_line(s, wall_us, (const char *)buf + off, len);
        off += len;
    }
    sink_flush(s);
}

/* Caller holds q.mu. */
static void sink_take_settings(struct log_sink *s)
{
    s->max_bytes = q.max_bytes;
    s->keep = q.keep;
}

static void sink_close(struct log_sink *s)
{
    sink_flush(s);
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = -1;
    s->file_enabled = false;
    s->to_stderr = true;
}

/* Queue the line for the writer, or write it now when no writer runs. */
static void deliver(int64_t wall_us, const char *line, size_t len)
{
    size_t rec = LOG_REC_HDR_BYTES + len;
    pthread_mutex_lock(&q.mu);
    if (q.writer_running) {
        if (LOG_QUEUE_MAX_BYTES - q.len < rec) {
            pthread_mutex_unlock(&q.mu);
            count(&counters.lines_dropped);
            return;
        }
        uint32_t len32 = (uint32_t)len; /* len < CQ_LOG_LINE_MAX */
        bool was_empty = q.len == 0;
        memcpy(q.buf + q.len, &wall_us, sizeof(wall_us));
        memcpy(q.buf + q.len + sizeof(wall_us), &len32, sizeof(len32));
        memcpy(q.buf + q.len + LOG_REC_HDR_BYTES, line, len);
        q.len += rec;
        if (was_empty) {
            pthread_cond_signal(&q.cond);
        }
        pthread_mutex_unlock(&q.mu);
        return;
    }
    sink_take_settings(&q.sink);
    sink_line(&q.sink, wall_us, line, len);
    sink_flush(&q.sink);
    pthread_mutex_unlock(&q.mu);
}

void *cq_log_writer_main(void *arg)
{
    CQ_UNUSED(arg);
    pthread_mutex_lock(&q.mu);
    if (q.writer_running) {
        pthread_mutex_unlock(&q.mu);
        stderr_note("coinquantd: log: a second log writer was started; it exits\n");
        return NULL;
    }
    q.writer_running = true;
    for (;;) {
        while (q.len == 0 && !q.stop_requested) {
            pthread_cond_wait(&q.cond, &q.mu);
        }
        if (q.len == 0) {
            break; /* stop requested and everything written */
        }
        unsigned char *batch = q.buf;
        size_t batch_len = q.len;
        q.buf = q.spare;
        q.len = 0;
        q.spare = NULL;
        sink_take_settings(&q.sink);
        pthread_mutex_unlock(&q.mu);

        sink_records(&q.sink, batch, batch_len);

        pthread_mutex_lock(&q.mu);
        q.spare = batch;
    }
    q.writer_running = false;
    q.stop_requested = false;
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

bool cq_log__writer_running(void)
{
    pthread_mutex_lock(&q.mu);
    bool running = q.writer_running;
    pthread_mutex_unlock(&q.mu);
    return running;
}

void cq_log_writer_stop(void)
{
    pthread_mutex_lock(&q.mu);
    q.stop_requested = true;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.mu);
}

/* ---- formatting ------------------------------------------------------------ */

struct line_parts {
    char ts[CQ_RFC3339_US_LEN];
    const char *level;
    char *service; /* owned, redacted */
    size_t service_len;
    char *event; /* owned, redacted */
    size_t event_len;
    char *msg; /* owned, redacted */
    size_t msg_len;
    json_t *fields; /* owned object: renamed, redacted members in order */
};

static bool is_reserved(const char *key)
{
    static const char *const reserved[] = {"ts", "level", "service", "event", "msg", "truncated"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(reserved); i++) {
        if (strcmp(key, reserved[i]) == 0) {
            return true;
        }
    }
    return false;
}

__attribute__((format(printf, 1, 0))) static char *format_msg(const char *fmt, va_list ap,
                                                              size_t *out_len)
{
    char small[512];
    va_list ap2;
    if (fmt == NULL) {
        return clean_text("", 0, false, CQ_LOG_LINE_MAX, out_len);
    }
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return clean_text("", 0, false, CQ_LOG_LINE_MAX, out_len);
    }
    if ((size_t)n < sizeof(small)) {
        return clean_text(small, (size_t)n, false, CQ_LOG_LINE_MAX, out_len);
    }
    size_t cap = (size_t)n + 1 < LOG_MSG_FORMAT_MAX ? (size_t)n + 1 : LOG_MSG_FORMAT_MAX;
    char *big = malloc(cap);
    if (big == NULL) {
        return NULL;
    }
    vsnprintf(big, cap, fmt, ap);
    char *out = clean_text(big, cap - 1, (size_t)n >= cap, CQ_LOG_LINE_MAX, out_len);
    free(big);
    return out;
}

static char *clean_name(const char *s, size_t *out_len)
{
    if (s == NULL) {
        s = "";
    }
    size_t n = strnlen(s, LOG_NAME_SCAN_MAX + 1);
    bool cut = n > LOG_NAME_SCAN_MAX;
    return clean_text(s, cut ? LOG_NAME_SCAN_MAX : n, cut, LOG_NAME_MAX_BYTES, out_len);
}

/* The caller's fields, renamed and redacted, in order. Steals `fields`. */
static json_t *clean_fields(json_t *fields)
{
    json_t *out = json_object();
    if (out == NULL || fields == NULL) {
        json_decref(fields);
        return out;
    }
    if (!json_is_object(fields)) {
        if (json_object_set_new(out, "fields", redact_json(fields, 1)) != 0) {
            json_decref(out);
            out = NULL;
        }
        json_decref(fields);
        return out;
    }
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value)
    {
        size_t n = 0;
        bool oom = false;
        char *redacted = redact_bytes(key, strlen(key), &n, &oom, NULL);
        const char *name = redacted != NULL ? redacted : key;
        char renamed[LOG_NAME_SCAN_MAX];
        if (is_reserved(name)) {
            /* fits: reserved names are at most 7 bytes */
            snprintf(renamed, sizeof(renamed), "field_%s", name);
            name = renamed;
        }
        int rc = oom ? -1 : json_object_set_new(out, name, redact_json(value, 1));
        free(redacted);
        if (rc != 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    json_decref(fields);
    return out;
}

static int put(json_t *obj, const char *key, json_t *value)
{
    return json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

static json_t *base_object(const struct line_parts *p, size_t msg_len, bool truncated)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    int rc = put(o, "ts", json_string(p->ts));
    rc |= put(o, "level", json_string(p->level));
    rc |= put(o, "service", json_stringn(p->service, p->service_len));
    rc |= put(o, "event", json_stringn(p->event, p->event_len));
    rc |= put(o, "msg", json_stringn(p->msg, msg_len));
    if (truncated) {
        rc |= put(o, "truncated", json_true());
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static char *dump_line(json_t *o, size_t *len)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s != NULL) {
        *len = strlen(s);
    }
    return s;
}

/* `,"key":value` in compact JSON, or SIZE_MAX if it cannot be serialised. */
static size_t member_cost(const char *key, const json_t *value)
{
    size_t v = json_dumpb(value, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (v == 0) {
        return SIZE_MAX;
    }
    return 1 + json_escaped_len(key, strlen(key)) + 2 + 1 + v;
}

/* The line did not fit: keep msg and as many fields (in order) as fit; if
 * the bare line is still too long, cut msg. "truncated":true follows msg. */
static char *render_truncated(const struct line_parts *p, size_t *out_len)
{
    size_t msg_len = p->msg_len;
    bool with_fields = true;
    for (int attempt = 0; attempt < 8; attempt++) {
        json_t *o = base_object(p, msg_len, true);
        size_t base_len = 0;
        char *s = o != NULL ? dump_line(o, &base_len) : NULL;
        if (s == NULL) {
            json_decref(o);
            return NULL;
        }
        free(s);
        if (base_len >= CQ_LOG_LINE_MAX) {
            size_t fixed = base_len - json_escaped_len(p->msg, msg_len);
            size_t budget = fixed < CQ_LOG_LINE_MAX - 1 ? CQ_LOG_LINE_MAX - 1 - fixed : 0;
            size_t cut = json_prefix_within(p->msg, msg_len, budget);
            msg_len = cut < msg_len ? cut : cq_text_utf8_cut(p->msg, msg_len, msg_len / 2);
            with_fields = false;
            json_decref(o);
            continue;
        }
        size_t used = base_len;
        const char *key;
        json_t *value;
        if (with_fields) {
            json_object_foreach(p->fields, key, value)
            {
                size_t cost = member_cost(key, value);
                if (cost != SIZE_MAX && used + cost < CQ_LOG_LINE_MAX) {
                    if (json_object_set(o, key, value) == 0) {
                        used += cost;
                    }
                }
            }
        }
        size_t len = 0;
        s = dump_line(o, &len);
        json_decref(o);
        if (s != NULL && len < CQ_LOG_LINE_MAX) {
            *out_len = len;
            return s;
        }
        free(s);
        with_fields = false; /* our estimate was wrong: try the bare line */
    }
    return NULL;
}

static char *render(const struct line_parts *p, size_t *out_len)
{
    json_t *o = base_object(p, p->msg_len, false);
    const char *key;
    json_t *value;
    int rc = o != NULL ? 0 : -1;
    if (rc == 0) {
        json_object_foreach(p->fields, key, value)
        {
            rc |= json_object_set(o, key, value);
        }
    }
    size_t len = 0;
    char *s = rc == 0 ? dump_line(o, &len) : NULL;
    json_decref(o);
    if (s != NULL && len < CQ_LOG_LINE_MAX) {
        *out_len = len;
        return s;
    }
    free(s);
    return render_truncated(p, out_len);
}

/* Build the finished, redacted line. Steals fields. NULL if out of memory. */
__attribute__((format(printf, 6, 0))) static char *
format_line(enum cq_log_level level, const char *service, const char *event, json_t *fields,
            int64_t wall_us, const char *fmt, va_list ap, size_t *out_len)
{
    struct line_parts p = {.level = cq_log_level_name(level)};
    char *line = NULL;
    cq_time_rfc3339_us(wall_us, p.ts, sizeof(p.ts));

    pthread_rwlock_rdlock(&secrets.lock);
    p.msg = format_msg(fmt, ap, &p.msg_len);
    p.service = clean_name(service, &p.service_len);
    p.event = clean_name(event, &p.event_len);
    p.fields = clean_fields(fields);
    if (p.msg != NULL && p.service != NULL && p.event != NULL && p.fields != NULL) {
        line = render(&p, out_len);
    }
    if (line != NULL && secrets.count > 0) {
        size_t n = 0;
        bool oom = false;
        char *again = redact_line(line, *out_len, &n, &oom);
        if (oom) {
            free(line);
            line = NULL;
        } else if (again != NULL) {
            free(line);
            line = again;
            *out_len = n;
        }
        if (line != NULL && *out_len >= CQ_LOG_LINE_MAX) {
            /* Redaction made it too long again: keep only the envelope. */
            static const char withheld[] = "log line withheld: too long after redaction";
            free(p.msg);
            p.msg = memdup0(withheld, sizeof(withheld) - 1);
            p.msg_len = sizeof(withheld) - 1;
            json_object_clear(p.fields);
            free(line);
            line = p.msg != NULL ? render_truncated(&p, out_len) : NULL;
        }
    }
    pthread_rwlock_unlock(&secrets.lock);

    free(p.msg);
    free(p.service);
    free(p.event);
    json_decref(p.fields);
    return line;
}

void cq_log__discard(json_t *fields)
{
    json_decref(fields);
}

void cq_log__emit(enum cq_log_level level, const char *service, const char *event, json_t *fields,
                  const char *fmt, ...)
{
    if (!cq_log_enabled(level)) {
        json_decref(fields);
        return;
    }
    count(&counters.lines_total);
    const struct cq_clock *clock = log_clock != NULL ? log_clock : cq_clock_system();
    int64_t wall_us = cq_clock_wall_us(clock);
    size_t len = 0;
    va_list ap;
    va_start(ap, fmt);
    char *line = format_line(level, service, event, fields, wall_us, fmt, ap, &len);
    va_end(ap);
    if (line == NULL) {
        count(&counters.lines_dropped); /* out of memory: nothing to write */
        return;
    }
    ring_push(line, len);
    deliver(wall_us, line, len);
    free(line);
}

/* ---- settings, levels, stats ------------------------------------------------ */

static const char *const level_names[] = {
    [CQ_LOG_DEBUG] = "debug",
    [CQ_LOG_INFO] = "info",
    [CQ_LOG_WARN] = "warn",
    [CQ_LOG_ERROR] = "error",
};

const char *cq_log_level_name(enum cq_log_level level)
{
    if ((int)level < 0 || (size_t)level >= CQ_ARRAY_LEN(level_names)) {
        return "unknown";
    }
    return level_names[level];
}

int cq_log_level_parse(const char *s, enum cq_log_level *out)
{
    if (s == NULL) {
        return -CQ_EINVAL;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum cq_log_level)i;
            return 0;
        }
    }
    return -CQ_EINVAL;
}

bool cq_log_enabled(enum cq_log_level level)
{
    /* relaxed: see log_level */
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void cq_log_set_level(enum cq_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed); /* see log_level */
}

static int clamp_keep(int keep)
{
    if (keep < 0) {
        return 0;
    }
    return keep > LOG_KEEP_MAX ? LOG_KEEP_MAX : keep;
}

void cq_log_set_rotation(int64_t max_bytes, int keep)
{
    pthread_mutex_lock(&q.mu);
    q.max_bytes = max_bytes > 0 ? max_bytes : 0;
    q.keep = clamp_keep(keep);
    pthread_mutex_unlock(&q.mu);
}

void cq_log_get_stats(struct cq_log_stats *out)
{
    memset(out, 0, sizeof(*out));
    /* relaxed: independent statistics (see counters) */
    out->lines_total = atomic_load_explicit(&counters.lines_total, memory_order_relaxed);
    out->lines_dropped = atomic_load_explicit(&counters.lines_dropped, memory_order_relaxed);
    out->bytes_written = atomic_load_explicit(&counters.bytes_written, memory_order_relaxed);
    out->rotations = atomic_load_explicit(&counters.rotations, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&counters.write_errors, memory_order_relaxed);
    pthread_mutex_lock(&q.mu);
    out->queue_bytes = q.len;
    pthread_mutex_unlock(&q.mu);
    out->queue_max_bytes = LOG_QUEUE_MAX_BYTES;
}

/* ---- open / close ------------------------------------------------------------ */

int cq_log_open(const struct cq_log_options *opts, struct cq_err *err)
{
    if (opts == NULL || (int)opts->level < CQ_LOG_DEBUG || (int)opts->level > CQ_LOG_ERROR) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "invalid log options");
    }
    if (opts->ring_lines > LOG_RING_MAX_LINES) {
        return cq_err_set(err, CQ_EINVAL, 0, "use at most 100000 ring lines",
                          "log ring of %zu lines is too large", opts->ring_lines);
    }
    char path[LOG_PATH_MAX];
    if (opts->dir != NULL) {
        int n = snprintf(path, sizeof(path), "%s/%s", opts->dir, LOG_FILE_NAME);
        if (n < 0 || (size_t)n + 16 >= sizeof(path)) {
            return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter log directory",
                              "log directory path too long: %.64s…", opts->dir);
        }
    }

    pthread_mutex_lock(&q.mu);
    if (q.open || q.writer_running) {
        pthread_mutex_unlock(&q.mu);
        return cq_err_set(err, CQ_ESTATE, 0, "call cq_log_close() first", "log already open");
    }
    struct ring_line *lines = NULL;
    if (opts->ring_lines > 0) {
        lines = calloc(opts->ring_lines, sizeof(*lines));
        if (lines == NULL) {
            pthread_mutex_unlock(&q.mu);
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the log ring");
        }
    }
    const struct cq_clock *clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    struct log_sink *s = &q.sink;
    sink_close(s);
    memset(s->reported, 0, sizeof(s->reported));
    s->reopen_after_us = 0;
    s->stage_len = 0;
    if (opts->dir != NULL) {
        int rc = cq_fs_mkdir_p(opts->dir, 0750, err);
        if (rc < 0) {
            pthread_mutex_unlock(&q.mu);
            free(lines);
            return rc;
        }
        cq_strlcpy(s->path, path, sizeof(s->path)); /* fits: same size, checked above */
        int e = sink_open_file(s, cq_clock_wall_us(clock));
        if (e != 0) {
            pthread_mutex_unlock(&q.mu);
            free(lines);
            if (e == ELOOP) {
                return cq_err_set(err, CQ_EIO, e,
                                  "remove the link; coinquantd creates the log file itself",
                                  "refusing to log to %s: it is a symbolic link", path);
            }
            if (e == ENOTSUP || e == ENXIO) {
                return cq_err_set(err, CQ_EIO, e,
                                  "remove it; coinquantd creates the log file itself",
                                  "refusing to log to %s: it is not a regular file", path);
            }
            return cq_err_set(err, CQ_EIO, e, "check the log directory's permissions",
                              "cannot open %s", path);
        }
        s->file_enabled = true;
    }
    s->to_stderr = opts->to_stderr;
    q.max_bytes = opts->max_bytes > 0 ? opts->max_bytes : 0;
    q.keep = clamp_keep(opts->keep);
    q.buf = queue_store[0];
    q.spare = queue_store[1];
    q.len = 0;
    q.stop_requested = false;
    q.open = true;
    log_clock = clock;
    atomic_store_explicit(&log_level, (int)opts->level, memory_order_relaxed); /* see log_level */
    /* relaxed: nothing else runs yet (see counters) */
    atomic_store_explicit(&counters.lines_total, 0, memory_order_relaxed);
    atomic_store_explicit(&counters.lines_dropped, 0, memory_order_relaxed);
    atomic_store_explicit(&counters.bytes_written, 0, memory_order_relaxed);
    atomic_store_explicit(&counters.rotations, 0, memory_order_relaxed);
    atomic_store_explicit(&counters.write_errors, 0, memory_order_relaxed);
    pthread_mutex_unlock(&q.mu);

    ring_reset(opts->ring_lines, lines);
    return 0;
}

void cq_log_close(void)
{
    pthread_mutex_lock(&q.mu);
    if (q.writer_running) {
        pthread_mutex_unlock(&q.mu);
        stderr_note(
            "coinquantd: log: cq_log_close() while the writer runs; stop and join it first\n");
        return;
    }
    if (q.len > 0 && q.buf != NULL) {
        sink_take_settings(&q.sink);
        sink_records(&q.sink, q.buf, q.len);
        q.len = 0;
    }
    sink_close(&q.sink);
    q.open = false;
    q.stop_requested = false;
    pthread_mutex_unlock(&q.mu);

    ring_reset(0, NULL);

    pthread_rwlock_wrlock(&secrets.lock);
    for (size_t i = 0; i < secrets.count; i++) {
        cq_secret_free(secrets.items[i].raw);
        cq_secret_free(secrets.items[i].escaped);
    }
    secrets.count = 0;
    secrets.longest_bytes = 0;
    secrets.full_reported = false;
    pthread_rwlock_unlock(&secrets.lock);

    log_clock = NULL;
    atomic_store_explicit(&log_level, CQ_LOG_INFO, memory_order_relaxed); /* see log_level */
}

/* ---- rate limiting ------------------------------------------------------------ */

bool cq_log_ratelimit_allow(struct cq_log_ratelimit *rl, int64_t now_ms, uint64_t *suppressed)
{
    if (suppressed != NULL) {
        *suppressed = 0;
    }
    if (now_ms - rl->window_start_ms >= rl->window_ms) {
        rl->window_start_ms = now_ms;
        rl->used = 0;
    }
    if (rl->used >= rl->burst) {
        rl->suppressed++;
        return false;
    }
    rl->used++;
    if (suppressed != NULL) {
        *suppressed = rl->suppressed;
    }
    rl->suppressed = 0;
    return true;
}
