/*
 * test_sign.c — request signing against the documented Binance test vectors
 * (../shared/BINANCE_PROTOCOL.md §2), split query/body payloads, and
 * verification (case-insensitive hex, wrong length, wrong character, wrong
 * secret, a single flipped payload byte).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cq/sign.h"

static const char secret[] = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
static const char whole[] = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                            "&recvWindow=5000&timestamp=1499827319559";
static const char split_query[] = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
static const char split_body[] = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
static const char whole_sig[] = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
static const char split_sig[] = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";

Test(sign, documented_vector_query_only)
{
    char out[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(secret, strlen(secret), whole, strlen(whole), NULL, 0, out), 0);
    cr_expect_str_eq(out, whole_sig);
}

Test(sign, documented_vector_body_only_is_the_same_bytes)
{
    char out[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(secret, strlen(secret), NULL, 0, whole, strlen(whole), out), 0);
    cr_expect_str_eq(out, whole_sig);
}

Test(sign, documented_vector_split_query_and_body)
{
    char out[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(cq_sign_hmac_sha256_hex(secret, strlen(secret), split_query, strlen(split_query),
                                         split_body, strlen(split_body), out),
                 0);
    cr_expect_str_eq(out, split_sig);
}

Test(sign, verify_accepts_either_case_and_rejects_everything_else)
{
    char upper[CQ_SIGN_HEX_LEN + 1];
    for (size_t i = 0; i <= CQ_SIGN_HEX_LEN; i++) {
        upper[i] =
            (char)((whole_sig[i] >= 'a' && whole_sig[i] <= 'f') ? whole_sig[i] - 32 : whole_sig[i]);
    }
    size_t n = strlen(whole);
    cr_expect(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, whole_sig, 64));
    cr_expect(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, upper, 64));
    cr_expect_not(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, whole_sig, 63));
    cr_expect_not(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, "", 0));

    char bad[CQ_SIGN_HEX_LEN + 1];
    memcpy(bad, whole_sig, sizeof(bad));
    bad[10] = 'g';
    cr_expect_not(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, bad, 64));
    bad[10] = whole_sig[10] == '0' ? '1' : '0';
    cr_expect_not(cq_sign_verify(secret, strlen(secret), whole, n, NULL, 0, bad, 64));

    char flipped[sizeof(whole)];
    memcpy(flipped, whole, sizeof(whole));
    flipped[7] ^= 1;
    cr_expect_not(cq_sign_verify(secret, strlen(secret), flipped, n, NULL, 0, whole_sig, 64));
    cr_expect_not(cq_sign_verify("other-secret", 12, whole, n, NULL, 0, whole_sig, 64));
    /* The secret is case-sensitive. */
    cr_expect_not(cq_sign_verify("nhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
                                 strlen(secret), whole, n, NULL, 0, whole_sig, 64));
    /* Where the split falls does not matter; the bytes do. */
    cr_expect(cq_sign_verify(secret, strlen(secret), split_query, strlen(split_query), split_body,
                             strlen(split_body), split_sig, 64));
}
