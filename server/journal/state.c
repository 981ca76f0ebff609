/*
 * state.c — the canonical state: a reducer over records, kept in C tables
 * (so replay runs at table speed) and rendered as JSON on demand:
 *
 *   {"last_seq":N,"records":N,
 *    "types":{"order.intent":N,…},                 only types seen
 *    "scopes":{"BTCUSDT":{"records":N,"last_seq":N,"quarantined":false,
 *                         "quarantine_reason":null},…},
 *    "orders":{"<client_order_id>":{"scope":"BTCUSDT","status":"intent|acked|filled|rejected",
 *                                   "last_seq":N},…},
 *    "trader_checkpoint_seq":N}                    only once a trader.checkpoint was seen
 *
 * Rules (docs/JOURNAL.md "Canonical state"): every record counts in
 * records/types/its scope; order.intent/ack/fill/reject whose payload is a
 * JSON object with a string "client_order_id" (1..64 bytes) set that order's
 * status (the last record wins), and a terminal one (order.reject, or
 * order.fill with a top-level "final":true) drops the order from the map:
 * closed orders leave the live state, so snapshots stay small over months
 * of trading (the full history stays in the records); trader.checkpoint
 * sets trader_checkpoint_seq to its seq; quarantine sets the scope's quarantined
 * flag and reason (payload "reason", else "unspecified"); unquarantine
 * clears both. Nothing depends on time or on hash order: the dump sorts
 * keys, so a live run and any replay of the same records print the same
 * bytes.
 *
 * Not thread-safe: the owner (the writer thread, or an offline replay)
 * serialises access.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/buf.h"
#include "journal-int.h"

#define ORDER_ID_MAX 64
#define REASON_MAX 63

enum order_status { ST_INTENT, ST_ACKED, ST_FILLED, ST_REJECTED, ST__COUNT };
static const char *const status_names[ST__COUNT] = {"intent", "acked", "filled", "rejected"};

struct scope_ent {
    char name[CQ_JOURNAL_SCOPE_MAX + 1]; /* key: first */
    uint64_t records;
    uint64_t last_seq;
    bool quarantined;
    char reason[REASON_MAX + 1];
};

struct order_ent {
    char id[ORDER_ID_MAX + 1]; /* key: first */
    char scope[CQ_JOURNAL_SCOPE_MAX + 1];
    uint8_t status;
    uint64_t last_seq;
};

struct type_ent {
    char name[16]; /* "type_65535" */
    uint64_t count;
};

/* Dense entries + an open-addressing index (slot = entry index + 1). */
struct dmap {
    uint8_t *ents;
    size_t ent_size;
    size_t key_size;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots; /* power of two */
};

struct cq_journal__state {
    uint64_t last_seq;
    uint64_t records;
    uint64_t type_counts[CQ_REC__MAX];
    struct dmap other_types;
    struct dmap scopes;
    struct dmap orders;
    uint64_t trader_checkpoint_seq; /* seq of the last trader.checkpoint, 0 = none */
};

static void dmap_init(struct dmap *m, size_t ent_size, size_t key_size)
{
    memset(m, 0, sizeof(*m));
    m->ent_size = ent_size;
    m->key_size = key_size;
}

