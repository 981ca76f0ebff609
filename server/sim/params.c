/* params.c — request parameter parsing for coinquant-simex (see sim-params.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim-params.h"
#include "cq/text.h"

#define MSG_ILLEGAL "Illegal characters found in a parameter."
#define MSG_TOO_MANY "Too many parameters sent for this endpoint."
#define MSG_DUPLICATE "Duplicate values for a parameter detected."
#define RANGE_LONG "^[0-9]{1,20}$"
#define RANGE_DECIMAL "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
#define RANGE_SYMBOL "^[A-Z0-9-_.]{1,20}$"
_Static_assert(SIM_PARAM_SYMBOL_MAX == 20, "RANGE_SYMBOL and RANGE_SYMBOLS spell the symbol limit");
#define RANGE_CLIENT_ID "^[a-zA-Z0-9-_]{1,36}$"
#define RANGE_RECV_WINDOW "^[0-9]{1,20}(\\.[0-9]{1,3})?$"
#define RANGE_SYMBOLS "^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$"

int cq_sim__api_error_set(struct cq_sim__api_error *err, int http_status, int code, const char *fmt,
                          ...)
{
    if (err != NULL) {
        va_list ap;
        err->http_status = http_status;
        err->code = code;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        cq_sim__text_mark_cut(err->msg, sizeof(err->msg), n);
    }
    return -CQ_EPARSE;
}

static int illegal_in(struct cq_sim__api_error *err, const char *name, const char *range)
{
    return cq_sim__api_error_set(err, 400, -1100,
                                 "Illegal characters found in parameter '%s'; legal range is '%s'.",
                                 name, range);
}

static int mandatory_missing(struct cq_sim__api_error *err, const char *name)
{
    return cq_sim__api_error_set(
        err, 400, -1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed.",
        name);
}

/* ---- decoding ------------------------------------------------------------------- */

long cq_sim__percent_decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (len - i < 3) {
                return -1;
            }
            int hi = cq_text_hex_value(src[i + 1]);
            int lo = cq_text_hex_value(src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            dst[o++] = (char)((hi << 4) | lo);
            i += 2;
        } else if (c == '+') {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    dst[o] = '\0';
    return (long)o;
}

