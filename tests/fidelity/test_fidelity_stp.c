/*
 * test_fidelity_stp.c — self-trade prevention as Binance documents it
 * (binance-spot-api-docs faqs/stp_faq.md, user-data-stream.md), checked
 * against a running coinquant-simex over its real sockets: REST on
 * loopback (libcurl) and the user data stream (WebSocket, listenKey).
 *
 * Each test pauses the market (POST /_sim/market/pause), so the book holds:
 * our SELL rests at the best ask behind the quantity displayed there (the
 * queue model), then our own BUY at that price for more than the public
 * quantity takes the public quantity ahead of our SELL and meets it.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "support/ws_tclient.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define WAIT_MS 5000

static struct cq_sim *g_sim;
static char g_base[128];
static int g_ws_port;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_sim(void)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_sim_balance balances[2];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    cr_assert_eq(cq_sim_parse_balances("USDT=10000000,BTC=20", balances, 2, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = 1,
        .speed = 1,
        .seed = 42,
        .balances = balances,
        .n_balances = n_balances,
        .maker_bps = 10,
        .taker_bps = 10,
        .weight_limit_1m = 1000000,
        .queue_model = "conservative",
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_base, cq_sim_rest_url(g_sim), sizeof(g_base));
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon);
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
}

static void stop_sim(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
}

struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t k = size * n;
    char *b = realloc(r->body, r->len + k + 1);
    if (b == NULL) {
        return 0;
    }
    memcpy(b + r->len, p, k);
    r->len += k;
    b[r->len] = '\0';
    r->body = b;
    return k;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static struct resp req(const char *method, const char *path, const char *params, bool is_signed)
{
    struct resp r = {0};
    char text[4096];
    int n = snprintf(text, sizeof(text), "%s", params != NULL ? params : "");
    cr_assert(n >= 0 && (size_t)n < sizeof(text) - 128);
    if (is_signed) {
        char sig[CQ_SIGN_HEX_LEN + 1];
        size_t len = strlen(text);
        snprintf(text + len, sizeof(text) - len, "%stimestamp=%" PRId64, len > 0 ? "&" : "",
                 wall_ms());
        cr_assert_eq(
            cq_sign_hmac_sha256_hex(SECRET, strlen(SECRET), text, strlen(text), "", 0, sig), 0);
        len = strlen(text);
        snprintf(text + len, sizeof(text) - len, "&signature=%s", sig);
    }
    bool post = strcmp(method, "POST") == 0;
    char url[4400];
    snprintf(url, sizeof(url), "%s%s%s%s", g_base, path, !post && text[0] ? "?" : "",
             !post ? text : "");
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "X-MBX-APIKEY: " KEY);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (post) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body != NULL) {
        r.json = json_loadb(r.body, r.len, 0, NULL);
    }
    cr_assert_not_null(r.json, "%s %s: not JSON (HTTP %ld): %s", method, path, r.status,
                       r.body != NULL ? r.body : "");
    cr_assert_eq(r.status, 200, "%s %s: HTTP %ld: %s", method, path, r.status, r.body);
    return r;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "missing string %s", k);
    return s;
}

static cq_dec D(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "not a decimal: %s", s);
    return d;
}

static void assert_dec_eq(const char *got, const char *want)
{
    cr_assert(cq_dec_cmp(D(got), D(want)) == 0, "got %s, want %s", got, want);
}

struct setup {
    char ask[32];        /* the best ask, where our SELL rests */
    char public_qty[32]; /* what the book displays there */
    char taker_qty[32];  /* public_qty + 0.001 */
    int64_t maker_id;
    struct tclient *user; /* the user data stream */
    size_t cursor;
};

/* Pause the market, open the user data stream, read the best ask, rest
 * our SELL 0.001 there (behind the displayed quantity). */
static void setup(struct setup *s)
{
    memset(s, 0, sizeof(*s));
    struct resp r = req("POST", "/_sim/market/pause", "on=1", false);
    resp_free(&r);
    r = req("POST", "/api/v3/userDataStream", "", false);
    char path[160];
    snprintf(path, sizeof(path), "/ws/%s", jstr(r.json, "listenKey"));
    resp_free(&r);
    s->user = tc_open(g_ws_port, path);
    cr_assert(tc_wait_established(s->user, WAIT_MS));
    r = req("GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5", false);
    const json_t *best = json_array_get(json_object_get(r.json, "asks"), 0);
    cr_assert_not_null(best, "%s", r.body);
    cq_strlcpy(s->ask, json_string_value(json_array_get(best, 0)), sizeof(s->ask));
    cq_strlcpy(s->public_qty, json_string_value(json_array_get(best, 1)), sizeof(s->public_qty));
    resp_free(&r);
    cq_dec tq;
    cr_assert_eq(cq_dec_add(D(s->public_qty), D("0.001"), &tq), 0);
    cr_assert_not_null(cq_dec_format(tq, s->taker_qty, sizeof(s->taker_qty)));
    char params[256];
    snprintf(params, sizeof(params),
             "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s", s->ask);
    r = req("POST", "/api/v3/order", params, true);
    cr_assert_str_eq(jstr(r.json, "status"), "NEW");
    s->maker_id = (int64_t)json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
}

