/*
 * test_filters.c — the one filter module (server/exchange/filters.c,
 * include/cq/filters.h): both recorded exchangeInfo files parse symbol by
 * symbol; hostile filter objects are refused naming symbol, filter and
 * field; every rule at its edge; the sizing helpers; and "same answer": on
 * random orders over real symbols, cq_filters refuses exactly when the
 * simulator's engine rejects with -1013 on that filter.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cq/filters.h"
#include "sim-engine.h"
#include "support/shared_data.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

#define INFO_2024 CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2024-09-08.json"
#define INFO_2021 CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2021-10-12.json"

/* ---- helpers ----------------------------------------------------------------- */

static cq_dec D(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    int rc = cq_dec_parse(s, (size_t)-1, &d);
    cr_assert_eq(rc, 0, "cannot parse '%s'", s);
    return d;
}

static const char *S(cq_dec d)
{
    static char bufs[32][CQ_DEC_STR_MAX];
    static unsigned k;
    char *b = bufs[k++ % 32];
    return cq_dec_format(d, b, CQ_DEC_STR_MAX);
}

static bool str_eq_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

#define NZ(s) ((s) != NULL ? (s) : "(pass)")

/* got and want are filter names or NULL (passes); the rest is printf
 * context for the failure message. */
#define expect_verdict(got, want, ...)                                                             \
    do {                                                                                           \
        const char *got_ = (got);                                                                  \
        const char *want_ = (want);                                                                \
        char ctx_[256];                                                                            \
        snprintf(ctx_, sizeof(ctx_), "at " __VA_ARGS__);                                           \
        cr_expect(str_eq_null(got_, want_), "got %s, want %s %s", NZ(got_), NZ(want_), ctx_);      \
    } while (0)

static json_t *load_info(const char *path)
{
    json_error_t jerr;
    json_t *info = json_load_file(path, 0, &jerr);
    if (info == NULL) {
        FILE *fp = fopen(path, "r");
        if (fp == NULL) {
            cq_test_shared_missing(path);
        }
        fclose(fp);
        cr_assert_fail("%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    return info;
}

static const json_t *find_symbol(const json_t *info, const char *name)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(info, "symbols"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "symbol")), name) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Filters of a symbol object written inline. */
static int parse_text(const char *text, struct cq_filters *f, struct cq_err *err)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    int rc;
    cr_assert_not_null(o, "test JSON: %s: %s", jerr.text, text);
    rc = cq_filters_from_json(o, f, err);
    json_decref(o);
    return rc;
}

/* The 2024-09-08 BTCUSDT filters, as production lists them. */
#define BTC_PRICE                                                                                  \
    "{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"0.01000000\",\"maxPrice\":"                   \
    "\"1000000.00000000\",\"tickSize\":\"0.01000000\"}"
#define BTC_LOT                                                                                    \
    "{\"filterType\":\"LOT_SIZE\",\"minQty\":\"0.00001000\",\"maxQty\":\"9000.00000000\","         \
    "\"stepSize\":\"0.00001000\"}"
#define BTC_MARKET_LOT                                                                             \
    "{\"filterType\":\"MARKET_LOT_SIZE\",\"minQty\":\"0.00000000\",\"maxQty\":"                    \
    "\"129.84957276\",\"stepSize\":\"0.00000000\"}"
#define BTC_NOTIONAL                                                                               \
    "{\"filterType\":\"NOTIONAL\",\"minNotional\":\"5.00000000\",\"applyMinToMarket\":true,"       \
    "\"maxNotional\":\"9000000.00000000\",\"applyMaxToMarket\":false,\"avgPriceMins\":5}"
#define BTC_PPBS                                                                                   \
    "{\"filterType\":\"PERCENT_PRICE_BY_SIDE\",\"bidMultiplierUp\":\"5\",\"bidMultiplierDown\":"   \
    "\"0.2\",\"askMultiplierUp\":\"5\",\"askMultiplierDown\":\"0.2\",\"avgPriceMins\":5}"
#define BTC_REST                                                                                   \
    "{\"filterType\":\"ICEBERG_PARTS\",\"limit\":10},{\"filterType\":\"TRAILING_DELTA\","          \
    "\"minTrailingAboveDelta\":10},{\"filterType\":\"MAX_NUM_ORDERS\",\"maxNumOrders\":200},"      \
    "{\"filterType\":\"MAX_NUM_ALGO_ORDERS\",\"maxNumAlgoOrders\":5}"
#define BTC_SYMBOL(filters) "{\"symbol\":\"BTCUSDT\",\"filters\":[" filters "]}"
#define BTC_ALL                                                                                    \
    BTC_SYMBOL(BTC_PRICE "," BTC_LOT "," BTC_MARKET_LOT "," BTC_NOTIONAL "," BTC_PPBS "," BTC_REST)

static struct cq_filters btc(void)
{
    struct cq_filters f;
    struct cq_err err = {0};
    cr_assert_eq(parse_text(BTC_ALL, &f, &err), 0, "%s", err.message);
    return f;
}

/* ---- both recorded files -------------------------------------------------------- */

