/*
 * test_fidelity_rules.c — the exchange rules of Binance's spot documentation
 * (binance-spot-api-docs: filters.md, rest-api.md, faqs/order_count_decrement.md),
 * each quoted, checked against a running coinquant-simex over its real
 * sockets (REST on loopback, libcurl), and exchangeInfo against production's
 * own 2024-09-08 listing for BTCUSDT.
 *
 * Each Criterion test runs in its own process with its own simulator, at
 * the default limits (50 orders per 10 s, 160,000 a day).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

static struct cq_sim *g_sim;
static char g_base[128];

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
    cr_assert_eq(cq_sim_parse_balances("USDT=100000,BTC=2", balances, 2, &n_balances, &err), 0);
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
        /* order limits: 0 = Binance's (50 per 10 s, 160,000 a day) */
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_base, cq_sim_rest_url(g_sim), sizeof(g_base));
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
    long orders_10s, orders_1d; /* -1 = absent */
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

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t len = size * n;
    if (len > 22 && strncasecmp(p, "X-MBX-ORDER-COUNT-10S:", 22) == 0) {
        r->orders_10s = strtol(p + 22, NULL, 10);
    } else if (len > 21 && strncasecmp(p, "X-MBX-ORDER-COUNT-1D:", 21) == 0) {
        r->orders_1d = strtol(p + 21, NULL, 10);
    }
    return len;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* params: the whole query (GET) or form body (POST); signed appends
 * timestamp and signature as ccxt does. */
static struct resp req(const char *method, const char *path, const char *params, bool is_signed)
{
    struct resp r = {0};
    r.orders_10s = r.orders_1d = -1;
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
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (post) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
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
    return r;
}

static void expect_ok(const struct resp *r)
{
    cr_assert_eq(r->status, 200, "HTTP %ld: %s", r->status, r->body);
}

static void expect_error(const struct resp *r, long status, int code, const char *msg)
{
    cr_expect_eq(r->status, status, "HTTP %ld, want %ld: %s", r->status, status, r->body);
    cr_expect_eq(json_integer_value(json_object_get(r->json, "code")), code, "%s", r->body);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "msg")), msg);
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

/* avg * num / den at 2 decimals (BTCUSDT's tick), rounded `mode`, as text. */
static void scaled_price(cq_dec avg, int64_t num, unsigned num_scale, enum cq_dec_round mode,
                         char *out, size_t cap)
{
    cq_dec v;
    cr_assert_eq(cq_dec_mul(avg, cq_dec_make(num, num_scale), 2, mode, &v), 0);
    cr_assert_not_null(cq_dec_format(v, out, cap));
}

static cq_dec avg_price(void)
{
    struct resp r = req("GET", "/api/v3/avgPrice", "symbol=BTCUSDT", false);
    expect_ok(&r);
    cq_dec avg = D(jstr(r.json, "price"));
    resp_free(&r);
    cr_assert(avg.m > 0);
    return avg;
}

static const json_t *filter_of(const json_t *sym, const char *type)
{
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(sym, "filters"), i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "filterType")), type) == 0) {
            return f;
        }
    }
    return NULL;
}

/* Production's 2024-09-08 BTCUSDT (../shared/data/exchangeInfo/): filters
 * in this order with these fields, and "orderTypes": ["LIMIT",
 * "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"];
 * rateLimits ORDERS 50 per 10 SECOND and 160000 per DAY. */