/* Our BUY for public_qty + 0.001 at the ask, with `stp` ("" = default). */
static struct resp take(const struct setup *s, const char *tif, const char *stp)
{
    char params[384];
    snprintf(params, sizeof(params),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=%s&quantity=%s&price=%s"
             "&newOrderRespType=FULL%s%s",
             tif, s->taker_qty, s->ask, stp[0] != '\0' ? "&selfTradePreventionMode=" : "", stp);
    return req("POST", "/api/v3/order", params, true);
}

static json_t *get_order(int64_t id)
{
    char params[128];
    snprintf(params, sizeof(params), "symbol=BTCUSDT&orderId=%" PRId64, id);
    struct resp r = req("GET", "/api/v3/order", params, true);
    json_t *j = json_incref(r.json);
    resp_free(&r);
    return j;
}

/* The executionReport with x = `exec_type` for order `id`. */
static json_t *user_report(struct setup *s, int64_t id, const char *exec_type)
{
    int64_t deadline = wall_ms() + WAIT_MS;
    while (wall_ms() < deadline) {
        json_t *m = tc_try_next(s->user, &s->cursor, 200);
        if (m == NULL) {
            continue;
        }
        const char *e = json_string_value(json_object_get(m, "e"));
        const char *x = json_string_value(json_object_get(m, "x"));
        if (e != NULL && strcmp(e, "executionReport") == 0 && x != NULL &&
            strcmp(x, exec_type) == 0 && json_integer_value(json_object_get(m, "i")) == id) {
            return m;
        }
        json_decref(m);
    }
    cr_assert_fail("no executionReport x=%s for order %" PRId64, exec_type, id);
    return NULL;
}

/* stp_faq.md: "EXPIRE_MAKER - This mode prevents a trade by immediately
 * expiring the potential maker order's remaining quantity."; exchangeInfo:
 * "defaultSelfTradePreventionMode":"EXPIRE_MAKER"; "How do I know if an
 * order expired due to STP? The order will have the status
 * `EXPIRED_IN_MATCH`."; the taker's answer lists "preventedMatches" with
 * "makerPreventedQuantity" ("Only appears if the STP mode is EXPIRE_MAKER,
 * EXPIRE_BOTH, or DECREMENT"); user-data-stream.md: "TRADE_PREVENTION - The
 * order has expired due to STP", with v (Prevented Match Id), A (Prevented
 * Quantity), B (Last Prevented Quantity), U (Counter Order Id), Cs
 * (Counter Symbol), pl/pL/pY (Prevented Execution Quantity / Price / Quote
 * Qty): "Appears only for orders that expired due to STP." */
Test(fidelity_stp, expire_maker_is_the_default_and_expires_our_resting_order, .init = start_sim,
     .fini = stop_sim, .timeout = 60)
{
    struct setup s;
    setup(&s);
    struct resp r = take(&s, "IOC", "");
    cr_assert_str_eq(jstr(r.json, "selfTradePreventionMode"), "EXPIRE_MAKER");
    /* the public quantity ahead of our SELL traded; then the match with our
     * own order was prevented; the IOC remainder expired */
    assert_dec_eq(jstr(r.json, "executedQty"), s.public_qty);
    cr_assert_str_eq(jstr(r.json, "status"), "EXPIRED", "%s", r.body);
    const json_t *pm = json_array_get(json_object_get(r.json, "preventedMatches"), 0);
    cr_assert_not_null(pm, "no preventedMatches: %s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(pm, "preventedMatchId")), 0);
    cr_assert_eq(json_integer_value(json_object_get(pm, "makerOrderId")), s.maker_id);
    assert_dec_eq(jstr(pm, "price"), s.ask);
    assert_dec_eq(jstr(pm, "makerPreventedQuantity"), "0.001");
    cr_assert_null(json_object_get(pm, "takerPreventedQuantity"), "%s", r.body);
    int64_t taker_id = (int64_t)json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);

    json_t *m = get_order(s.maker_id);
    cr_assert_str_eq(jstr(m, "status"), "EXPIRED_IN_MATCH");
    cr_assert_eq(json_integer_value(json_object_get(m, "preventedMatchId")), 0);
    assert_dec_eq(jstr(m, "preventedQuantity"), "0.001");
    json_decref(m);

    json_t *er = user_report(&s, s.maker_id, "TRADE_PREVENTION");
    cr_assert_str_eq(jstr(er, "X"), "EXPIRED_IN_MATCH");
    cr_assert_eq(json_integer_value(json_object_get(er, "v")), 0);
    assert_dec_eq(jstr(er, "A"), "0.001");
    assert_dec_eq(jstr(er, "B"), "0.001");
    cr_assert_eq(json_integer_value(json_object_get(er, "U")), taker_id);
    cr_assert_str_eq(jstr(er, "Cs"), "BTCUSDT");
    assert_dec_eq(jstr(er, "pl"), "0.001");
    assert_dec_eq(jstr(er, "pL"), s.ask);
    json_decref(er);
    tc_free(s.user);
}