/* Every symbol of the file parses; returns how many, and counts the legacy
 * filters seen. */
static size_t parse_all(const char *path, size_t *legacy_min_notional, size_t *legacy_percent)
{
    json_t *info = load_info(path);
    const json_t *syms = json_object_get(info, "symbols");
    size_t i, n = 0;
    const json_t *s;
    *legacy_min_notional = 0;
    *legacy_percent = 0;
    cr_assert(json_is_array(syms) && json_array_size(syms) > 1000, "%s: no symbols array", path);
    json_array_foreach(syms, i, s)
    {
        struct cq_filters f;
        struct cq_err err = {0};
        const char *name = json_string_value(json_object_get(s, "symbol"));
        int rc = cq_filters_from_json(s, &f, &err);
        cr_expect_eq(rc, 0, "%s: symbol %s does not parse: %s", path, name, err.message);
        if (rc < 0) {
            continue;
        }
        n++;
        *legacy_min_notional += f.min_notional_legacy;
        *legacy_percent += f.percent_price_legacy;
        /* what every real symbol has */
        cr_expect(f.tick_size.m > 0 && f.step_size.m > 0 && f.min_qty.m > 0, "%s: %s", path, name);
        cr_expect(f.tick_size.scale == CQ_FILTERS_AMOUNT_SCALE, "%s: %s", path, name);
        cr_expect(f.min_notional.m > 0 && f.max_num_orders > 0 && f.avg_price_mins > 0, "%s: %s",
                  path, name);
        cr_expect(f.bid_up.m > 0 && f.bid_down.m > 0 && f.ask_up.m > 0 && f.ask_down.m > 0,
                  "%s: %s", path, name);
    }
    json_decref(info);
    return n;
}

Test(filters_files, every_2024_symbol_parses)
{
    size_t lmn, lpp;
    size_t n = parse_all(INFO_2024, &lmn, &lpp);
    cr_expect_eq(n, 1248, "parsed %zu of 1248", n);
    cr_expect_eq(lmn, 0, "2024 lists NOTIONAL, not MIN_NOTIONAL");
    cr_expect_eq(lpp, 0, "2024 lists PERCENT_PRICE_BY_SIDE, not PERCENT_PRICE");
}

Test(filters_files, every_2021_symbol_parses_with_the_older_filters)
{
    size_t lmn, lpp;
    size_t n = parse_all(INFO_2021, &lmn, &lpp);
    cr_expect_eq(n, 1695, "parsed %zu of 1695", n);
    cr_expect_eq(lmn, 1695, "2021 lists MIN_NOTIONAL everywhere");
    cr_expect_eq(lpp, 1695, "2021 lists PERCENT_PRICE everywhere");
}

Test(filters_files, btcusdt_2024_values)
{
    json_t *info = load_info(INFO_2024);
    const json_t *s = find_symbol(info, "BTCUSDT");
    struct cq_filters f;
    struct cq_err err = {0};
    cr_assert_not_null(s);
    cr_assert_eq(cq_filters_from_json(s, &f, &err), 0, "%s", err.message);
    cr_expect(cq_dec_cmp(f.tick_size, D("0.01")) == 0, "%s", S(f.tick_size));
    cr_expect(cq_dec_cmp(f.min_price, D("0.01")) == 0);
    cr_expect(cq_dec_cmp(f.max_price, D("1000000")) == 0);
    cr_expect(cq_dec_cmp(f.step_size, D("0.00001")) == 0);
    cr_expect(cq_dec_cmp(f.min_qty, D("0.00001")) == 0);
    cr_expect(cq_dec_cmp(f.max_qty, D("9000")) == 0);
    cr_expect(f.market_min_qty.m == 0 && f.market_step.m == 0);
    cr_expect(f.market_max_qty.m > 0);
    cr_expect(cq_dec_cmp(f.min_notional, D("5")) == 0);
    cr_expect(cq_dec_cmp(f.max_notional, D("9000000")) == 0);
    cr_expect(f.apply_min_to_market && !f.apply_max_to_market);
    cr_expect(cq_dec_cmp(f.bid_up, D("5")) == 0 && cq_dec_cmp(f.bid_down, D("0.2")) == 0);
    cr_expect(cq_dec_cmp(f.ask_up, D("5")) == 0 && cq_dec_cmp(f.ask_down, D("0.2")) == 0);
    cr_expect_eq(f.avg_price_mins, 5);
    cr_expect_eq(f.max_num_orders, 200);
    cr_expect_eq(f.max_num_algo_orders, 5);
    cr_expect_eq(f.iceberg_parts, 10);
    cr_expect(!f.min_notional_legacy && !f.percent_price_legacy);
    json_decref(info);
}

