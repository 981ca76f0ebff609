/*
 * sim-params.h — coinquant-simex's request parameter parser (private to
 * server/sim/; used by rest.c, fuzzed by tests/fuzz/fuzz_sim_params.c).
 *
 * Binance takes parameters from the raw query string and from an
 * application/x-www-form-urlencoded body (../shared/BINANCE_PROTOCOL.md §0):
 *   - pairs are split on '&', then on the first '='; names and values are
 *     percent-decoded ('+' is a space); a pair without '=' has value "";
 *   - a name present in both the query and the body: the query's value wins;
 *   - a name present twice in the same part: -1101 "Duplicate values for a
 *     parameter detected." (what Binance answers);
 *   - bad percent-encoding, a control byte (< 0x20, 0x7f) after decoding, an
 *     empty name or an over-long name/value: -1100 "Illegal characters found
 *     in a parameter.";
 *   - more than SIM_PARAMS_MAX pairs: -1101 "Too many parameters sent for
 *     this endpoint.".
 * For signature verification the parser also keeps the RAW query and body
 * with every pair whose decoded name is `signature` removed (the remaining
 * raw pairs joined by '&', byte for byte as received, §2): the HMAC is
 * computed over those bytes, never over re-encoded values.
 *
 * The typed getters below check one value against the rule Binance states in
 * its error message (regex, enum) and fill a struct cq_sim__api_error with the
 * exact code and text on failure.
 *
 * Everything here is pure and reentrant: no globals, no locks, no I/O. A
 * struct cq_sim__params owns one heap arena (cq_sim__params_fini frees it; fini on a
 * zeroed or failed-parse struct is fine).
 */
#ifndef CQ_SIM_PARAMS_H
#define CQ_SIM_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/market.h"

#define SIM_PARAMS_MAX 64                        /* pairs per request (query + body) */
#define SIM_PARAM_NAME_MAX 64                    /* bytes of a decoded name */
#define SIM_PARAM_VALUE_MAX 16384                /* bytes of a decoded value */
#define SIM_QUERY_MAX_BYTES 65536                /* raw query string */
#define SIM_BODY_MAX_BYTES 65536                 /* raw request body */
#define SIM_PARAM_SYMBOL_MAX CQ_SYMBOL_MAX_CHARS /* ^[A-Z0-9-_.]{1,20}$ */
#define SIM_PARAM_SYMBOLS_MAX 200                /* names in a `symbols` JSON array */
#define SIM_PARAM_CLIENT_ID_MAX 36               /* ^[a-zA-Z0-9-_]{1,36}$ */
#define SIM_API_MSG_MAX 256

/* A Binance error answer: HTTP status, negative code, exact msg. */
struct cq_sim__api_error {
    int http_status;
    int code;
    char msg[SIM_API_MSG_MAX];
};

/* Fill err and return -CQ_EPARSE (so callers can `return cq_sim__api_error_set(...)`). */
int cq_sim__api_error_set(struct cq_sim__api_error *err, int http_status, int code, const char *fmt,
                          ...) CQ_PRINTF(4, 5);

enum cq_sim__param_source { SIM_PARAM_QUERY, SIM_PARAM_BODY };

struct cq_sim__param {
    const char *name;  /* decoded, NUL-terminated; borrowed from the arena */
    const char *value; /* decoded, NUL-terminated ("" when empty) */
    size_t value_len;
    enum cq_sim__param_source source;
};

struct cq_sim__params {
    struct cq_sim__param items[SIM_PARAMS_MAX]; /* after query-wins de-duplication */
    size_t n;
    /* The signed payload: raw query / raw body minus the `signature=` pairs.
     * Borrowed from the arena; never NULL after a successful parse. */
    const char *signed_query;
    size_t signed_query_len;
    const char *signed_body;
    size_t signed_body_len;
    char *arena; /* owned */
};

/* Parse query (without the '?') and body (pass NULL/0 when the body is not
 * form-encoded). 0, or -CQ_EPARSE with err filled (400, -1100/-1101), or
 * -CQ_ENOMEM (err: 500 -1000). p is initialised on every path. */
int cq_sim__params_parse(struct cq_sim__params *p, const char *query, size_t query_len,
                         const char *body, size_t body_len, struct cq_sim__api_error *err) CQ_WUR;
void cq_sim__params_fini(struct cq_sim__params *p);