Test(fidelity_rules, exchange_info_lists_filters_and_order_types_as_production, .init = start_sim,
     .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/exchangeInfo", "symbol=BTCUSDT", false);
    expect_ok(&r);
    const json_t *s = json_array_get(json_object_get(r.json, "symbols"), 0);
    cr_assert_not_null(s);
    json_t *want_types = json_pack("[s,s,s,s,s]", "LIMIT", "LIMIT_MAKER", "MARKET",
                                   "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT");
    cr_expect(json_equal(json_object_get(s, "orderTypes"), want_types), "orderTypes: %s", r.body);
    json_decref(want_types);
    static const char *const order[] = {
        "PRICE_FILTER",    "LOT_SIZE",       "ICEBERG_PARTS",
        "MARKET_LOT_SIZE", "TRAILING_DELTA", "PERCENT_PRICE_BY_SIDE",
        "NOTIONAL",        "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"};
    const json_t *filters = json_object_get(s, "filters");
    cr_expect_eq(json_array_size(filters), CQ_ARRAY_LEN(order));
    for (size_t i = 0; i < CQ_ARRAY_LEN(order) && i < json_array_size(filters); i++) {
        cr_expect_str_eq(jstr(json_array_get(filters, i), "filterType"), order[i]);
    }
    json_t *want = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "filterType", "PERCENT_PRICE_BY_SIDE",
                             "bidMultiplierUp", "5", "bidMultiplierDown", "0.2", "askMultiplierUp",
                             "5", "askMultiplierDown", "0.2", "avgPriceMins", 5);
    cr_expect(json_equal(filter_of(s, "PERCENT_PRICE_BY_SIDE"), want), "%s", r.body);
    json_decref(want);
    want = json_pack("{s:s,s:i}", "filterType", "ICEBERG_PARTS", "limit", 10);
    cr_expect(json_equal(filter_of(s, "ICEBERG_PARTS"), want));
    json_decref(want);
    want = json_pack("{s:s,s:i,s:i,s:i,s:i}", "filterType", "TRAILING_DELTA",
                     "minTrailingAboveDelta", 10, "maxTrailingAboveDelta", 2000,
                     "minTrailingBelowDelta", 10, "maxTrailingBelowDelta", 2000);
    cr_expect(json_equal(filter_of(s, "TRAILING_DELTA"), want));
    json_decref(want);
    want = json_pack("{s:s,s:i}", "filterType", "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders", 5);
    cr_expect(json_equal(filter_of(s, "MAX_NUM_ALGO_ORDERS"), want));
    json_decref(want);
    const json_t *limits = json_object_get(r.json, "rateLimits");
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(limits, 1), "limit")), 50);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(limits, 2), "limit")), 160000);
    resp_free(&r);
}

/* rest-api.md "Current average price": GET /api/v3/avgPrice, weight 2,
 * response {"mins": 5, "price": "9.35751834", "closeTime": 1694061154503}
 * ("closeTime": "Last trade time"). */
Test(fidelity_rules, avg_price_endpoint, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/avgPrice", "symbol=BTCUSDT", false);
    expect_ok(&r);
    cr_expect_eq(json_object_size(r.json), 3, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "mins")), 5);
    const char *price = jstr(r.json, "price");
    const char *dot = strchr(price, '.');
    cr_expect(dot != NULL && strlen(dot + 1) == 8, "8 decimals: %s", price);
    cr_expect(D(price).m > 0);
    json_int_t close = json_integer_value(json_object_get(r.json, "closeTime"));
    cr_expect(close > 0 && close <= wall_ms() + 60000, "closeTime %lld", (long long)close);
    resp_free(&r);
    r = req("GET", "/api/v3/avgPrice", "symbol=NOPEUSDT", false);
    expect_error(&r, 400, -1121, "Invalid symbol.");
    resp_free(&r);
}

/* filters.md PERCENT_PRICE_BY_SIDE: "Buy orders will succeed on this filter
 * if: Order price <= weightedAveragePrice * bidMultiplierUp; Order price >=
 * weightedAveragePrice * bidMultiplierDown. Sell orders will succeed on
 * this filter if: Order price <= weightedAveragePrice * askMultiplierUp;
 * Order price >= weightedAveragePrice * askMultiplierDown". A BUY at 0.1x
 * the average is rejected live. */