Test(filters_files, btcusdt_2021_min_notional_and_percent_price)
{
    json_t *info = load_info(INFO_2021);
    const json_t *s = find_symbol(info, "BTCUSDT");
    struct cq_filters f;
    struct cq_err err = {0};
    cr_assert_not_null(s);
    cr_assert_eq(cq_filters_from_json(s, &f, &err), 0, "%s", err.message);
    cr_expect(f.min_notional_legacy && f.percent_price_legacy);
    cr_expect(cq_dec_cmp(f.min_notional, D("10")) == 0, "minNotional %s", S(f.min_notional));
    cr_expect(f.max_notional.m == 0 && f.apply_min_to_market && !f.apply_max_to_market);
    cr_expect(cq_dec_cmp(f.bid_up, f.ask_up) == 0 && cq_dec_cmp(f.bid_down, f.ask_down) == 0);
    cr_expect(cq_dec_cmp(f.bid_up, D("5")) == 0 && cq_dec_cmp(f.bid_down, D("0.2")) == 0,
              "multipliers %s / %s", S(f.bid_up), S(f.bid_down));
    /* failures name the filter the file listed */
    expect_verdict(cq_filters_check_notional(&f, false, D("9.99"), D("1")), "MIN_NOTIONAL", "");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_SELL, D("100"), D("1000")),
                   "PERCENT_PRICE", "");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_BUY, D("5001"), D("1000")),
                   "PERCENT_PRICE", "");
    json_decref(info);
}

/* ---- hostile exchangeInfo --------------------------------------------------------- */

struct bad_case {
    const char *json;
    const char *want_in_message[3];
};

static const struct bad_case bad_cases[] = {
    {BTC_SYMBOL("{\"filterType\":\"LOT_SIZE\",\"minQty\":\"0.00001000\",\"stepSize\":"
                "\"0.00001000\"}"),
     {"BTCUSDT", "LOT_SIZE", "maxQty is missing"}},
    {BTC_SYMBOL("{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"0.01\",\"maxPrice\":\"1e6\","
                "\"tickSize\":\"0.01\"}"),
     {"BTCUSDT", "PRICE_FILTER", "maxPrice is not a decimal"}},
    {BTC_SYMBOL("{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"0.01\",\"maxPrice\":\"100\","
                "\"tickSize\":0.01}"),
     {"BTCUSDT", "PRICE_FILTER", "tickSize is not a decimal string"}},
    {BTC_SYMBOL("{\"filterType\":\"LOT_SIZE\",\"minQty\":\"0.00001000\",\"maxQty\":\"9000\","
                "\"stepSize\":\"0.00000000\"}"),
     {"BTCUSDT", "LOT_SIZE", "stepSize is 0"}},
    {BTC_SYMBOL("{\"filterType\":\"LOT_SIZE\",\"minQty\":\"-1\",\"maxQty\":\"9000\","
                "\"stepSize\":\"0.001\"}"),
     {"BTCUSDT", "LOT_SIZE", "minQty is negative"}},
    {BTC_SYMBOL("{\"filterType\":\"LOT_SIZE\",\"minQty\":\"0.000000001\",\"maxQty\":\"9000\","
                "\"stepSize\":\"0.001\"}"),
     {"BTCUSDT", "LOT_SIZE", "minQty has more than 8 decimals"}},
    {BTC_SYMBOL("{\"filterType\":\"LOT_SIZE\",\"minQty\":\"10\",\"maxQty\":\"9\","
                "\"stepSize\":\"0.001\"}"),
     {"BTCUSDT", "LOT_SIZE", "minQty is above maxQty"}},
    {BTC_SYMBOL("{\"filterType\":\"NOTIONAL\",\"minNotional\":\"5\",\"applyMinToMarket\":\"yes\","
                "\"maxNotional\":\"9\",\"applyMaxToMarket\":false,\"avgPriceMins\":5}"),
     {"BTCUSDT", "NOTIONAL", "applyMinToMarket is not true or false"}},
    {BTC_SYMBOL("{\"filterType\":\"MAX_NUM_ORDERS\",\"maxNumOrders\":-1}"),
     {"BTCUSDT", "MAX_NUM_ORDERS", "maxNumOrders is out of range"}},
    {BTC_SYMBOL("{\"filterType\":\"MAX_NUM_ORDERS\",\"maxNumOrders\":\"200\"}"),
     {"BTCUSDT", "MAX_NUM_ORDERS", "maxNumOrders is not an integer"}},
    {BTC_SYMBOL("{\"filterType\":\"MIN_NOTIONAL\",\"minNotional\":\"10\",\"avgPriceMins\":5}"),
     {"BTCUSDT", "MIN_NOTIONAL", "applyToMarket is missing"}},
    {BTC_SYMBOL("{\"filterType\":\"PERCENT_PRICE\",\"multiplierUp\":\"5\",\"avgPriceMins\":5}"),
     {"BTCUSDT", "PERCENT_PRICE", "multiplierDown is missing"}},
    {BTC_SYMBOL(BTC_LOT "," BTC_LOT), {"BTCUSDT", "LOT_SIZE", "listed twice"}},
    {BTC_SYMBOL(BTC_NOTIONAL ",{\"filterType\":\"MIN_NOTIONAL\",\"minNotional\":\"10\","
                             "\"applyToMarket\":true,\"avgPriceMins\":5}"),
     {"BTCUSDT", "NOTIONAL", "MIN_NOTIONAL"}},
    {BTC_SYMBOL("7"), {"BTCUSDT", "filter 0", "filterType"}},
    {"{\"symbol\":\"BTCUSDT\"}", {"BTCUSDT", "filters", "missing"}},
    {"{\"filters\":[]}", {"symbol", "missing", ""}},
    {"[]", {"not a JSON object", "", ""}},
};

