/* sign.c — HMAC-SHA256 request signatures (see include/cq/sign.h). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cq/sign.h"
#include "cq/text.h"

static int hmac_raw(const char *secret, size_t secret_len, const char *query, size_t query_len,
                    const char *body, size_t body_len, unsigned char mac[32])
{
    int rc = -CQ_EIO;
    HMAC_CTX *ctx = NULL;
    unsigned int mac_len = 0;

    /* HMAC_CTX is deprecated in OpenSSL 3 but present in 1.1.1 and 3.x; the
     * one-shot HMAC() cannot take two buffers without a copy. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    ctx = HMAC_CTX_new();
    if (ctx == NULL) {
        goto out;
    }
    if (HMAC_Init_ex(ctx, secret, (int)secret_len, EVP_sha256(), NULL) != 1) {
        goto out;
    }
    if (query_len > 0 && HMAC_Update(ctx, (const unsigned char *)query, query_len) != 1) {
        goto out;
    }
    if (body_len > 0 && HMAC_Update(ctx, (const unsigned char *)body, body_len) != 1) {
        goto out;
    }
    if (HMAC_Final(ctx, mac, &mac_len) != 1 || mac_len != 32) {
        goto out;
    }
    rc = 0;
out:
    HMAC_CTX_free(ctx);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    return rc;
}

int cq_sign_hmac_sha256_hex(const char *secret, size_t secret_len, const char *query,
                            size_t query_len, const char *body, size_t body_len,
                            char out[CQ_SIGN_HEX_LEN + 1])
{
    unsigned char mac[32];
    _Static_assert(2 * sizeof(mac) == CQ_SIGN_HEX_LEN, "two hex characters per MAC byte");
    int rc = hmac_raw(secret, secret_len, query, query_len, body, body_len, mac);
    if (rc < 0) {
        return rc;
    }
    cq_text_hex_encode(mac, sizeof(mac), out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

bool cq_sign_verify(const char *secret, size_t secret_len, const char *query, size_t query_len,
                    const char *body, size_t body_len, const char *signature_hex,
                    size_t signature_len)
{
    unsigned char presented[32];
    unsigned char expected[32];
    if (signature_len != CQ_SIGN_HEX_LEN) {
        return false;
    }
    for (int i = 0; i < 32; i++) {
        int hi = cq_text_hex_value(signature_hex[2 * i]);
        int lo = cq_text_hex_value(signature_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        presented[i] = (unsigned char)(hi << 4 | lo);
    }
    if (hmac_raw(secret, secret_len, query, query_len, body, body_len, expected) < 0) {
        return false;
    }
    bool ok = CRYPTO_memcmp(presented, expected, sizeof(expected)) == 0;
    OPENSSL_cleanse(expected, sizeof(expected));
    return ok;
}