Test(fidelity_rules, percent_price_by_side_rejects_far_prices, .init = start_sim, .fini = stop_sim)
{
    char q[512], p[64];
    cq_dec avg = avg_price();
    /* 0.1x and 0.19x: under bidMultiplierDown 0.2 even if the average moves
     * a few percent meanwhile */
    const int64_t below[] = {1, 19};
    for (size_t i = 0; i < CQ_ARRAY_LEN(below); i++) {
        scaled_price(avg, below[i], i == 0 ? 1 : 2, CQ_ROUND_FLOOR, p, sizeof(p));
        snprintf(q, sizeof(q),
                 "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=%s", p);
        struct resp r = req("POST", "/api/v3/order", q, true);
        expect_error(&r, 400, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE");
        resp_free(&r);
        r = req("POST", "/api/v3/order/test", q, true);
        expect_error(&r, 400, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE");
        resp_free(&r);
    }
    /* 0.25x: inside; rests */
    scaled_price(avg, 25, 2, CQ_ROUND_CEIL, p, sizeof(p));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=%s", p);
    struct resp r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "NEW");
    resp_free(&r);
    /* SELL at 6x: over askMultiplierUp 5; at 4x: inside, rests */
    scaled_price(avg, 6, 0, CQ_ROUND_CEIL, p, sizeof(p));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=%s", p);
    r = req("POST", "/api/v3/order", q, true);
    expect_error(&r, 400, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE");
    resp_free(&r);
    scaled_price(avg, 4, 0, CQ_ROUND_FLOOR, p, sizeof(p));
    snprintf(q, sizeof(q), "symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=0.01&price=%s", p);
    r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    resp_free(&r);
}

/* faqs/order_count_decrement.md: "Every successful request to place an
 * order adds to the unfilled order count for the current time interval."
 * and "When an order is filled for the first time (partially or fully),
 * your unfilled order count will be decremented by one order for all
 * intervals of the ORDERS rate limit." A rejected request adds nothing.
 * rest-api.md: GET /api/v3/rateLimit/order "Displays the user's unfilled
 * order count for all intervals." The day count is checked exactly (the
 * 10 s window may roll between two requests). */
Test(fidelity_rules, unfilled_order_count_as_binance_counts_it, .init = start_sim, .fini = stop_sim)
{
    char q[512], p[64];
    cq_dec avg = avg_price();
    scaled_price(avg, 5, 1, CQ_ROUND_CEIL, p, sizeof(p)); /* 0.5x: rests */
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s", p);
    struct resp r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_eq(r.orders_1d, 1);
    cr_expect(r.orders_10s == 1, "10s %ld", r.orders_10s);
    resp_free(&r);
    /* rejected by a filter: not counted */
    r = req("POST", "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.0000001&price=1000",
            true);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(r.orders_1d == 1 || r.orders_1d == -1, "1d %ld", r.orders_1d);
    resp_free(&r);
    /* rejected for balance: not counted */
    r = req("POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=100", true);
    cr_expect_eq(r.status, 400, "%s", r.body);
    resp_free(&r);
    /* a MARKET order fills at once: counted, then given back */
    r = req("POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001", true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "FILLED");
    cr_expect_eq(r.orders_1d, 1);
    resp_free(&r);
    r = req("GET", "/api/v3/rateLimit/order", NULL, true);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 2, "%s", r.body);
    const json_t *sec = json_array_get(r.json, 0);
    const json_t *day = json_array_get(r.json, 1);
    cr_expect_str_eq(jstr(sec, "rateLimitType"), "ORDERS");
    cr_expect_str_eq(jstr(sec, "interval"), "SECOND");
    cr_expect_eq(json_integer_value(json_object_get(sec, "intervalNum")), 10);
    cr_expect_eq(json_integer_value(json_object_get(sec, "limit")), 50);
    cr_expect(json_integer_value(json_object_get(sec, "count")) <= 1);
    cr_expect_str_eq(jstr(day, "interval"), "DAY");
    cr_expect_eq(json_integer_value(json_object_get(day, "intervalNum")), 1);
    cr_expect_eq(json_integer_value(json_object_get(day, "limit")), 160000);
    cr_expect_eq(json_integer_value(json_object_get(day, "count")), 1, "%s", r.body);
    resp_free(&r);
    /* unsigned: the signed-endpoint error */
    r = req("GET", "/api/v3/rateLimit/order", NULL, false);
    cr_expect_eq(r.status, 400, "%s", r.body);
    resp_free(&r);
}

/* rest-api.md "Query Commission Rates": GET /api/v3/account/commission
 * "Get current account commission rates." — standardCommission,
 * specialCommission, taxCommission {maker, taker, buyer, seller} and
 * discount {enabledForAccount, enabledForSymbol, discountAsset, discount}. */
Test(fidelity_rules, account_commission_shape, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/account/commission", "symbol=BTCUSDT", true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "symbol"), "BTCUSDT");
    const json_t *std = json_object_get(r.json, "standardCommission");
    cr_expect_str_eq(jstr(std, "maker"), "0.00100000");
    cr_expect_str_eq(jstr(std, "taker"), "0.00100000");
    cr_expect_str_eq(jstr(std, "buyer"), "0.00000000");
    cr_expect_str_eq(jstr(std, "seller"), "0.00000000");
    cr_expect_not_null(json_object_get(r.json, "specialCommission"));
    cr_expect_not_null(json_object_get(r.json, "taxCommission"));
    const json_t *disc = json_object_get(r.json, "discount");
    cr_expect(json_is_boolean(json_object_get(disc, "enabledForAccount")));
    cr_expect_str_eq(jstr(disc, "discountAsset"), "BNB");
    resp_free(&r);
    r = req("GET", "/api/v3/account/commission", NULL, true);
    expect_error(&r, 400, -1102,
                 "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.");
    resp_free(&r);
}

/* rest-api.md "Recent trades list": GET /api/v3/trades, weight 25, limit
 * "Default 500; max 1000.", response [{"id", "price", "qty", "quoteQty",
 * "time", "isBuyerMaker", "isBestMatch"}], oldest first, the most recent
 * trades. */
Test(fidelity_rules, recent_trades_list, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/trades", "symbol=BTCUSDT", false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 500, "%zu trades", json_array_size(r.json));
    json_int_t prev = 0;
    size_t i;
    json_t *t;
    json_array_foreach(r.json, i, t)
    {
        json_int_t id = json_integer_value(json_object_get(t, "id"));
        cr_assert(id > prev, "ids increase: %lld after %lld", (long long)id, (long long)prev);
        prev = id;
        cr_expect_eq(json_object_size(t), 7);
        cq_dec want;
        cr_assert_eq(
            cq_dec_mul(D(jstr(t, "price")), D(jstr(t, "qty")), 8, CQ_ROUND_HALF_EVEN, &want), 0);
        cr_expect_eq(cq_dec_cmp(D(jstr(t, "quoteQty")), want), 0);
        cr_expect(json_is_boolean(json_object_get(t, "isBuyerMaker")));
        cr_expect(json_is_true(json_object_get(t, "isBestMatch")));
        cr_expect(json_integer_value(json_object_get(t, "time")) > 0);
    }
    resp_free(&r);
    r = req("GET", "/api/v3/trades", "symbol=BTCUSDT&limit=5000", false);
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 1000);
    resp_free(&r);
}