Test(filters_parse, hostile_filter_objects_are_refused_naming_symbol_filter_and_field)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad_cases); i++) {
        struct cq_filters f;
        struct cq_err err = {0};
        int rc = parse_text(bad_cases[i].json, &f, &err);
        cr_expect_eq(rc, -CQ_EPARSE, "case %zu parsed: %s", i, bad_cases[i].json);
        for (size_t k = 0; k < 3; k++) {
            cr_expect(strstr(err.message, bad_cases[i].want_in_message[k]) != NULL,
                      "case %zu: message \"%s\" lacks \"%s\"", i, err.message,
                      bad_cases[i].want_in_message[k]);
        }
        cr_expect(err.hint[0] != '\0', "case %zu: no hint", i);
    }
}

Test(filters_parse, unknown_filters_are_ignored_and_absent_ones_are_off)
{
    struct cq_filters f;
    struct cq_err err = {0};
    cr_assert_eq(parse_text(BTC_SYMBOL("{\"filterType\":\"MAX_POSITION\",\"maxPosition\":\"1\"},"
                                       "{\"filterType\":\"SOMETHING_NEW\"}"),
                            &f, &err),
                 0, "%s", err.message);
    expect_verdict(cq_filters_check_price(&f, D("123.456789")), NULL, "");
    expect_verdict(cq_filters_check_qty(&f, true, D("0.00000001")), NULL, "");
    expect_verdict(cq_filters_check_notional(&f, false, D("0.00000001"), D("0.00000001")), NULL,
                   "");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_BUY, D("1000000"), D("1")), NULL, "");
}

/* ---- the rules at their edges ---------------------------------------------------- */

struct price_case {
    const char *price;
    const char *want;
};