/* "EXPIRE_TAKER - This mode prevents a trade by immediately expiring the
 * taker order's remaining quantity."; "API responses for orders which
 * expired due to STP will also have a `preventedQuantity` field". */
Test(fidelity_stp, expire_taker_expires_the_incoming_order, .init = start_sim, .fini = stop_sim,
     .timeout = 60)
{
    struct setup s;
    setup(&s);
    struct resp r = take(&s, "GTC", "EXPIRE_TAKER");
    cr_assert_str_eq(jstr(r.json, "status"), "EXPIRED_IN_MATCH", "%s", r.body);
    assert_dec_eq(jstr(r.json, "executedQty"), s.public_qty);
    assert_dec_eq(jstr(r.json, "preventedQuantity"), "0.001");
    const json_t *pm = json_array_get(json_object_get(r.json, "preventedMatches"), 0);
    cr_assert_not_null(pm, "%s", r.body);
    assert_dec_eq(jstr(pm, "takerPreventedQuantity"), "0.001");
    cr_assert_null(json_object_get(pm, "makerPreventedQuantity"), "%s", r.body);
    int64_t taker_id = (int64_t)json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
    json_t *m = get_order(s.maker_id);
    cr_assert_str_eq(jstr(m, "status"), "NEW"); /* "The orders already on the book will remain" */
    json_decref(m);
    json_t *er = user_report(&s, taker_id, "TRADE_PREVENTION");
    cr_assert_str_eq(jstr(er, "X"), "EXPIRED_IN_MATCH");
    cr_assert_eq(json_integer_value(json_object_get(er, "U")), s.maker_id);
    json_decref(er);
    tc_free(s.user);
}

/* "EXPIRE_BOTH - This mode prevents a trade by immediately expiring both
 * the taker and the potential maker orders' remaining quantities." */
Test(fidelity_stp, expire_both_expires_both, .init = start_sim, .fini = stop_sim, .timeout = 60)
{
    struct setup s;
    setup(&s);
    struct resp r = take(&s, "GTC", "EXPIRE_BOTH");
    cr_assert_str_eq(jstr(r.json, "status"), "EXPIRED_IN_MATCH", "%s", r.body);
    resp_free(&r);
    json_t *m = get_order(s.maker_id);
    cr_assert_str_eq(jstr(m, "status"), "EXPIRED_IN_MATCH");
    json_decref(m);
    tc_free(s.user);
}

/* "NONE - This mode exempts the order from self-trade prevention. ... no
 * orders will be expired, and the trade will occur." */
Test(fidelity_stp, none_trades_with_itself, .init = start_sim, .fini = stop_sim, .timeout = 60)
{
    struct setup s;
    setup(&s);
    struct resp r = take(&s, "GTC", "NONE");
    cr_assert_str_eq(jstr(r.json, "status"), "FILLED", "%s", r.body);
    cr_assert_null(json_object_get(r.json, "preventedMatches"), "%s", r.body);
    resp_free(&r);
    json_t *m = get_order(s.maker_id);
    cr_assert_str_eq(jstr(m, "status"), "FILLED");
    json_decref(m);
    json_t *er = user_report(&s, s.maker_id, "TRADE");
    cr_assert(json_is_true(json_object_get(er, "m")), "the resting side is the maker");
    json_decref(er);
    tc_free(s.user);
}