/* rest-api.md "Compressed/Aggregate trades list": GET /api/v3/aggTrades,
 * weight 4; "fromId: ID to get aggregate trades from INCLUSIVE."; "If both
 * startTime and endTime are sent, time between startTime and endTime must
 * be less than 1 hour."; fields a, p, q, f, l, T, m, M. */
Test(fidelity_rules, aggregate_trades_list, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/aggTrades", "symbol=BTCUSDT&limit=10", false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 10);
    const json_t *a0 = json_array_get(r.json, 0);
    cr_expect_eq(json_object_size(a0), 8);
    json_int_t id0 = json_integer_value(json_object_get(a0, "a"));
    cr_expect_eq(json_integer_value(json_object_get(a0, "f")), id0);
    cr_expect(json_integer_value(json_object_get(a0, "l")) >= id0);
    cr_expect(json_is_boolean(json_object_get(a0, "m")));
    json_int_t t0 = json_integer_value(json_object_get(a0, "T"));
    resp_free(&r);
    char q[256];
    snprintf(q, sizeof(q), "symbol=BTCUSDT&fromId=%lld&limit=3", (long long)id0);
    r = req("GET", "/api/v3/aggTrades", q, false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 3);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(r.json, 0), "a")), id0,
                 "fromId is inclusive");
    resp_free(&r);
    snprintf(q, sizeof(q), "symbol=BTCUSDT&startTime=%lld&endTime=%lld", (long long)t0,
             (long long)(t0 + 3600000));
    r = req("GET", "/api/v3/aggTrades", q, false);
    expect_error(&r, 400, -1127, "More than 1 hours between startTime and endTime.");
    resp_free(&r);
    snprintf(q, sizeof(q), "symbol=BTCUSDT&startTime=%lld&endTime=%lld&limit=1000", (long long)t0,
             (long long)(t0 + 3599999));
    r = req("GET", "/api/v3/aggTrades", q, false);
    expect_ok(&r);
    size_t i;
    json_t *a;
    json_array_foreach(r.json, i, a)
    {
        json_int_t t = json_integer_value(json_object_get(a, "T"));
        cr_expect(t >= t0 && t <= t0 + 3599999, "T %lld outside the window", (long long)t);
    }
    resp_free(&r);
}