Test(filters_rules, price_filter)
{
    struct cq_filters f = btc();
    static const struct price_case cases[] = {
        {"0.01", NULL},
        {"0.00", "PRICE_FILTER"},
        {"-0.01", "PRICE_FILTER"},
        {"0.009", "PRICE_FILTER"},
        {"1000000", NULL},
        {"1000000.01", "PRICE_FILTER"},
        {"60000.01", NULL},
        {"60000.015", "PRICE_FILTER"},
        {"60000.10000000", NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        expect_verdict(cq_filters_check_price(&f, D(cases[i].price)), cases[i].want, "price %s",
                       cases[i].price);
    }
}

struct qty_case {
    bool market;
    const char *qty;
    const char *want;
};

Test(filters_rules, lot_size_and_market_lot_size_fallback)
{
    struct cq_filters f = btc();
    static const struct qty_case cases[] = {
        {false, "0.00001", NULL},
        {false, "0.000009", "LOT_SIZE"},        /* below min (and off step) */
        {false, "0", "LOT_SIZE"},               /* zero */
        {false, "0.000015", "LOT_SIZE"},        /* off step */
        {false, "9000", NULL},                  /* at max */
        {false, "9000.00001", "LOT_SIZE"},      /* above max */
        {false, "200", NULL},                   /* LIMIT ignores MARKET_LOT_SIZE's max */
        {true, "0.00001", NULL},                /* MARKET: LOT_SIZE's min (market min 0) */
        {true, "0.000009", "LOT_SIZE"},         /* … and its failure names LOT_SIZE */
        {true, "0.000015", "LOT_SIZE"},         /* LOT_SIZE's step (market step 0) */
        {true, "129.84957", NULL},              /* under MARKET_LOT_SIZE's max */
        {true, "129.84958", "MARKET_LOT_SIZE"}, /* above it */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        expect_verdict(cq_filters_check_qty(&f, cases[i].market, D(cases[i].qty)), cases[i].want,
                       "%s qty %s", cases[i].market ? "MARKET" : "LIMIT", cases[i].qty);
    }
    /* a MARKET_LOT_SIZE with its own min and step takes them */
    f.market_min_qty = D("0.001");
    f.market_step = D("0.001");
    expect_verdict(cq_filters_check_qty(&f, true, D("0.0009")), "MARKET_LOT_SIZE", "");
    expect_verdict(cq_filters_check_qty(&f, true, D("0.0015")), "MARKET_LOT_SIZE", "");
    expect_verdict(cq_filters_check_qty(&f, true, D("0.002")), NULL, "");
    expect_verdict(cq_filters_check_qty(&f, false, D("0.0009")), NULL, "");
}

Test(filters_rules, notional_limit_and_market_on_average_price)
{
    struct cq_filters f = btc();
    /* LIMIT: price * qty against min 5 and max 9000000 */
    expect_verdict(cq_filters_check_notional(&f, false, D("50000"), D("0.0001")), NULL, "");
    expect_verdict(cq_filters_check_notional(&f, false, D("49999.99"), D("0.0001")), "NOTIONAL",
                   "");
    expect_verdict(cq_filters_check_notional(&f, false, D("100000"), D("90")), NULL, "");
    expect_verdict(cq_filters_check_notional(&f, false, D("100000.01"), D("90")), "NOTIONAL", "");
    /* a product just under the minimum by less than 1e-8 is still under
     * (floor): 4.999999999 */
    expect_verdict(cq_filters_check_notional(&f, false, D("0.49999999"), D("10.0000001")),
                   "NOTIONAL", "");
    /* a product above the maximum by less than 1e-8 is still above (ceil) */
    expect_verdict(cq_filters_check_notional(&f, false, D("900000.00000001"), D("10.0000001")),
                   "NOTIONAL", "");
    /* MARKET: the reference is the average price; min applies to market,
     * max does not */
    expect_verdict(cq_filters_check_notional(&f, true, D("50000"), D("0.00009")), "NOTIONAL", "");
    expect_verdict(cq_filters_check_notional(&f, true, D("50000"), D("0.0001")), NULL, "");
    expect_verdict(cq_filters_check_notional(&f, true, D("100000"), D("100")), NULL, "");
    f.apply_min_to_market = false;
    expect_verdict(cq_filters_check_notional(&f, true, D("50000"), D("0.00009")), NULL, "");
    f.apply_max_to_market = true;
    expect_verdict(cq_filters_check_notional(&f, true, D("100000"), D("100")), "NOTIONAL", "");
    /* a product beyond int64 passes the minimum and fails the maximum */
    expect_verdict(cq_filters_check_notional(&f, false, D("90000000000"), D("90000000000")),
                   "NOTIONAL", "");
    f.max_notional = CQ_DEC_ZERO;
    expect_verdict(cq_filters_check_notional(&f, false, D("90000000000"), D("90000000000")), NULL,
                   "");
}

struct pp_case {
    enum cq_side side;
    const char *price, *avg;
    const char *want;
};

Test(filters_rules, percent_price_by_side_up_and_down)
{
    struct cq_filters f = btc();
    static const struct pp_case cases[] = {
        {CQ_SIDE_BUY, "5000", "1000", NULL},
        {CQ_SIDE_BUY, "5000.01", "1000", "PERCENT_PRICE_BY_SIDE"},
        {CQ_SIDE_BUY, "200", "1000", NULL},
        {CQ_SIDE_BUY, "199.99", "1000", "PERCENT_PRICE_BY_SIDE"},
        {CQ_SIDE_SELL, "5000", "1000", NULL},
        {CQ_SIDE_SELL, "5000.01", "1000", "PERCENT_PRICE_BY_SIDE"},
        {CQ_SIDE_SELL, "200", "1000", NULL},
        {CQ_SIDE_SELL, "199.99", "1000", "PERCENT_PRICE_BY_SIDE"},
        {CQ_SIDE_BUY, "999999", "0", NULL}, /* average unknown: passes */
        /* bounds rounded in the order's favour: 0.2 * 0.00000001 = 2e-9,
         * floored to 0; 5 * 0.00000003 = 1.5e-7 ceiled to 0.00000015 */
        {CQ_SIDE_BUY, "0.00000001", "0.00000001", NULL},
        {CQ_SIDE_SELL, "0.00000015", "0.00000003", NULL},
        {CQ_SIDE_SELL, "0.00000016", "0.00000003", "PERCENT_PRICE_BY_SIDE"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        expect_verdict(
            cq_filters_check_percent_price(&f, cases[i].side, D(cases[i].price), D(cases[i].avg)),
            cases[i].want, "case %zu: %s %s on avg %s", i,
            cases[i].side == CQ_SIDE_BUY ? "BUY" : "SELL", cases[i].price, cases[i].avg);
    }
    /* asymmetric sides: a SELL is held to the ask multipliers */
    f.ask_up = D("1.5");
    f.ask_down = D("0.8");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_SELL, D("1501"), D("1000")),
                   "PERCENT_PRICE_BY_SIDE", "");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_SELL, D("799"), D("1000")),
                   "PERCENT_PRICE_BY_SIDE", "");
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_BUY, D("1501"), D("1000")), NULL, "");
    /* a zero multiplier disables its bound */
    f.ask_up = CQ_DEC_ZERO;
    expect_verdict(cq_filters_check_percent_price(&f, CQ_SIDE_SELL, D("1000000"), D("1000")), NULL,
                   "");
}

/* ---- sizing ------------------------------------------------------------------------ */

struct round_qty_case {
    bool market;
    const char *want, *got, *why;
};