static bool has_control_byte(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

/* ---- parsing -------------------------------------------------------------------- */

struct arena_cursor {
    char *base;
    size_t used, cap;
};

static char *arena_take(struct arena_cursor *a, size_t n)
{
    if (n > a->cap - a->used) {
        return NULL; /* cannot happen: the arena is sized for the worst case */
    }
    char *p = a->base + a->used;
    a->used += n;
    return p;
}

static int find_index(const struct cq_sim__params *p, const char *name, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        if (strcmp(p->items[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Split one part into pairs; append the raw non-signature segments to
 * signed_out. *total counts pairs across both parts; body_names remembers
 * every name the body sent (to catch a duplicate within the body even when
 * the query's copy won). */
static int parse_part(struct cq_sim__params *p, struct arena_cursor *a, const char *src, size_t len,
                      enum cq_sim__param_source source, size_t *total, const char **body_names,
                      size_t *n_body_names, char *signed_out, size_t *signed_len,
                      struct cq_sim__api_error *err)
{
    size_t pos = 0;
    bool first_kept = true;
    *signed_len = 0;
    signed_out[0] = '\0';
    if (len == 0) {
        return 0;
    }
    for (;;) {
        const char *seg = src + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seg_len = amp != NULL ? (size_t)(amp - seg) : len - pos;
        bool keep = true;

        if (seg_len > 0) {
            if (++*total > SIM_PARAMS_MAX) {
                return cq_sim__api_error_set(err, 400, -1101, MSG_TOO_MANY);
            }
            const char *eq = memchr(seg, '=', seg_len);
            size_t name_raw = eq != NULL ? (size_t)(eq - seg) : seg_len;
            const char *vraw = eq != NULL ? eq + 1 : seg + seg_len;
            size_t value_raw = eq != NULL ? seg_len - name_raw - 1 : 0;

            char *name = arena_take(a, name_raw + 1);
            char *value = arena_take(a, value_raw + 1);
            if (name == NULL || value == NULL) {
                return cq_sim__api_error_set(err, 500, -1000,
                                             "An unknown error occurred while processing the "
                                             "request.");
            }
            long nl = cq_sim__percent_decode(seg, name_raw, name);
            long vl = cq_sim__percent_decode(vraw, value_raw, value);
            if (nl <= 0 || vl < 0 || (size_t)nl > SIM_PARAM_NAME_MAX ||
                (size_t)vl > SIM_PARAM_VALUE_MAX || has_control_byte(name, (size_t)nl) ||
                has_control_byte(value, (size_t)vl)) {
                return cq_sim__api_error_set(err, 400, -1100, MSG_ILLEGAL);
            }
            keep = strcmp(name, "signature") != 0;
            bool add = true;
            if (source == SIM_PARAM_BODY) {
                for (size_t i = 0; i < *n_body_names; i++) {
                    if (strcmp(body_names[i], name) == 0) {
                        return cq_sim__api_error_set(err, 400, -1101, MSG_DUPLICATE);
                    }
                }
                body_names[(*n_body_names)++] = name;
                /* the query's copy, if any, wins */
                add = find_index(p, name, p->n) < 0;
            } else if (find_index(p, name, p->n) >= 0) {
                return cq_sim__api_error_set(err, 400, -1101, MSG_DUPLICATE);
            }
            if (add) {
                p->items[p->n].name = name;
                p->items[p->n].value = value;
                p->items[p->n].value_len = (size_t)vl;
                p->items[p->n].source = source;
                p->n++;
            }
        }
        if (keep) {
            if (!first_kept) {
                signed_out[(*signed_len)++] = '&';
            }
            memcpy(signed_out + *signed_len, seg, seg_len);
            *signed_len += seg_len;
            first_kept = false;
        }
        if (amp == NULL) {
            break;
        }
        pos += seg_len + 1;
        if (pos == len) {
            /* a trailing '&': one empty segment follows, kept as sent */
            if (!first_kept) {
                signed_out[(*signed_len)++] = '&';
            }
            break;
        }
    }
    signed_out[*signed_len] = '\0';
    return 0;
}

int cq_sim__params_parse(struct cq_sim__params *p, const char *query, size_t query_len,
                         const char *body, size_t body_len, struct cq_sim__api_error *err)
{
    memset(p, 0, sizeof(*p));
    if (query == NULL) {
        query_len = 0;
    }
    if (body == NULL) {
        body_len = 0;
    }
    if (query_len > SIM_QUERY_MAX_BYTES || body_len > SIM_BODY_MAX_BYTES) {
        return cq_sim__api_error_set(err, 400, -1101, MSG_TOO_MANY);
    }
    /* Worst case: every byte decoded once (names + values, two NULs per
     * pair) plus the two signed copies (two NULs). */
    size_t cap = 2 * (query_len + body_len) + 4 * SIM_PARAMS_MAX + 2 * (query_len + body_len) + 16;
    p->arena = malloc(cap);
    if (p->arena == NULL) {
        cq_sim__api_error_set(err, 500, -1000,
                              "An unknown error occurred while processing the request.");
        return -CQ_ENOMEM;
    }
    struct arena_cursor a = {p->arena, 0, cap};
    char *signed_query = arena_take(&a, query_len + 1);
    char *signed_body = arena_take(&a, body_len + 1);
    size_t total = 0;
    const char *body_names[SIM_PARAMS_MAX];
    size_t n_body_names = 0;
    int rc = parse_part(p, &a, query, query_len, SIM_PARAM_QUERY, &total, body_names, &n_body_names,
                        signed_query, &p->signed_query_len, err);
    if (rc == 0) {
        rc = parse_part(p, &a, body, body_len, SIM_PARAM_BODY, &total, body_names, &n_body_names,
                        signed_body, &p->signed_body_len, err);
    }
    if (rc < 0) {
        cq_sim__params_fini(p);
        return rc;
    }
    p->signed_query = signed_query;
    p->signed_body = signed_body;
    return 0;
}

void cq_sim__params_fini(struct cq_sim__params *p)
{
    if (p == NULL) {
        return;
    }
    free(p->arena);
    memset(p, 0, sizeof(*p));
}

const struct cq_sim__param *cq_sim__params_find(const struct cq_sim__params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->items[i].name, name) == 0) {
            return &p->items[i];
        }
    }
    return NULL;
}

const char *cq_sim__params_get(const struct cq_sim__params *p, const char *name)
{
    const struct cq_sim__param *it = cq_sim__params_find(p, name);
    if (it == NULL || it->value_len == 0) {
        return NULL;
    }
    return it->value;
}

/* ---- typed getters ---------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Common prologue: absent/empty handling. Returns 1 when a value is there,
 * 0 when not (and not mandatory), <0 on error. */
static int value_of(const struct cq_sim__params *p, const char *name, bool mandatory,
                    const char **v, bool *present, struct cq_sim__api_error *err)
{
    *v = cq_sim__params_get(p, name);
    if (present != NULL) {
        *present = *v != NULL;
    }
    if (*v == NULL) {
        return mandatory ? mandatory_missing(err, name) : 0;
    }
    return 1;
}

int cq_sim__param_long(const struct cq_sim__params *p, const char *name, bool mandatory,
                       int64_t *out, bool *present, struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, mandatory, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    size_t len = strlen(v);
    if (len == 0 || len > 20) {
        return illegal_in(err, name, RANGE_LONG);
    }
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(v[i])) {
            return illegal_in(err, name, RANGE_LONG);
        }
        uint64_t d = (uint64_t)(v[i] - '0');
        if (n > ((uint64_t)INT64_MAX - d) / 10) {
            return illegal_in(err, name, RANGE_LONG);
        }
        n = n * 10 + d;
    }
    *out = (int64_t)n;
    return 0;
}

int cq_sim__param_decimal(const struct cq_sim__params *p, const char *name, bool mandatory,
                          cq_dec *out, bool *present, struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, mandatory, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    size_t i = 0, int_digits = 0, frac_digits = 0;
    while (is_digit(v[i])) {
        i++;
        int_digits++;
    }
    if (v[i] == '.') {
        i++;
        while (is_digit(v[i])) {
            i++;
            frac_digits++;
        }
        if (frac_digits == 0) {
            return illegal_in(err, name, RANGE_DECIMAL);
        }
    }
    if (v[i] != '\0' || int_digits == 0 || int_digits > 20 || frac_digits > 20) {
        return illegal_in(err, name, RANGE_DECIMAL);
    }
    cq_dec d;
    if (cq_dec_parse(v, i, &d) < 0) {
        /* matches the pattern but does not fit int64 at its scale */
        return illegal_in(err, name, RANGE_DECIMAL);
    }
    *out = d;
    return 0;
}

int cq_sim__param_symbol(const struct cq_sim__params *p, const char *name, bool mandatory,
                         char *out, bool *present, struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, mandatory, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    size_t len = strlen(v);
    if (len > SIM_PARAM_SYMBOL_MAX) {
        return illegal_in(err, name, RANGE_SYMBOL);
    }
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        bool ok = (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_' || c == '.';
        if (!ok) {
            return illegal_in(err, name, RANGE_SYMBOL);
        }
    }
    memcpy(out, v, len + 1);
    return 0;
}

int cq_sim__param_client_id(const struct cq_sim__params *p, const char *name, bool mandatory,
                            char *out, bool *present, struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, mandatory, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    size_t len = strlen(v);
    if (len > SIM_PARAM_CLIENT_ID_MAX) {
        return illegal_in(err, name, RANGE_CLIENT_ID);
    }
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_';
        if (!ok) {
            return illegal_in(err, name, RANGE_CLIENT_ID);
        }
    }
    memcpy(out, v, len + 1);
    return 0;
}