/* Production BTCUSDT: "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
 * "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER",
 * "EXPIRE_MAKER", "EXPIRE_BOTH"]; rest-api.md POST /api/v3/order
 * selfTradePreventionMode: "The allowed enums is dependent on what is
 * configured on the symbol." An order without the parameter reports the
 * default, one with it reports its own, in every answer. */
Test(fidelity_rules, self_trade_prevention_modes_as_production, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/exchangeInfo", "symbol=BTCUSDT", false);
    expect_ok(&r);
    const json_t *s = json_array_get(json_object_get(r.json, "symbols"), 0);
    cr_expect_str_eq(jstr(s, "defaultSelfTradePreventionMode"), "EXPIRE_MAKER");
    json_t *want = json_pack("[s,s,s,s]", "NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH");
    cr_expect(json_equal(json_object_get(s, "allowedSelfTradePreventionModes"), want));
    json_decref(want);
    resp_free(&r);

    char q[512], p[64];
    scaled_price(avg_price(), 5, 1, CQ_ROUND_CEIL, p, sizeof(p)); /* 0.5x: rests */
    static const char *const modes[] = {NULL, "NONE", "EXPIRE_TAKER", "EXPIRE_BOTH"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(modes); i++) {
        snprintf(q, sizeof(q),
                 "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s%s%s",
                 p, modes[i] != NULL ? "&selfTradePreventionMode=" : "",
                 modes[i] != NULL ? modes[i] : "");
        const char *expect = modes[i] != NULL ? modes[i] : "EXPIRE_MAKER";
        r = req("POST", "/api/v3/order", q, true);
        expect_ok(&r);
        cr_expect_str_eq(jstr(r.json, "selfTradePreventionMode"), expect);
        json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
        resp_free(&r);
        snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
        r = req("GET", "/api/v3/order", q, true);
        expect_ok(&r);
        cr_expect_str_eq(jstr(r.json, "selfTradePreventionMode"), expect);
        resp_free(&r);
    }
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s"
             "&selfTradePreventionMode=DECREMENT",
             p);
    r = req("POST", "/api/v3/order", q, true);
    cr_expect_eq(r.status, 400, "DECREMENT is not allowed on BTCUSDT: %s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "code")), -2010);
    resp_free(&r);
}

/* rest-api.md, New order: "`MARKET` orders using `quoteOrderQty` will not
 * break `LOT_SIZE` filter rules; the order will execute a `quantity` that
 * will have the notional value as close as possible to `quoteOrderQty`."
 * A SELL for 1.008 steps' worth at the best bid sells 0.00101 (the closest
 * step), not 0.00100 (rounded down, 0.8 of a step short). Checked as a
 * bound, so a market that moves between the two requests cannot fail it:
 * the notional is within half a step (at the fills' highest price) of the
 * amount. */
Test(fidelity_rules, sell_quote_order_qty_to_the_closest_step, .init = start_sim, .fini = stop_sim)
{
    struct resp r = req("GET", "/api/v3/ticker/bookTicker", "symbol=BTCUSDT", false);
    expect_ok(&r);
    cq_dec bid = D(jstr(r.json, "bidPrice"));
    resp_free(&r);
    cr_assert(bid.m > 0);
    char amount[64], q[512];
    scaled_price(bid, 1008, 6, CQ_ROUND_HALF_EVEN, amount, sizeof(amount));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=%s&newOrderRespType=FULL", amount);
    r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "FILLED", "%s", r.body);
    cq_dec exec = D(jstr(r.json, "executedQty"));
    cq_dec cum = D(jstr(r.json, "cummulativeQuoteQty"));
    cq_dec step = D("0.00001"), rem;
    cr_assert_eq(cq_dec_quantize(exec, step, CQ_ROUND_EXACT, &rem), 0, "not a step: %s", r.body);
    cq_dec top = CQ_DEC_ZERO;
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(r.json, "fills"), i, f)
    {
        top = cq_dec_max(top, D(jstr(f, "price")));
    }
    cq_dec half, diff;
    cr_assert_eq(cq_dec_mul(top, cq_dec_make(5, 6), 8, CQ_ROUND_UP, &half), 0); /* step / 2 */
    cr_assert_eq(cq_dec_sub(cum, D(amount), &diff), 0);
    if (diff.m < 0) {
        diff.m = -diff.m;
    }
    cr_expect(cq_dec_cmp(diff, half) <= 0,
              "notional %s is more than half a step from quoteOrderQty %s: %s",
              jstr(r.json, "cummulativeQuoteQty"), amount, r.body);
    resp_free(&r);
}