Test(filters_sizing, round_qty_down_to_the_step)
{
    struct cq_filters f = btc();
    static const struct round_qty_case cases[] = {
        {false, "0.00123456789", "0.00123", NULL},
        {false, "0.00001", "0.00001", NULL},
        {false, "0.0000199", "0.00001", NULL},
        {false, "0.0000099", NULL, "LOT_SIZE"}, /* rounds below minQty */
        {false, "0", NULL, "LOT_SIZE"},
        {false, "-1", NULL, "LOT_SIZE"},
        {false, "12000", "9000", NULL},       /* capped at maxQty */
        {true, "500", "129.84957", NULL},     /* MARKET: capped at MARKET max, down to step */
        {true, "0.000019", "0.00001", NULL},  /* MARKET: LOT_SIZE's step */
        {true, "0.000009", NULL, "LOT_SIZE"}, /* MARKET: LOT_SIZE's min */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        cq_dec q = D("777");
        const char *why = "unset";
        int rc = cq_filters_round_qty(&f, cases[i].market, D(cases[i].want), &q, &why);
        if (cases[i].got != NULL) {
            cr_expect_eq(rc, 0, "case %zu: want %s refused (%s)", i, cases[i].want, NZ(why));
            cr_expect(cq_dec_cmp(q, D(cases[i].got)) == 0, "case %zu: %s -> %s, want %s", i,
                      cases[i].want, S(q), cases[i].got);
            cr_expect(q.scale == CQ_FILTERS_AMOUNT_SCALE, "case %zu: scale %u", i, q.scale);
            cr_expect_null(why, "case %zu", i);
            expect_verdict(cq_filters_check_qty(&f, cases[i].market, q), NULL, "case %zu", i);
        } else {
            cr_expect_eq(rc, -CQ_EINVAL, "case %zu: %s accepted as %s", i, cases[i].want, S(q));
            expect_verdict(why, cases[i].why, "case %zu", i);
            cr_expect(cq_dec_cmp(q, D("777")) == 0, "case %zu: output written on refusal", i);
        }
    }
    /* a MARKET_LOT_SIZE min of its own: rounding below it names it */
    f.market_min_qty = D("0.001");
    {
        cq_dec q;
        const char *why = NULL;
        cr_expect_eq(cq_filters_round_qty(&f, true, D("0.0009"), &q, &why), -CQ_EINVAL);
        expect_verdict(why, "MARKET_LOT_SIZE", "");
    }
}

struct round_price_case {
    enum cq_side side;
    const char *want, *got, *why;
};

