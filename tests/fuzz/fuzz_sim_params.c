/*
 * fuzz_sim_params.c — libFuzzer target for coinquant-simex's request
 * parameter parser (server/sim/params.c).
 *
 * Input: the bytes before the first '\n' are the raw query string, the rest
 * is the raw form body. The target parses them, then runs every typed getter
 * on every parameter name it found, and checks the parser's invariants:
 *   - at most SIM_PARAMS_MAX items, no duplicate names, no empty names, no
 *     control bytes in names or values;
 *   - a name sent in both parts comes from the query (query wins);
 *   - the signed copies are no longer than the raw parts and contain no
 *     `signature=` pair at the start of a segment.
 *
 * Build and run (from the repository root; about 30 s):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *     -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Iserver \
 *     tests/fuzz/fuzz_sim_params.c server/sim/params.c server/core/decimal.c \
 *     server/core/err.c -o /tmp/fuzz_sim_params
 *   mkdir -p /tmp/fuzz_sim_params_corpus
 *   /tmp/fuzz_sim_params -max_total_time=30 -max_len=4096 /tmp/fuzz_sim_params_corpus
 * A crash leaves crash-<sha1> in the current directory; replay it with
 *   /tmp/fuzz_sim_params crash-<sha1>
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim-params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static bool segment_starts_with_signature(const char *s, size_t len)
{
    size_t pos = 0;
    while (pos <= len) {
        if (len - pos >= 10 && memcmp(s + pos, "signature=", 10) == 0) {
            return true;
        }
        const char *amp = memchr(s + pos, '&', len - pos);
        if (amp == NULL) {
            break;
        }
        pos = (size_t)(amp - s) + 1;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - in) : size;
    const char *body = nl != NULL ? nl + 1 : NULL;
    size_t blen = nl != NULL ? size - qlen - 1 : 0;

    /* Copy into exact-size heap buffers so ASan sees any over-read. */
    char *q = malloc(qlen > 0 ? qlen : 1);
    char *b = malloc(blen > 0 ? blen : 1);
    if (q == NULL || b == NULL) {
        free(q);
        free(b);
        return 0;
    }
    memcpy(q, in, qlen);
    if (blen > 0) {
        memcpy(b, body, blen);
    }

    struct cq_sim__params p;
    struct cq_sim__api_error err;
    int rc = cq_sim__params_parse(&p, q, qlen, body != NULL ? b : NULL, blen, &err);
    if (rc < 0) {
        check(err.code == -1100 || err.code == -1101 || err.code == -1000);
        check(err.msg[0] != '\0');
        check(p.n == 0 && p.arena == NULL);
        free(q);
        free(b);
        return 0;
    }
    check(p.n <= SIM_PARAMS_MAX);
    check(p.signed_query != NULL && p.signed_body != NULL);
    check(p.signed_query_len <= qlen && p.signed_body_len <= blen);
    check(strlen(p.signed_query) == p.signed_query_len);
    check(!segment_starts_with_signature(p.signed_query, p.signed_query_len));
    check(!segment_starts_with_signature(p.signed_body, p.signed_body_len));

    for (size_t i = 0; i < p.n; i++) {
        const struct cq_sim__param *it = &p.items[i];
        size_t nlen = strlen(it->name);
        check(nlen > 0 && nlen <= SIM_PARAM_NAME_MAX);
        check(strlen(it->value) == it->value_len && it->value_len <= SIM_PARAM_VALUE_MAX);
        for (size_t j = 0; j < nlen; j++) {
            check((unsigned char)it->name[j] >= 0x20 && it->name[j] != 0x7f);
        }
        for (size_t j = i + 1; j < p.n; j++) {
            check(strcmp(it->name, p.items[j].name) != 0);
        }
        check(cq_sim__params_find(&p, it->name) == it);

        /* every getter on every name: any answer, never a crash */
        int64_t l;
        cq_dec d;
        bool present, flag;
        char sym[SIM_PARAM_SYMBOL_MAX + 1];
        char cid[SIM_PARAM_CLIENT_ID_MAX + 1];
        int idx;
        static const char *const choices[] = {"ACK", "RESULT", "FULL", NULL};
        if (cq_sim__param_long(&p, it->name, true, &l, &present, &err) == 0) {
            check(l >= 0);
        }
        if (cq_sim__param_decimal(&p, it->name, false, &d, &present, &err) == 0 && present) {
            check(d.scale <= CQ_DEC_MAX_SCALE && d.m >= 0);
        }
        if (cq_sim__param_symbol(&p, it->name, false, sym, &present, &err) == 0 && present) {
            check(strlen(sym) <= SIM_PARAM_SYMBOL_MAX);
        }
        if (cq_sim__param_client_id(&p, it->name, false, cid, &present, &err) == 0 && present) {
            check(strlen(cid) >= 1 && strlen(cid) <= SIM_PARAM_CLIENT_ID_MAX);
        }
        if (cq_sim__param_bool(&p, it->name, &flag, &present, &err) < 0) {
            check(err.code == -1100);
        }
        if (cq_sim__param_enum(&p, it->name, false, choices, &idx, &present, 0, NULL, &err) == 0 &&
            present) {
            check(idx >= 0 && idx < 3);
        }
        char names[8][SIM_PARAM_SYMBOL_MAX + 1];
        size_t n_names = 0;
        if (cq_sim__param_symbols(it->value, names, 8, &n_names, &err) == 0) {
            check(n_names <= 8);
        }
    }
    int64_t rw;
    if (cq_sim__param_recv_window_us(&p, &rw, &err) == 0) {
        check(rw >= 0 && rw <= 60000 * 1000LL);
    }

    /* query wins: a name present in the raw query must come from it */
    for (size_t i = 0; i < p.n; i++) {
        if (p.items[i].source == SIM_PARAM_BODY) {
            /* then the query did not send it; re-parse the query alone to check */
            struct cq_sim__params qonly;
            struct cq_sim__api_error e2;
            if (cq_sim__params_parse(&qonly, q, qlen, NULL, 0, &e2) == 0) {
                check(cq_sim__params_find(&qonly, p.items[i].name) == NULL);
                cq_sim__params_fini(&qonly);
            }
        }
    }
    cq_sim__params_fini(&p);
    free(q);
    free(b);
    return 0;
}