/* CHANGELOG 2026-01-21: "If `newOrderRespType=RESULT` or
 * `newOrderRespType=FULL` mode, the expiry reason, if any, is displayed in
 * field `expiryReason`."; 2026-07-17: "Order query responses may include an
 * `expiryReason` field. This field is returned **only for expired
 * orders**". user-data-stream.md: "`UNFILLED_IOC_QUANTITY_EXPIRED` | The
 * IOC order was not fully filled and thus expired.",
 * "`UNFILLED_FOK_ORDER_EXPIRED` | The FOK order was not fully filled and
 * thus expired." */
Test(fidelity_rules, expired_orders_say_why, .init = start_sim, .fini = stop_sim)
{
    char q[512], p[64];
    cq_dec avg = avg_price();
    struct {
        const char *side, *tif, *why;
        int64_t num;
        unsigned scale;
    } rows[] = {
        {"BUY", "IOC", "UNFILLED_IOC_QUANTITY_EXPIRED", 25, 2}, /* 0.25x: nothing to take */
        {"SELL", "FOK", "UNFILLED_FOK_ORDER_EXPIRED", 4, 0},    /* 4x */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        scaled_price(avg, rows[i].num, rows[i].scale, i == 0 ? CQ_ROUND_CEIL : CQ_ROUND_FLOOR, p,
                     sizeof(p));
        snprintf(q, sizeof(q),
                 "symbol=BTCUSDT&side=%s&type=LIMIT&timeInForce=%s&quantity=0.01&price=%s"
                 "&newOrderRespType=RESULT",
                 rows[i].side, rows[i].tif, p);
        struct resp r = req("POST", "/api/v3/order", q, true);
        expect_ok(&r);
        cr_expect_str_eq(jstr(r.json, "status"), "EXPIRED", "%s", r.body);
        cr_expect_str_eq(jstr(r.json, "expiryReason"), rows[i].why, "%s", r.body);
        json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
        resp_free(&r);
        snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
        r = req("GET", "/api/v3/order", q, true);
        expect_ok(&r);
        cr_expect_str_eq(jstr(r.json, "expiryReason"), rows[i].why, "%s", r.body);
        resp_free(&r);
    }
    /* not expired: no field, in the answer nor the query */
    scaled_price(avg, 25, 2, CQ_ROUND_CEIL, p, sizeof(p));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=%s"
             "&newOrderRespType=RESULT",
             p);
    struct resp r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_null(json_object_get(r.json, "expiryReason"), "%s", r.body);
    json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
    r = req("GET", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_null(json_object_get(r.json, "expiryReason"), "%s", r.body);
    resp_free(&r);
}

static cq_dec last_price(void)
{
    struct resp r = req("GET", "/api/v3/ticker/price", "symbol=BTCUSDT", false);
    expect_ok(&r);
    cq_dec p = D(jstr(r.json, "price"));
    resp_free(&r);
    cr_assert(p.m > 0);
    return p;
}

static json_t *get_order(json_int_t id)
{
    char q[128];
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
    struct resp r = req("GET", "/api/v3/order", q, true);
    expect_ok(&r);
    json_t *j = json_incref(r.json);
    resp_free(&r);
    return j;
}