int cq_sim__param_bool(const struct cq_sim__params *p, const char *name, bool *out, bool *present,
                       struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, false, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    if (strcasecmp(v, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(v, "false") == 0) {
        *out = false;
        return 0;
    }
    return illegal_in(err, name, "true, false");
}

int cq_sim__param_enum(const struct cq_sim__params *p, const char *name, bool mandatory,
                       const char *const *choices, int *index, bool *present, int bad_code,
                       const char *bad_msg, struct cq_sim__api_error *err)
{
    const char *v;
    int rc = value_of(p, name, mandatory, &v, present, err);
    if (rc <= 0) {
        return rc;
    }
    for (int i = 0; choices[i] != NULL; i++) {
        if (strcmp(v, choices[i]) == 0) {
            *index = i;
            return 0;
        }
    }
    if (bad_code != 0) {
        return cq_sim__api_error_set(err, 400, bad_code, "%s", bad_msg);
    }
    /* choices are short constant lists (at most a dozen words): they fit;
     * were one cut, the list would end early, never mid-word */
    char range[160];
    size_t o = 0;
    range[0] = '\0';
    for (int i = 0; choices[i] != NULL; i++) {
        int w = snprintf(range + o, sizeof(range) - o, "%s%s", i > 0 ? ", " : "", choices[i]);
        if (w < 0 || (size_t)w >= sizeof(range) - o) {
            break;
        }
        o += (size_t)w;
    }
    return illegal_in(err, name, range);
}

int cq_sim__param_recv_window_us(const struct cq_sim__params *p, int64_t *out_us,
                                 struct cq_sim__api_error *err)
{
    const char *v = cq_sim__params_get(p, "recvWindow");
    if (v == NULL) {
        *out_us = 5000 * 1000LL;
        return 0;
    }
    size_t i = 0, int_digits = 0, frac_digits = 0;
    int64_t ms = 0;
    bool huge = false;
    while (is_digit(v[i])) {
        if (ms > 1000000000LL) {
            huge = true; /* saturate: certainly over 60000 */
        } else {
            ms = ms * 10 + (v[i] - '0');
        }
        i++;
        int_digits++;
    }
    int64_t frac_us = 0;
    if (v[i] == '.') {
        i++;
        int64_t scale = 100;
        while (is_digit(v[i])) {
            if (frac_digits < 3) {
                frac_us += (v[i] - '0') * scale;
                scale /= 10;
            }
            i++;
            frac_digits++;
        }
        if (frac_digits == 0) {
            return illegal_in(err, "recvWindow", RANGE_RECV_WINDOW);
        }
    }
    if (v[i] != '\0' || int_digits == 0 || int_digits > 20 || frac_digits > 3) {
        return illegal_in(err, "recvWindow", RANGE_RECV_WINDOW);
    }
    int64_t us = huge ? INT64_MAX : ms * 1000 + frac_us;
    if (us > 60000 * 1000LL) {
        return cq_sim__api_error_set(err, 400, -1131, "recvWindow must be less than 60000.");
    }
    *out_us = us;
    return 0;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return s;
}

int cq_sim__param_symbols(const char *value, char (*out)[SIM_PARAM_SYMBOL_MAX + 1], size_t max,
                          size_t *n, struct cq_sim__api_error *err)
{
    const char *s = skip_spaces(value);
    *n = 0;
    if (*s != '[') {
        return illegal_in(err, "symbols", RANGE_SYMBOLS);
    }
    s = skip_spaces(s + 1);
    if (*s == ']') {
        s = skip_spaces(s + 1);
        return *s == '\0' ? 0 : illegal_in(err, "symbols", RANGE_SYMBOLS);
    }
    for (;;) {
        if (*s != '"') {
            return illegal_in(err, "symbols", RANGE_SYMBOLS);
        }
        s++;
        size_t len = 0;
        char name[SIM_PARAM_SYMBOL_MAX + 1];
        while (*s != '"') {
            char c = *s;
            bool ok = (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_' || c == '.';
            if (!ok || len >= SIM_PARAM_SYMBOL_MAX) {
                return illegal_in(err, "symbols", RANGE_SYMBOLS);
            }
            name[len++] = c;
            s++;
        }
        if (len == 0) {
            return illegal_in(err, "symbols", RANGE_SYMBOLS);
        }
        name[len] = '\0';
        if (*n >= max) {
            return cq_sim__api_error_set(err, 400, -1101, MSG_TOO_MANY);
        }
        memcpy(out[*n], name, len + 1);
        (*n)++;
        s = skip_spaces(s + 1);
        if (*s == ',') {
            s = skip_spaces(s + 1);
            continue;
        }
        if (*s == ']') {
            s = skip_spaces(s + 1);
            return *s == '\0' ? 0 : illegal_in(err, "symbols", RANGE_SYMBOLS);
        }
        return illegal_in(err, "symbols", RANGE_SYMBOLS);
    }
}

/* ---- helpers -------------------------------------------------------------------- */

void cq_sim__text_mark_cut(char *buf, size_t cap, int n)
{
    if (n >= 0 && (size_t)n < cap) {
        return;
    }
    if (cap >= 4) {
        cq_text_mark_cut(buf, cap); /* on a UTF-8 boundary */
    } else if (cap > 0) {
        buf[0] = '\0';
    }
}

bool cq_sim__peer_is_loopback(const struct sockaddr *sa)
{
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        static const unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, loop6, 16) == 0) {
            return true;
        }
        return memcmp(b, mapped, 12) == 0 && b[12] == 127;
    }
    return false;
}

int64_t cq_sim__time_param_to_us(int64_t v)
{
    if (v >= 100000000000000LL) {
        return v;
    }
    return v * 1000;
}