static void dmap_fini(struct dmap *m)
{
    free(m->ents);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static void *dmap_at(const struct dmap *m, size_t i)
{
    return m->ents + i * m->ent_size;
}

static uint64_t key_hash(const char *k, size_t len)
{
    return cq_journal__xxh64(k, len, 0x9E3779B97F4A7C15ULL);
}

static int dmap_rehash(struct dmap *m, size_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof(uint32_t));
    if (slots == NULL) {
        return -CQ_ENOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        const char *k = dmap_at(m, i);
        size_t h = (size_t)key_hash(k, strlen(k)) & (nslots - 1);
        while (slots[h] != 0) {
            h = (h + 1) & (nslots - 1);
        }
        slots[h] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

/* Find key (klen < key_size); create a zeroed entry with that key when asked.
 * NULL: not found (or *rc = -CQ_ENOMEM). */
static void *dmap_get(struct dmap *m, const char *key, size_t klen, bool create, int *rc)
{
    *rc = 0;
    if (klen >= m->key_size) {
        return NULL;
    }
    if (m->nslots > 0) {
        size_t h = (size_t)key_hash(key, klen) & (m->nslots - 1);
        while (m->slots[h] != 0) {
            char *e = dmap_at(m, m->slots[h] - 1);
            if (strncmp(e, key, klen) == 0 && e[klen] == '\0') {
                return e;
            }
            h = (h + 1) & (m->nslots - 1);
        }
    }
    if (!create) {
        return NULL;
    }
    if (m->n >= UINT32_MAX - 1) {
        *rc = -CQ_ENOMEM;
        return NULL;
    }
    if ((m->n + 1) * 10 >= m->nslots * 7) {
        if (dmap_rehash(m, m->nslots == 0 ? 64 : m->nslots * 2) < 0) {
            *rc = -CQ_ENOMEM;
            return NULL;
        }
    }
    if (m->n == m->cap) {
        size_t ncap = m->cap == 0 ? 32 : m->cap * 2;
        uint8_t *p = realloc(m->ents, ncap * m->ent_size);
        if (p == NULL) {
            *rc = -CQ_ENOMEM;
            return NULL;
        }
        m->ents = p;
        m->cap = ncap;
    }
    char *e = dmap_at(m, m->n);
    memset(e, 0, m->ent_size);
    memcpy(e, key, klen);
    size_t h = (size_t)key_hash(key, klen) & (m->nslots - 1);
    while (m->slots[h] != 0) {
        h = (h + 1) & (m->nslots - 1);
    }
    m->slots[h] = (uint32_t)(m->n + 1);
    m->n++;
    return e;
}

/* Remove key if present: the dense array stays dense (the last entry moves
 * into the hole) and the probe sequences stay whole (backward-shift
 * deletion), so lookups never need tombstones. */
static void dmap_del(struct dmap *m, const char *key, size_t klen)
{
    if (m->nslots == 0 || klen >= m->key_size) {
        return;
    }
    size_t mask = m->nslots - 1;
    size_t h = (size_t)key_hash(key, klen) & mask;
    while (m->slots[h] != 0) {
        char *e = dmap_at(m, m->slots[h] - 1);
        if (strncmp(e, key, klen) == 0 && e[klen] == '\0') {
            break;
        }
        h = (h + 1) & mask;
    }
    if (m->slots[h] == 0) {
        return;
    }
    size_t idx = m->slots[h] - 1;
    /* backward shift: pull later members of the cluster into the gap */
    size_t j = h;
    for (size_t k = (j + 1) & mask; m->slots[k] != 0; k = (k + 1) & mask) {
        const char *ke = dmap_at(m, m->slots[k] - 1);
        size_t ideal = (size_t)key_hash(ke, strlen(ke)) & mask;
        if (((k - ideal) & mask) >= ((k - j) & mask)) {
            m->slots[j] = m->slots[k];
            j = k;
        }
    }
    m->slots[j] = 0;
    size_t last = m->n - 1;
    if (idx != last) {
        const char *le = dmap_at(m, last);
        size_t g = (size_t)key_hash(le, strlen(le)) & mask;
        while (m->slots[g] != (uint32_t)(last + 1)) {
            g = (g + 1) & mask;
        }
        memcpy(dmap_at(m, idx), le, m->ent_size);
        m->slots[g] = (uint32_t)(idx + 1);
    }
    m->n--;
}

struct cq_journal__state *cq_journal__state_new(void)
{
    struct cq_journal__state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    dmap_init(&s->other_types, sizeof(struct type_ent), sizeof(((struct type_ent *)0)->name));
    dmap_init(&s->scopes, sizeof(struct scope_ent), sizeof(((struct scope_ent *)0)->name));
    dmap_init(&s->orders, sizeof(struct order_ent), sizeof(((struct order_ent *)0)->id));
    return s;
}

void cq_journal__state_free(struct cq_journal__state *s)
{
    if (s == NULL) {
        return;
    }
    dmap_fini(&s->other_types);
    dmap_fini(&s->scopes);
    dmap_fini(&s->orders);
    free(s);
}

uint64_t cq_journal__state_last_seq(const struct cq_journal__state *s)
{
    return s->last_seq;
}

/* Copy at most max bytes of a UTF-8 string, never splitting a character. */
static void utf8_copy(char *dst, size_t dst_size, const char *src)
{
    size_t n = strlen(src);
    if (n >= dst_size) {
        n = dst_size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0u) == 0x80u) {
            n--;
        }
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- payload scanning ----------------------------------------------------------------
 * The reducer needs one top-level string from a payload ("client_order_id" or
 * "reason") and only if the payload is a JSON object (RFC 8259). A full parse
 * per record would cap replay and the writer at well under a million records
 * a second, so this validates the whole payload without allocating and
 * decodes only the wanted value. Like jansson's defaults it rejects invalid
 * UTF-8, lone surrogates, \u0000 and trailing bytes; a duplicated key: the
 * last one wins. Nesting deeper than SCAN_DEPTH_MAX counts as invalid. */

#define SCAN_DEPTH_MAX 128

struct scan {
    const uint8_t *p;
    const uint8_t *end;
};

static void scan_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static int hex4(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (uint32_t)(c - 'A' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static void put_byte(char *out, size_t cap, size_t *len, uint8_t b)
{
    if (out != NULL && *len + 1 < cap) {
        out[*len] = (char)b;
    }
    (*len)++;
}

static void put_utf8(char *out, size_t cap, size_t *len, uint32_t cp)
{
    if (cp < 0x80) {
        put_byte(out, cap, len, (uint8_t)cp);
    } else if (cp < 0x800) {
        put_byte(out, cap, len, (uint8_t)(0xC0 | (cp >> 6)));
        put_byte(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        put_byte(out, cap, len, (uint8_t)(0xE0 | (cp >> 12)));
        put_byte(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        put_byte(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        put_byte(out, cap, len, (uint8_t)(0xF0 | (cp >> 18)));
        put_byte(out, cap, len, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
        put_byte(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        put_byte(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

/* A string at s->p ('"'). Decodes into out (cap bytes, NUL-terminated, may
 * be NULL); *len gets the decoded length even when it did not fit. */
static int scan_string(struct scan *s, char *out, size_t cap, size_t *len)
{
    *len = 0;
    s->p++; /* '"' */
    while (s->p < s->end) {
        uint8_t c = *s->p;
        if (c == '"') {
            s->p++;
            if (out != NULL) {
                out[*len < cap ? *len : cap - 1] = '\0';
            }
            return 0;
        }
        if (c < 0x20) {
            return -1;
        }
        if (c == '\\') {
            if (s->end - s->p < 2) {
                return -1;
            }
            uint8_t e = s->p[1];
            s->p += 2;
            static const char simple_in[] = "\"\\/bfnrt";
            static const char simple_out[] = "\"\\/\b\f\n\r\t";
            const char *hit = e != '\0' ? strchr(simple_in, e) : NULL;
            if (hit != NULL) {
                put_byte(out, cap, len, (uint8_t)simple_out[hit - simple_in]);
                continue;
            }
            uint32_t cp;
            if (e != 'u' || s->end - s->p < 4 || hex4(s->p, &cp) < 0) {
                return -1;
            }
            s->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1; /* a lone low surrogate */
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                    hex4(s->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    return -1;
                }
                s->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) {
                return -1;
            }
            put_utf8(out, cap, len, cp);
            continue;
        }
        /* raw UTF-8: well formed, shortest form, no surrogates, <= U+10FFFF */
        size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (n == 0 || (size_t)(s->end - s->p) < n) {
            return -1;
        }
        uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
        for (size_t i = 1; i < n; i++) {
            if ((s->p[i] & 0xC0) != 0x80) {
                return -1;
            }
            cp = (cp << 6) | (s->p[i] & 0x3Fu);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            put_byte(out, cap, len, s->p[i]);
        }
        s->p += n;
    }
    return -1;
}

static bool is_digit(const struct scan *s)
{
    return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int scan_number(struct scan *s)
{
    if (s->p < s->end && *s->p == '-') {
        s->p++;
    }
    if (!is_digit(s)) {
        return -1;
    }
    if (*s->p == '0') {
        s->p++;
    } else {
        while (is_digit(s)) {
            s->p++;
        }
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!is_digit(s)) {
            return -1;
        }
        while (is_digit(s)) {
            s->p++;
        }
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
            s->p++;
        }
        if (!is_digit(s)) {
            return -1;
        }
        while (is_digit(s)) {
            s->p++;
        }
    }
    return 0;
}

static int scan_literal(struct scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) {
        return -1;
    }
    s->p += n;
    return 0;
}

struct wanted {
    const char *key; /* top-level key looked for */
    char *out;       /* its value when it is a string */
    size_t cap;
    size_t len;
    bool found;  /* the last occurrence of the key held a string */
    int boolean; /* the last occurrence held true (1), false (0), else -1 */
};

static int scan_value(struct scan *s, int depth, struct wanted *w, bool is_wanted);

static int scan_container(struct scan *s, int depth, struct wanted *w, bool object)
{
    if (depth > SCAN_DEPTH_MAX) {
        return -1;
    }
    s->p++; /* '{' or '[' */
    scan_ws(s);
    if (s->p < s->end && *s->p == (object ? '}' : ']')) {
        s->p++;
        return 0;
    }
    for (;;) {
        bool wanted = false;
        if (object) {
            char key[64];
            size_t klen;
            if (s->p >= s->end || *s->p != '"' || scan_string(s, key, sizeof(key), &klen) < 0) {
                return -1;
            }
            wanted = depth == 0 && w != NULL && klen < sizeof(key) && strlen(w->key) == klen &&
                     memcmp(key, w->key, klen) == 0;
            scan_ws(s);
            if (s->p >= s->end || *s->p != ':') {
                return -1;
            }
            s->p++;
            scan_ws(s);
        }
        if (scan_value(s, depth + 1, w, wanted) < 0) {
            return -1;
        }
        scan_ws(s);
        if (s->p >= s->end) {
            return -1;
        }
        if (*s->p == ',') {
            s->p++;
            scan_ws(s);
            continue;
        }
        if (*s->p == (object ? '}' : ']')) {
            s->p++;
            return 0;
        }
        return -1;
    }
}

static int scan_value(struct scan *s, int depth, struct wanted *w, bool is_wanted)
{
    if (s->p >= s->end) {
        return -1;
    }
    if (is_wanted) {
        w->found = false;
        w->boolean = -1;
    }
    switch (*s->p) {
    case '{':
        return scan_container(s, depth, w, true);
    case '[':
        return scan_container(s, depth, w, false);
    case '"':
        if (is_wanted) {
            w->found = scan_string(s, w->out, w->cap, &w->len) == 0;
            return w->found ? 0 : -1;
        } else {
            size_t len;
            return scan_string(s, NULL, 0, &len);
        }
    case 't':
        if (is_wanted) {
            w->boolean = 1;
        }
        return scan_literal(s, "true");
    case 'f':
        if (is_wanted) {
            w->boolean = 0;
        }
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        return scan_number(s);
    }
}

/* 1: the payload is a JSON object whose top-level `key` is a string (decoded
 * into out, truncated to cap - 1 bytes; *len = its full length); 0: it is
 * an object without such a string; -1: not a JSON object. */
static int payload_string(const struct cq_journal_record *rec, const char *key, char *out,
                          size_t cap, size_t *len)
{
    struct scan s = {rec->payload, (const uint8_t *)rec->payload + rec->payload_len};
    struct wanted w = {key, out, cap, 0, false, -1};
    scan_ws(&s);
    if (s.p >= s.end || *s.p != '{' || scan_container(&s, 0, &w, true) < 0) {
        return -1;
    }
    scan_ws(&s);
    if (s.p != s.end) {
        return -1;
    }
    *len = w.len;
    return w.found ? 1 : 0;
}

/* True when the payload is a JSON object whose top-level `key` is true. */
static bool payload_true(const struct cq_journal_record *rec, const char *key)
{
    struct scan s = {rec->payload, (const uint8_t *)rec->payload + rec->payload_len};
    struct wanted w = {key, NULL, 0, 0, false, -1};
    scan_ws(&s);
    if (s.p >= s.end || *s.p != '{' || scan_container(&s, 0, &w, true) < 0) {
        return false;
    }
    scan_ws(&s);
    return s.p == s.end && w.boolean == 1;
}

int cq_journal__state_apply(struct cq_journal__state *s, const struct cq_journal_record *rec)
{
    int rc;
    s->last_seq = rec->seq;
    s->records++;
    if (rec->type > 0 && rec->type < CQ_REC__MAX) {
        s->type_counts[rec->type]++;
    } else {
        char name[16];
        snprintf(name, sizeof(name), "type_%u", (unsigned)rec->type);
        struct type_ent *t = dmap_get(&s->other_types, name, strlen(name), true, &rc);
        if (t == NULL) {
            return -CQ_ENOMEM;
        }
        t->count++;
    }
    struct scope_ent *sc = dmap_get(&s->scopes, rec->scope, strlen(rec->scope), true, &rc);
    if (sc == NULL) {
        return rc < 0 ? rc : -CQ_EINVAL;
    }
    sc->records++;
    sc->last_seq = rec->seq;
    if (rec->type == CQ_REC_QUARANTINE) {
        char reason[256];
        size_t len = 0;
        bool have = payload_string(rec, "reason", reason, sizeof(reason), &len) == 1 && len > 0;
        sc->quarantined = true;
        utf8_copy(sc->reason, sizeof(sc->reason), have ? reason : "unspecified");
    } else if (rec->type == CQ_REC_UNQUARANTINE) {
        sc->quarantined = false;
        sc->reason[0] = '\0';
    } else if (rec->type >= CQ_REC_ORDER_INTENT && rec->type <= CQ_REC_ORDER_REJECT) {
        char id[ORDER_ID_MAX + 1];
        size_t idlen = 0;
        bool terminal = rec->type == CQ_REC_ORDER_REJECT ||
                        (rec->type == CQ_REC_ORDER_FILL && payload_true(rec, "final"));
        bool have = payload_string(rec, "client_order_id", id, sizeof(id), &idlen) == 1 &&
                    idlen > 0 && idlen <= ORDER_ID_MAX;
        if (have && terminal) {
            dmap_del(&s->orders, id, idlen);
        } else if (have) {
            struct order_ent *oe = dmap_get(&s->orders, id, idlen, true, &rc);
            if (oe == NULL) {
                return -CQ_ENOMEM;
            }
            cq_strlcpy(oe->scope, rec->scope, sizeof(oe->scope));
            oe->status = (uint8_t)(rec->type - CQ_REC_ORDER_INTENT);
            oe->last_seq = rec->seq;
        }
    } else if (rec->type == CQ_REC_TRADER_CHECKPOINT) {
        s->trader_checkpoint_seq = rec->seq;
    }
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static int set(json_t *o, const char *k, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(o, k, v);
}

json_t *cq_journal__state_to_json(const struct cq_journal__state *s)
{
    json_t *root = json_object();
    json_t *types = json_object();
    json_t *scopes = json_object();
    json_t *orders = json_object();
    int bad = root == NULL || types == NULL || scopes == NULL || orders == NULL;
    for (uint16_t t = 1; !bad && t < CQ_REC__MAX; t++) {
        if (s->type_counts[t] > 0) {
            bad |= set(types, cq_rec_type_name(t), json_integer((json_int_t)s->type_counts[t]));
        }
    }
    for (size_t i = 0; !bad && i < s->other_types.n; i++) {
        const struct type_ent *t = dmap_at(&s->other_types, i);
        bad |= set(types, t->name, json_integer((json_int_t)t->count));
    }
    for (size_t i = 0; !bad && i < s->scopes.n; i++) {
        const struct scope_ent *e = dmap_at(&s->scopes, i);
        json_t *o =
            json_pack("{s:I,s:I,s:b,s:o}", "records", (json_int_t)e->records, "last_seq",
                      (json_int_t)e->last_seq, "quarantined", e->quarantined, "quarantine_reason",
                      e->quarantined ? json_string(e->reason) : json_null());
        bad |= set(scopes, e->name, o);
    }
    for (size_t i = 0; !bad && i < s->orders.n; i++) {
        const struct order_ent *e = dmap_at(&s->orders, i);
        json_t *o = json_pack("{s:s,s:s,s:I}", "scope", e->scope, "status", status_names[e->status],
                              "last_seq", (json_int_t)e->last_seq);
        bad |= set(orders, e->id, o);
    }
    if (bad) {
        json_decref(root);
        json_decref(types);
        json_decref(scopes);
        json_decref(orders);
        return NULL;
    }
    bad |= set(root, "last_seq", json_integer((json_int_t)s->last_seq));
    bad |= set(root, "records", json_integer((json_int_t)s->records));
    bad |= json_object_set_new(root, "types", types);
    bad |= json_object_set_new(root, "scopes", scopes);
    bad |= json_object_set_new(root, "orders", orders);
    if (s->trader_checkpoint_seq > 0) {
        bad |=
            set(root, "trader_checkpoint_seq", json_integer((json_int_t)s->trader_checkpoint_seq));
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static bool get_uint(const json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

int cq_journal__state_from_json(struct cq_journal__state *s, const json_t *j, struct cq_err *err)
{
    const char *hint = "the snapshot is damaged; it is skipped";
    const char *k;
    json_t *v;
    int rc;
    if (!json_is_object(j) || !get_uint(j, "last_seq", &s->last_seq) ||
        !get_uint(j, "records", &s->records)) {
        return cq_err_set(err, CQ_EPARSE, 0, hint, "state: last_seq/records missing");
    }
    json_t *types = json_object_get(j, "types");
    json_t *scopes = json_object_get(j, "scopes");
    json_t *orders = json_object_get(j, "orders");
    json_t *tcs = json_object_get(j, "trader_checkpoint_seq");
    if (tcs != NULL && (!get_uint(j, "trader_checkpoint_seq", &s->trader_checkpoint_seq) ||
                        s->trader_checkpoint_seq == 0)) {
        return cq_err_set(err, CQ_EPARSE, 0, hint, "state: trader_checkpoint_seq");
    }
    if (!json_is_object(types) || !json_is_object(scopes) || !json_is_object(orders) ||
        json_object_size(j) != (tcs != NULL ? 6u : 5u)) {
        return cq_err_set(err, CQ_EPARSE, 0, hint, "state: types/scopes/orders missing");
    }
    json_object_foreach(types, k, v)
    {
        uint16_t t = cq_rec_type_parse(k);
        unsigned n;
        char tail;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "state: types.%s", k);
        }
        if (t != 0) {
            s->type_counts[t] = (uint64_t)json_integer_value(v);
        } else if (sscanf(k, "type_%u%c", &n, &tail) == 1 && n <= UINT16_MAX) {
            struct type_ent *te = dmap_get(&s->other_types, k, strlen(k), true, &rc);
            if (te == NULL) {
                return cq_err_set(err, CQ_ENOMEM, 0, NULL, "state: types");
            }
            te->count = (uint64_t)json_integer_value(v);
        } else {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "state: unknown type %s", k);
        }
    }
    json_object_foreach(scopes, k, v)
    {
        json_t *q = json_object_get(v, "quarantined");
        json_t *reason = json_object_get(v, "quarantine_reason");
        struct scope_ent *e = cq_journal__scope_valid(k, strlen(k))
                                  ? dmap_get(&s->scopes, k, strlen(k), true, &rc)
                                  : NULL;
        if (e == NULL || !json_is_object(v) || json_object_size(v) != 4 ||
            !get_uint(v, "records", &e->records) || !get_uint(v, "last_seq", &e->last_seq) ||
            !json_is_boolean(q) ||
            (json_is_true(q) ? !json_is_string(reason) : !json_is_null(reason))) {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "state: scopes.%s", k);
        }
        e->quarantined = json_is_true(q);
        if (e->quarantined) {
            utf8_copy(e->reason, sizeof(e->reason), json_string_value(reason));
        }
    }
    json_object_foreach(orders, k, v)
    {
        const char *scope = json_string_value(json_object_get(v, "scope"));
        const char *status = json_string_value(json_object_get(v, "status"));
        struct order_ent *e = dmap_get(&s->orders, k, strlen(k), true, &rc);
        int st = -1;
        for (int i = 0; status != NULL && i < ST__COUNT; i++) {
            if (strcmp(status, status_names[i]) == 0) {
                st = i;
            }
        }
        if (e == NULL || strlen(k) == 0 || !json_is_object(v) || json_object_size(v) != 3 ||
            scope == NULL || !cq_journal__scope_valid(scope, strlen(scope)) || st < 0 ||
            !get_uint(v, "last_seq", &e->last_seq)) {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "state: orders.%s", k);
        }
        cq_strlcpy(e->scope, scope, sizeof(e->scope));
        e->status = (uint8_t)st;
    }
    return 0;
}

static int cmp_scope_ptr(const void *a, const void *b)
{
    const struct scope_ent *x = *(const struct scope_ent *const *)a;
    const struct scope_ent *y = *(const struct scope_ent *const *)b;
    return strcmp(x->name, y->name);
}

void cq_journal__state_foreach_quarantined(const struct cq_journal__state *s,
                                           void (*fn)(const char *scope, const char *reason,
                                                      void *ctx),
                                           void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < s->scopes.n; i++) {
        n += ((const struct scope_ent *)dmap_at(&s->scopes, i))->quarantined;
    }
    if (n == 0) {
        return;
    }
    const struct scope_ent **list = malloc(n * sizeof(*list));
    if (list == NULL) {
        return;
    }
    n = 0;
    for (size_t i = 0; i < s->scopes.n; i++) {
        const struct scope_ent *e = dmap_at(&s->scopes, i);
        if (e->quarantined) {
            list[n++] = e;
        }
    }
    qsort(list, n, sizeof(*list), cmp_scope_ptr);
    for (size_t i = 0; i < n; i++) {
        fn(list[i]->name, list[i]->reason, ctx);
    }
    free(list);
}

/* ---- the canonical dump, straight from the tables ---------------------------------------
 * Byte for byte what json_dumps(cq_journal__state_to_json(s), JSON_COMPACT |
 * JSON_SORT_KEYS | JSON_ENSURE_ASCII) prints, plus "\n" (a test holds the two
 * together), without building a tree: snapshots of a large state stay cheap
 * on the writer thread. Keys are sorted with strcmp like jansson's; strings
 * are escaped like jansson's (\" \\ \b \f \n \r \t, other controls and every
 * non-ASCII code point as a \u escape of four upper-case hex digits, UTF-16
 * pairs above the BMP). */

static void db_uint(struct cq_buf *b, uint64_t v)
{
    cq_buf_printf(b, "%" PRIu64, v);
}

/* A JSON string of valid UTF-8 (what the tables hold). */
static void db_json_string(struct cq_buf *b, const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    cq_buf_put(b, "\"", 1);
    while (*p != '\0') {
        const uint8_t *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        cq_buf_put(b, (const char *)run, (size_t)(p - run));
        if (*p == '\0') {
            break;
        }
        uint32_t cp;
        size_t n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : 4;
        cp = n == 1 ? *p : n == 2 ? (*p & 0x1Fu) : n == 3 ? (*p & 0x0Fu) : (*p & 0x07u);
        for (size_t i = 1; i < n && p[i] != '\0'; i++) {
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        p += n;
        char esc[16];
        switch (cp) {
        case '"':
            cq_buf_put(b, "\\\"", 2);
            continue;
        case '\\':
            cq_buf_put(b, "\\\\", 2);
            continue;
        case '\b':
            cq_buf_put(b, "\\b", 2);
            continue;
        case '\f':
            cq_buf_put(b, "\\f", 2);
            continue;
        case '\n':
            cq_buf_put(b, "\\n", 2);
            continue;
        case '\r':
            cq_buf_put(b, "\\r", 2);
            continue;
        case '\t':
            cq_buf_put(b, "\\t", 2);
            continue;
        default:
            break;
        }
        if (cp < 0x10000) {
            snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)cp);
            cq_buf_put(b, esc, 6);
        } else {
            cp -= 0x10000;
            snprintf(esc, sizeof(esc), "\\u%04X\\u%04X", (unsigned)(0xD800 | (cp >> 10)),
                     (unsigned)(0xDC00 | (cp & 0x3FF)));
            cq_buf_put(b, esc, 12);
        }
    }
    cq_buf_put(b, "\"", 1);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Entries of m, sorted by key (the key is each entry's first field). */
static const char **sorted_keys(const struct dmap *m)
{
    const char **v = malloc((m->n + 1) * sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < m->n; i++) {
        v[i] = dmap_at(m, i);
    }
    qsort(v, m->n, sizeof(*v), cmp_name_ptr);
    return v;
}

char *cq_journal__state_dump(const struct cq_journal__state *s, size_t *len)
{
    struct cq_buf b = {0};
    const char **scopes = sorted_keys(&s->scopes);
    const char **orders = sorted_keys(&s->orders);
    const char **types = malloc((CQ_REC__MAX + s->other_types.n + 1) * sizeof(*types));
    if (scopes == NULL || orders == NULL || types == NULL) {
        b.failed = true;
        goto out;
    }
    size_t nt = 0;
    for (uint16_t t = 1; t < CQ_REC__MAX; t++) {
        if (s->type_counts[t] > 0) {
            types[nt++] = cq_rec_type_name(t);
        }
    }
    for (size_t i = 0; i < s->other_types.n; i++) {
        types[nt++] = ((const struct type_ent *)dmap_at(&s->other_types, i))->name;
    }
    qsort(types, nt, sizeof(*types), cmp_name_ptr);

    cq_buf_puts(&b, "{\"last_seq\":");
    db_uint(&b, s->last_seq);
    cq_buf_puts(&b, ",\"orders\":{");
    for (size_t i = 0; i < s->orders.n; i++) {
        const struct order_ent *e = (const struct order_ent *)orders[i];
        if (i > 0) {
            cq_buf_put(&b, ",", 1);
        }
        db_json_string(&b, e->id);
        cq_buf_puts(&b, ":{\"last_seq\":");
        db_uint(&b, e->last_seq);
        cq_buf_puts(&b, ",\"scope\":");
        db_json_string(&b, e->scope);
        cq_buf_puts(&b, ",\"status\":\"");
        cq_buf_puts(&b, status_names[e->status]);
        cq_buf_puts(&b, "\"}");
    }
    cq_buf_puts(&b, "},\"records\":");
    db_uint(&b, s->records);
    cq_buf_puts(&b, ",\"scopes\":{");
    for (size_t i = 0; i < s->scopes.n; i++) {
        const struct scope_ent *e = (const struct scope_ent *)scopes[i];
        if (i > 0) {
            cq_buf_put(&b, ",", 1);
        }
        db_json_string(&b, e->name);
        cq_buf_puts(&b, ":{\"last_seq\":");
        db_uint(&b, e->last_seq);
        cq_buf_puts(&b, ",\"quarantine_reason\":");
        if (e->quarantined) {
            db_json_string(&b, e->reason);
        } else {
            cq_buf_puts(&b, "null");
        }
        cq_buf_puts(&b, e->quarantined ? ",\"quarantined\":true" : ",\"quarantined\":false");
        cq_buf_puts(&b, ",\"records\":");
        db_uint(&b, e->records);
        cq_buf_put(&b, "}", 1);
    }
    if (s->trader_checkpoint_seq > 0) {
        cq_buf_puts(&b, "},\"trader_checkpoint_seq\":");
        db_uint(&b, s->trader_checkpoint_seq);
        cq_buf_puts(&b, ",\"types\":{");
    } else {
        cq_buf_puts(&b, "},\"types\":{");
    }
    for (size_t i = 0; i < nt; i++) {
        uint16_t t = cq_rec_type_parse(types[i]);
        uint64_t count = 0;
        if (t != 0) {
            count = s->type_counts[t];
        } else {
            int rc;
            const struct type_ent *te =
                dmap_get((struct dmap *)&s->other_types, types[i], strlen(types[i]), false, &rc);
            count = te != NULL ? te->count : 0;
        }
        if (i > 0) {
            cq_buf_put(&b, ",", 1);
        }
        db_json_string(&b, types[i]);
        cq_buf_put(&b, ":", 1);
        db_uint(&b, count);
    }
    cq_buf_puts(&b, "}}\n");
out:
    free(scopes);
    free(orders);
    free(types);
    return cq_buf_take(&b, len);
}

char *cq_journal_state_dump(const json_t *state)
{
    if (state == NULL) {
        return NULL;
    }
    char *text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (text == NULL) {
        return NULL;
    }
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (out == NULL) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}