/* rest-api.md, New order: "`STOP_LOSS_LIMIT` | `timeInForce`, `quantity`,
 * `price`, `stopPrice`"; "stopPrice | DECIMAL | NO | Used with `STOP_LOSS`,
 * `STOP_LOSS_LIMIT`, `TAKE_PROFIT`, and `TAKE_PROFIT_LIMIT` orders.";
 * "Trigger order price rules against market price for both MARKET and LIMIT
 * versions: Price above market price: `STOP_LOSS` `BUY`, `TAKE_PROFIT`
 * `SELL`; Price below market price: `STOP_LOSS` `SELL`, `TAKE_PROFIT`
 * `BUY`". errors.md: "Order would trigger immediately." | "The order's stop
 * price is not valid when compared to the last traded price."; "Stop loss
 * orders are not supported for this symbol." | "`STOP_LOSS` is not enabled
 * on the symbol." (BTCUSDT lists STOP_LOSS_LIMIT, not STOP_LOSS). The STOP_LOSS
 * example answer: "workingTime": -1 until it triggers. */
Test(fidelity_rules, stop_loss_limit_and_take_profit_limit, .init = start_sim, .fini = stop_sim)
{
    char q[512], stop[64], far[64];
    cq_dec last = last_price();
    /* a SELL stop above the market / a BUY take-profit above it: would
     * trigger at once (1.5x: a move the model cannot make in between) */
    scaled_price(last, 15, 1, CQ_ROUND_CEIL, far, sizeof(far));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.001"
             "&price=%s&stopPrice=%s",
             far, far);
    struct resp r = req("POST", "/api/v3/order", q, true);
    expect_error(&r, 400, -2010, "Order would trigger immediately.");
    resp_free(&r);
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=TAKE_PROFIT_LIMIT&timeInForce=GTC&quantity=0.001"
             "&price=%s&stopPrice=%s",
             far, far);
    r = req("POST", "/api/v3/order", q, true);
    expect_error(&r, 400, -2010, "Order would trigger immediately.");
    resp_free(&r);
    /* STOP_LOSS (market) is not offered; stopPrice only on stop orders */
    r = req("POST", "/api/v3/order",
            "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=0.001&stopPrice=1000", true);
    expect_error(&r, 400, -2010, "Stop loss orders are not supported for this symbol.");
    resp_free(&r);
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s"
             "&stopPrice=%s",
             far, far);
    r = req("POST", "/api/v3/order", q, true);
    expect_error(&r, 400, -1106, "Parameter 'stopPrice' sent when not required.");
    resp_free(&r);

    /* a SELL stop at 0.5x: NEW, not working, its 0.001 BTC locked, counted */
    scaled_price(last, 5, 1, CQ_ROUND_FLOOR, stop, sizeof(stop));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.001"
             "&price=%s&stopPrice=%s&newOrderRespType=RESULT",
             stop, stop);
    r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "NEW");
    cr_expect_str_eq(jstr(r.json, "type"), "STOP_LOSS_LIMIT");
    cr_expect(cq_dec_cmp(D(jstr(r.json, "stopPrice")), D(stop)) == 0, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "workingTime")), -1, "%s", r.body);
    cr_expect_eq(r.orders_1d, 1);
    json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
    json_t *o = get_order(id);
    cr_expect(json_is_false(json_object_get(o, "isWorking")));
    json_decref(o);
    r = req("GET", "/api/v3/account", "", true);
    expect_ok(&r);
    size_t i;
    const json_t *b;
    json_array_foreach(json_object_get(r.json, "balances"), i, b)
    {
        if (strcmp(jstr(b, "asset"), "BTC") == 0) {
            cr_expect(cq_dec_cmp(D(jstr(b, "locked")), D("0.001")) == 0, "%s", r.body);
        }
    }
    resp_free(&r);
    /* cancellable before it triggers */
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
    r = req("DELETE", "/api/v3/order", q, true);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "CANCELED");
    resp_free(&r);

    /* triggered by the market: a BUY stop one tick above the last trade and
     * a SELL stop one tick below; the next trade at another price triggers
     * one of them, which then works on the book (isWorking, workingTime) */
    json_int_t ids[2] = {0, 0};
    for (int attempt = 0; attempt < 20 && (ids[0] == 0 || ids[1] == 0); attempt++) {
        last = last_price();
        for (int k = 0; k < 2; k++) {
            if (ids[k] != 0) {
                continue;
            }
            cq_dec s;
            cr_assert_eq(cq_dec_add(last, cq_dec_make(k == 0 ? 1 : -1, 2), &s), 0);
            cr_assert_not_null(cq_dec_format(s, stop, sizeof(stop)));
            snprintf(q, sizeof(q),
                     "symbol=BTCUSDT&side=%s&type=STOP_LOSS_LIMIT&timeInForce=GTC"
                     "&quantity=0.001&price=%s&stopPrice=%s",
                     k == 0 ? "BUY" : "SELL", stop, stop);
            r = req("POST", "/api/v3/order", q, true);
            if (r.status == 200) {
                ids[k] = json_integer_value(json_object_get(r.json, "orderId"));
            } else { /* the market moved past it meanwhile */
                expect_error(&r, 400, -2010, "Order would trigger immediately.");
            }
            resp_free(&r);
        }
    }
    cr_assert(ids[0] != 0 && ids[1] != 0, "could not place both stops");
    bool working = false;
    for (int t = 0; t < 600 && !working; t++) { /* up to 60 s of market */
        for (int k = 0; k < 2 && !working; k++) {
            o = get_order(ids[k]);
            if (json_is_true(json_object_get(o, "isWorking"))) {
                working = true;
                cr_expect_gt(json_integer_value(json_object_get(o, "workingTime")), 0);
            }
            json_decref(o);
        }
        if (!working) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    cr_expect(working, "no stop triggered in 60 s of market");
}

