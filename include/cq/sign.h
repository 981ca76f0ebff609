/*
 * sign.h — Binance request signing: lowercase hex HMAC-SHA256 of the raw
 * query string concatenated with the raw body (no separator), keyed with the
 * API secret. Used by the exchange client to sign and by coinquant-simex to
 * verify. Pure and reentrant: any thread.
 */
#ifndef CQ_SIGN_H
#define CQ_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#include "cq/common.h"

#define CQ_SIGN_HEX_LEN 64 /* hex characters, without the NUL */

/* out receives 64 lowercase hex characters and a NUL (65 bytes). The payload
 * is query followed by body; either may be NULL/0. Returns 0, or -CQ_EIO if
 * the crypto library fails. */
int cq_sign_hmac_sha256_hex(const char *secret, size_t secret_len, const char *query,
                            size_t query_len, const char *body, size_t body_len,
                            char out[CQ_SIGN_HEX_LEN + 1]) CQ_WUR;

/* Verify a presented signature (hex, case-insensitive) in constant time with
 * respect to its content. False for a wrong length or a non-hex character. */
bool cq_sign_verify(const char *secret, size_t secret_len, const char *query, size_t query_len,
                    const char *body, size_t body_len, const char *signature_hex,
                    size_t signature_len);

#endif /* CQ_SIGN_H */