/* The parameter or NULL if absent. */
const struct cq_sim__param *cq_sim__params_find(const struct cq_sim__params *p, const char *name);
/* Its value, or NULL if absent OR empty (Binance treats both as "not sent"). */
const char *cq_sim__params_get(const struct cq_sim__params *p, const char *name);

/* ---- typed getters: 0 = ok (*present says whether it was sent), or
 * -CQ_EPARSE with err filled. `mandatory` turns "not sent / empty" into
 * -1102 "Mandatory parameter '<name>' was not sent, was empty/null, or
 * malformed." ------------------------------------------------------------- */

/* ^[0-9]{1,20}$ fitting in int64 (else -1100 with that range). */
int cq_sim__param_long(const struct cq_sim__params *p, const char *name, bool mandatory,
                       int64_t *out, bool *present, struct cq_sim__api_error *err) CQ_WUR;
/* ^([0-9]{1,20})(\.[0-9]{1,20})?$ fitting in a cq_dec (else -1100). */
int cq_sim__param_decimal(const struct cq_sim__params *p, const char *name, bool mandatory,
                          cq_dec *out, bool *present, struct cq_sim__api_error *err) CQ_WUR;
/* ^[A-Z0-9-_.]{1,20}$ (else -1100); out holds SIM_PARAM_SYMBOL_MAX + 1. */
int cq_sim__param_symbol(const struct cq_sim__params *p, const char *name, bool mandatory,
                         char *out, bool *present, struct cq_sim__api_error *err) CQ_WUR;
/* ^[a-zA-Z0-9-_]{1,36}$ (else -1100); out holds SIM_PARAM_CLIENT_ID_MAX + 1. */
int cq_sim__param_client_id(const struct cq_sim__params *p, const char *name, bool mandatory,
                            char *out, bool *present, struct cq_sim__api_error *err) CQ_WUR;
/* "true"/"false" (case-insensitive; else -1100). */
int cq_sim__param_bool(const struct cq_sim__params *p, const char *name, bool *out, bool *present,
                       struct cq_sim__api_error *err) CQ_WUR;
/* One of `choices` (NULL-terminated, exact case); *index gets its position.
 * Else -1100 "Illegal characters found in parameter '<name>'; legal range is
 * '<A>, <B>, …'." unless bad_code != 0, then bad_code with bad_msg (for
 * -1115/-1116/-1117). */
int cq_sim__param_enum(const struct cq_sim__params *p, const char *name, bool mandatory,
                       const char *const *choices, int *index, bool *present, int bad_code,
                       const char *bad_msg, struct cq_sim__api_error *err) CQ_WUR;
/* recvWindow: ^[0-9]{1,20}(\.[0-9]{1,3})?$ in ms, returned in µs; > 60000 ms is
 * -1131 "recvWindow must be less than 60000.". Absent: 5000 ms. */
int cq_sim__param_recv_window_us(const struct cq_sim__params *p, int64_t *out_us,
                                 struct cq_sim__api_error *err) CQ_WUR;

/* `symbols`: a URL-decoded JSON array of symbol names,
 * ^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$ (spaces around
 * tokens tolerated). out holds max names of SIM_PARAM_SYMBOL_MAX + 1 bytes.
 * -1100 with Binance's message when malformed, -1101 when more than max. */
int cq_sim__param_symbols(const char *value, char (*out)[SIM_PARAM_SYMBOL_MAX + 1], size_t max,
                          size_t *n, struct cq_sim__api_error *err) CQ_WUR;

/* ---- small helpers shared with rest.c ------------------------------------------ */

/* Percent-decode src[0..len) into dst (at least len + 1 bytes), '+' as a
 * space. Returns the decoded length, or -1 on a bad escape. */
long cq_sim__percent_decode(const char *src, size_t len, char *dst);

/* Is this peer address loopback (127.0.0.0/8, ::1, ::ffff:127.x.x.x)? The
 * /_sim/ control path is refused to anyone else. */
bool cq_sim__peer_is_loopback(const struct sockaddr *sa);

/* After vsnprintf/snprintf of a message into buf[cap] that returned n: when
 * the text was cut (n >= cap), end it with "..." so that a reader sees it was
 * (messages are for people; a cut one is still answered). */
void cq_sim__text_mark_cut(char *buf, size_t cap, int n);

/* Timestamps may arrive in ms or µs: values >= 10^14 are µs. Returns µs. */
int64_t cq_sim__time_param_to_us(int64_t v);

#endif /* CQ_SIM_PARAMS_H */