Test(filters_sizing, round_price_buy_floor_sell_ceil)
{
    struct cq_filters f = btc();
    static const struct round_price_case cases[] = {
        {CQ_SIDE_BUY, "60000.019", "60000.01", NULL},
        {CQ_SIDE_SELL, "60000.011", "60000.02", NULL},
        {CQ_SIDE_BUY, "60000.01", "60000.01", NULL},
        {CQ_SIDE_SELL, "60000.01", "60000.01", NULL},
        {CQ_SIDE_SELL, "60000.0100000001", "60000.02", NULL}, /* beyond 8 decimals: still up */
        {CQ_SIDE_BUY, "60000.0199999999", "60000.01", NULL},
        {CQ_SIDE_BUY, "0.009", NULL, "PRICE_FILTER"},        /* floors to 0 */
        {CQ_SIDE_SELL, "0.001", "0.01", NULL},               /* ceils to minPrice */
        {CQ_SIDE_SELL, "1000000.001", NULL, "PRICE_FILTER"}, /* ceils above maxPrice */
        {CQ_SIDE_BUY, "1000000.001", "1000000", NULL},
        {CQ_SIDE_BUY, "0", NULL, "PRICE_FILTER"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        cq_dec p = D("777");
        const char *why = "unset";
        int rc = cq_filters_round_price(&f, cases[i].side, D(cases[i].want), &p, &why);
        if (cases[i].got != NULL) {
            cr_expect_eq(rc, 0, "case %zu: %s refused (%s)", i, cases[i].want, NZ(why));
            cr_expect(cq_dec_cmp(p, D(cases[i].got)) == 0, "case %zu: %s -> %s, want %s", i,
                      cases[i].want, S(p), cases[i].got);
            cr_expect_null(why, "case %zu", i);
            expect_verdict(cq_filters_check_price(&f, p), NULL, "case %zu", i);
        } else {
            cr_expect_eq(rc, -CQ_EINVAL, "case %zu: %s accepted as %s", i, cases[i].want, S(p));
            expect_verdict(why, cases[i].why, "case %zu", i);
        }
    }
}

/* ---- same answer as the simulator ---------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, seeded per test */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static uint64_t rnd_below(uint64_t n)
{
    return n == 0 ? 0 : rnd() % n;
}

/* base * num / 1000 at scale 8, down to grid (when non-zero), and one time
 * in eight nudged off it by 1e-8. */
static cq_dec around_on(cq_dec base, uint64_t num, cq_dec grid)
{
    cq_dec v;
    if (cq_dec_mul(base, cq_dec_make((int64_t)num, 3), 8, CQ_ROUND_DOWN, &v) < 0) {
        v = base;
    }
    if (grid.m > 0 && (cq_dec_quantize(v, grid, CQ_ROUND_FLOOR, &v) < 0 ||
                       cq_dec_rescale(v, 8, CQ_ROUND_EXACT, &v) < 0)) {
        v = base;
    }
    if (rnd_below(8) == 0) {
        v.m += rnd_below(2) == 0 ? 1 : -1;
    }
    return v;
}

static cq_dec around(cq_dec base, uint64_t num)
{
    return around_on(base, num, CQ_DEC_ZERO);
}

/* Multipliers (x1000) that land on and around every bound. */
static const uint64_t near_one[] = {999, 1000, 1000, 1000, 1000, 1001};

static const uint64_t factors[] = {0,    1,    100,  199,  200,  201,  500,  999,
                                   1000, 1001, 2000, 4999, 5000, 5001, 6000, 100000};

/* A quantity on or next to one of the quantity and notional bounds. */
static cq_dec qty_near_a_bound(const struct cq_filters *f, bool market, cq_dec avg)
{
    struct cq_filters_qty_rule r;
    cq_dec q;
    cq_filters_qty_rule_of(f, market, &r);
    switch (rnd_below(4)) {
    case 0:
        return around_on(r.min.m > 0 ? r.min : r.step, factors[rnd_below(CQ_ARRAY_LEN(factors))],
                         rnd_below(2) == 0 ? r.step : CQ_DEC_ZERO);
    case 1:
        return around(r.max, near_one[rnd_below(CQ_ARRAY_LEN(near_one))]);
    case 2:
        /* the quantity that makes the minimum notional at avg, on the step */
        if (cq_dec_div(f->min_notional, avg, 8, CQ_ROUND_CEIL, &q) < 0 ||
            cq_dec_quantize(q, r.step, rnd_below(2) == 0 ? CQ_ROUND_CEIL : CQ_ROUND_FLOOR, &q) <
                0 ||
            cq_dec_rescale(q, 8, CQ_ROUND_EXACT, &q) < 0) {
            q = r.step;
        }
        return around(q, near_one[rnd_below(CQ_ARRAY_LEN(near_one))]);
    default:
        /* a few steps above the minimum */
        if (cq_dec_mul(r.step, cq_dec_make((int64_t)(1 + rnd_below(1000)), 0), 8, CQ_ROUND_DOWN,
                       &q) < 0 ||
            cq_dec_add(q, r.min, &q) < 0) {
            q = r.step;
        }
        return around(q, 1000);
    }
}

/* One symbol of the 2024 file into the simulator's symbol table. */
static bool sim_symbol_of(const json_t *s, struct cq_sim__symbol *out, struct cq_filters *f)
{
    struct cq_err err = {0};
    const char *base = json_string_value(json_object_get(s, "baseAsset"));
    const char *quote = json_string_value(json_object_get(s, "quoteAsset"));
    memset(out, 0, sizeof(*out));
    cr_assert_eq(cq_filters_from_json(s, f, &err), 0, "%s", err.message);
    if (base == NULL || quote == NULL || strlen(base) >= SIM_ASSET_LEN ||
        strlen(quote) >= SIM_ASSET_LEN) {
        return false;
    }
    cq_strlcpy(out->symbol, json_string_value(json_object_get(s, "symbol")), CQ_SYMBOL_LEN);
    cq_strlcpy(out->base, base, SIM_ASSET_LEN);
    cq_strlcpy(out->quote, quote, SIM_ASSET_LEN);
    out->base_precision = 8;
    out->quote_precision = 8;
    out->status = SIM_TRADING;
    out->filters = *f;
    return true;
}

/* What the simulator's prepare() checks first, in its order, through
 * cq_filters: the filter the order breaks, or NULL. */
static const char *expected_filter(const struct cq_filters *f, bool market, enum cq_side side,
                                   cq_dec price, cq_dec qty, cq_dec avg)
{
    const char *bad;
    if (!market) {
        bad = cq_filters_check_price(f, price);
        if (bad != NULL) {
            return bad;
        }
    }
    bad = cq_filters_check_qty(f, market, qty);
    if (bad != NULL) {
        return bad;
    }
    if (!market) {
        bad = cq_filters_check_percent_price(f, side, price, avg);
        if (bad != NULL) {
            return bad;
        }
    }
    return cq_filters_check_notional(f, market, market ? avg : price, qty);
}

Test(filters_same_answer, cq_filters_refuses_exactly_when_the_simulator_says_1013, .timeout = 120)
{
    enum { N_SYMS = SIM_SYMBOLS_MAX, ORDERS = 200000 };
    json_t *info = load_info(INFO_2024);
    const json_t *syms = json_object_get(info, "symbols");
    static struct cq_sim__symbol sim_syms[N_SYMS];
    static struct cq_filters fs[N_SYMS];
    struct cq_sim__engine_config cfg;
    struct cq_sim__engine *e;
    struct cq_err err = {0};
    size_t n = 0, tries = 0;
    size_t refused = 0, per_filter_hits[6] = {0};
    static const char *const filter_names[6] = {"PRICE_FILTER",    "LOT_SIZE",
                                                "MARKET_LOT_SIZE", "PERCENT_PRICE_BY_SIDE",
                                                "NOTIONAL",        "other"};

    rng_state = 0x9E3779B97F4A7C15ULL;
    /* BTCUSDT first (a MARKET_LOT_SIZE max), then random symbols with
     * distinct assets budgets do not matter: no balance is needed to pass
     * the filters */
    while (n < N_SYMS && tries < 10000) {
        const json_t *s = n == 0 ? find_symbol(info, "BTCUSDT")
                                 : json_array_get(syms, rnd_below(json_array_size(syms)));
        bool dup = false;
        tries++;
        if (!sim_symbol_of(s, &sim_syms[n], &fs[n])) {
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            dup = dup || strcmp(sim_syms[k].symbol, sim_syms[n].symbol) == 0;
        }
        if (dup) {
            continue;
        }
        if (n % 2 == 1) {
            /* production's multipliers are the same on both sides; make the
             * sides differ on half the symbols so a side mix-up shows */
            fs[n].ask_up = cq_dec_make(13, 1);
            fs[n].ask_down = cq_dec_make(7, 1);
            fs[n].apply_min_to_market = n % 4 == 1;
            sim_syms[n].filters = fs[n];
        }
        n++;
    }
    cr_assert_eq(n, N_SYMS);
    memset(&cfg, 0, sizeof(cfg));
    cfg.symbols = sim_syms;
    cfg.n_symbols = n;
    cfg.seed = 7;
    e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);

    for (size_t i = 0; i < ORDERS; i++) {
        int si = (int)rnd_below(n);
        const struct cq_filters *f = &fs[si];
        bool market = rnd_below(3) == 0;
        enum cq_side side = rnd_below(2) == 0 ? CQ_SIDE_BUY : CQ_SIDE_SELL;
        /* an average price on the tick grid, somewhere inside the range */
        cq_dec avg = around(f->tick_size, 1000 * (1 + rnd_below(100000)));
        cq_dec price = around_on(avg,
                                 rnd_below(2) == 0 ? factors[rnd_below(CQ_ARRAY_LEN(factors))]
                                                   : near_one[rnd_below(CQ_ARRAY_LEN(near_one))],
                                 f->tick_size);
        cq_dec qty;
        struct cq_sim__order_req req;
        struct cq_sim__book_view book;
        struct cq_sim__reject rej;
        const char *want;
        int rc;

        if (avg.m <= 0) {
            avg = f->tick_size;
        }
        qty = qty_near_a_bound(f, market, avg);
        memset(&req, 0, sizeof(req));
        memset(&book, 0, sizeof(book));
        memset(&rej, 0, sizeof(rej));
        req.symbol_idx = si;
        req.side = side == CQ_SIDE_BUY ? SIM_BUY : SIM_SELL;
        req.type = market ? SIM_MARKET : SIM_LIMIT;
        req.tif = market ? SIM_TIF_NONE : SIM_GTC;
        req.has_qty = true;
        req.qty = qty;
        req.has_price = !market;
        req.price = market ? CQ_DEC_ZERO : price;
        book.avg_price = avg;
        book.last_price = avg;

        want = expected_filter(f, market, side, price, qty, avg);
        rc = cq_sim__engine_test_order(e, &req, &book, &rej);
        if (want != NULL) {
            char msg[64];
            snprintf(msg, sizeof(msg), "Filter failure: %s", want);
            refused++;
            size_t k = 0;
            while (k < 5 && strcmp(filter_names[k], want) != 0) {
                k++;
            }
            per_filter_hits[k]++;
            cr_assert(rc < 0 && rej.code == SIM_ERR_FILTER && strcmp(rej.msg, msg) == 0,
                      "order %zu %s %s %s qty %s price %s avg %s: cq_filters says %s, the "
                      "simulator %d %d \"%s\"",
                      i, sim_syms[si].symbol, side == CQ_SIDE_BUY ? "BUY" : "SELL",
                      market ? "MARKET" : "LIMIT", S(qty), S(price), S(avg), want, rc, rej.code,
                      rej.msg);
        } else {
            cr_assert(rc == 0 || rej.code != SIM_ERR_FILTER,
                      "order %zu %s %s %s qty %s price %s avg %s: cq_filters passes, the "
                      "simulator %d \"%s\"",
                      i, sim_syms[si].symbol, side == CQ_SIDE_BUY ? "BUY" : "SELL",
                      market ? "MARKET" : "LIMIT", S(qty), S(price), S(avg), rej.code, rej.msg);
        }
    }
    /* the generator reaches every filter and both verdicts */
    for (size_t k = 0; k < 5; k++) {
        cr_expect(per_filter_hits[k] > 100, "%s refused only %zu times: widen the generator",
                  filter_names[k], per_filter_hits[k]);
    }
    cr_log_info("same answer: %zu of %d orders refused (PRICE_FILTER %zu, LOT_SIZE %zu, "
                "MARKET_LOT_SIZE %zu, PERCENT_PRICE_BY_SIDE %zu, NOTIONAL %zu)",
                refused, ORDERS, per_filter_hits[0], per_filter_hits[1], per_filter_hits[2],
                per_filter_hits[3], per_filter_hits[4]);
    cr_expect(refused > ORDERS / 5 && refused < ORDERS * 4 / 5, "refused %zu of %d", refused,
              ORDERS);
    cq_sim__engine_free(e);
    json_decref(info);
}