/* The next executionReport on the stream (other events skipped); NULL if
 * none within 10 s. */
static json_t *next_report(struct tclient *tc, size_t *cursor)
{
    for (;;) {
        json_t *m = tc_try_next(tc, cursor, 10000);
        if (m == NULL) {
            return NULL;
        }
        const char *e = json_string_value(json_object_get(m, "e"));
        if (e != NULL && strcmp(e, "executionReport") == 0) {
            return m;
        }
        json_decref(m);
    }
}

/* user-data-stream.md, executionReport: "P": Stop price; conditional
 * fields: "`W` | Working Time | Appears when the order is working on the
 * book", "`eR` | Expiry Reason | Appears when the order has expired." Over
 * the simulator's (legacy listen-key) user data stream socket. */
Test(fidelity_rules, execution_report_stop_price_and_expiry_reason, .init = start_sim,
     .fini = stop_sim)
{
    struct resp r = req("POST", "/api/v3/userDataStream", "", false);
    expect_ok(&r);
    char path[128];
    snprintf(path, sizeof(path), "/ws/%s", jstr(r.json, "listenKey"));
    resp_free(&r);
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon);
    struct tclient *tc = tc_open((int)strtol(colon + 1, NULL, 10), path);
    cr_assert(tc_wait_established(tc, 5000));
    size_t cursor = 0;

    char q[512], p[64];
    cq_dec avg = avg_price();
    scaled_price(avg, 25, 2, CQ_ROUND_CEIL, p, sizeof(p));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.01&price=%s", p);
    r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    resp_free(&r);
    json_t *m = next_report(tc, &cursor);
    cr_assert_not_null(m, "no executionReport");
    cr_expect_str_eq(jstr(m, "x"), "NEW");
    cr_expect_null(json_object_get(m, "eR"));
    json_decref(m);
    m = next_report(tc, &cursor);
    cr_assert_not_null(m, "no EXPIRED executionReport");
    cr_expect_str_eq(jstr(m, "x"), "EXPIRED");
    cr_expect_str_eq(jstr(m, "eR"), "UNFILLED_IOC_QUANTITY_EXPIRED");
    json_decref(m);

    cq_dec last = last_price();
    scaled_price(last, 5, 1, CQ_ROUND_FLOOR, p, sizeof(p));
    snprintf(q, sizeof(q),
             "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.001"
             "&price=%s&stopPrice=%s",
             p, p);
    r = req("POST", "/api/v3/order", q, true);
    expect_ok(&r);
    resp_free(&r);
    m = next_report(tc, &cursor);
    cr_assert_not_null(m, "no executionReport for the stop order");
    cr_expect_str_eq(jstr(m, "o"), "STOP_LOSS_LIMIT");
    cr_expect_str_eq(jstr(m, "x"), "NEW");
    cr_expect(cq_dec_cmp(D(jstr(m, "P")), D(p)) == 0, "P %s, want %s", jstr(m, "P"), p);
    cr_expect(json_is_false(json_object_get(m, "w")));
    cr_expect_null(json_object_get(m, "W"), "W on a stop not yet working");
    cr_expect_null(json_object_get(m, "eR"));
    json_decref(m);
    tc_free(tc);
}
