/*
 * test_trader_parse.c — server/trader/parse.c: the exchange's JSON (as the
 * simulator sends it, server/sim/rest.c and ws.c, and Binance's recorded
 * exchangeInfo in ../shared/data) turned into the decision core's events,
 * exactly (cq_dec), with a clear reason for every shape it refuses.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/trader.h"
#include "trader-parse.h"

static char why[256];

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "test JSON: %s", e.text);
    return j;
}

static void expect_dec(cq_dec d, const char *want)
{
    cq_dec w;
    cr_assert_eq(cq_dec_parse(want, strlen(want), &w), 0);
    char buf[CQ_DEC_STR_MAX];
    cr_expect_eq(cq_dec_cmp(d, w), 0, "got %s, want %s", cq_dec_format(d, buf, sizeof(buf)), want);
}

/* The simulator's executionReport for a market BUY's trade (ws.c's field order). */
static const char EXEC_TRADE[] =
    "{\"e\":\"executionReport\",\"E\":1764000000123,\"s\":\"BTCUSDT\","
    "\"c\":\"cq1-0123456789abcdef0123456789abcdef\",\"S\":\"BUY\",\"o\":\"MARKET\",\"f\":\"GTC\","
    "\"q\":\"0.00332000\",\"p\":\"0.00000000\",\"P\":\"0.00000000\",\"F\":\"0.00000000\",\"g\":-1,"
    "\"C\":\"\",\"x\":\"TRADE\",\"X\":\"PARTIALLY_FILLED\",\"r\":\"NONE\",\"i\":17,"
    "\"l\":\"0.00100000\",\"z\":\"0.00100000\",\"L\":\"30105.64000000\",\"n\":\"0.00000100\","
    "\"N\":\"BTC\",\"T\":1764000000120,\"t\":44,\"I\":91,\"w\":false,\"m\":false,\"M\":false,"
    "\"O\":1764000000100,\"Z\":\"30.10564000\",\"Y\":\"30.10564000\",\"Q\":\"100.00000000\","
    "\"W\":1764000000100,\"V\":\"EXPIRE_MAKER\"}";

Test(trader_parse, execution_report_trade_is_an_exact_order_update)
{
    struct cq_trader_event ev;
    cr_assert_eq(cq_trader__parse_user_event(EXEC_TRADE, strlen(EXEC_TRADE), &ev, why, sizeof(why)),
                 CQ_TRADER__USER_ORDER, "%s", why);
    cr_expect_eq(ev.kind, CQ_TRADER_EV_ORDER_UPDATE);
    const struct cq_trader_order_update *u = &ev.u.order;
    cr_expect_str_eq(u->symbol, "BTCUSDT");
    cr_expect_str_eq(u->client_id, "cq1-0123456789abcdef0123456789abcdef");
    cr_expect_eq(u->order_id, 17);
    cr_expect_eq(u->side, CQ_SIDE_BUY);
    cr_expect_eq(u->type, CQ_TRADER_MARKET);
    cr_expect_eq(u->state, CQ_TRADER_OS_OPEN);
    expect_dec(u->executed_qty, "0.001");
    expect_dec(u->cum_quote, "30.10564");
    expect_dec(u->last_qty, "0.001");
    expect_dec(u->last_price, "30105.64");
    expect_dec(u->commission, "0.000001");
    cr_expect_str_eq(u->commission_asset, "BTC");
    cr_expect_eq(u->trade_id, 44);
    cr_expect_eq(u->event_ms, 1764000000120);
}

Test(trader_parse, execution_report_cancel_is_keyed_by_the_orders_own_id)
{
    /* on a cancel, "c" is the cancel request's id and "C" the order's */
    static const char cancel[] =
        "{\"e\":\"executionReport\",\"E\":5,\"s\":\"ETHUSDT\",\"c\":\"web_cancel_1\",\"S\":"
        "\"SELL\","
        "\"o\":\"LIMIT\",\"q\":\"1.00000000\",\"p\":\"2500.00000000\",\"C\":\"cq1-aa\","
        "\"x\":\"CANCELED\",\"X\":\"CANCELED\",\"i\":9,\"l\":\"0.00000000\",\"z\":\"0.40000000\","
        "\"L\":\"0.00000000\",\"n\":\"0\",\"N\":null,\"T\":6,\"t\":-1,\"Z\":\"1000.00000000\"}";
    struct cq_trader_event ev;
    cr_assert_eq(cq_trader__parse_user_event(cancel, strlen(cancel), &ev, why, sizeof(why)),
                 CQ_TRADER__USER_ORDER, "%s", why);
    cr_expect_str_eq(ev.u.order.client_id, "cq1-aa");
    cr_expect_eq(ev.u.order.state, CQ_TRADER_OS_CANCELED);
    cr_expect_eq(ev.u.order.type, CQ_TRADER_LIMIT);
    cr_expect_eq(ev.u.order.trade_id, 0, "no trade on a cancel");
    expect_dec(ev.u.order.executed_qty, "0.4");
    expect_dec(ev.u.order.price, "2500");
}

Test(trader_parse, account_position_stream_gap_and_others)
{
    static const char pos[] = "{\"e\":\"outboundAccountPosition\",\"E\":1,\"u\":1,\"B\":["
                              "{\"a\":\"BTC\",\"f\":\"0.00331668\",\"l\":\"0.00000000\"},"
                              "{\"a\":\"USDT\",\"f\":\"9900.05495240\",\"l\":\"0.00000000\"}]}";
    struct cq_trader_event ev;
    cr_assert_eq(cq_trader__parse_user_event(pos, strlen(pos), &ev, why, sizeof(why)),
                 CQ_TRADER__USER_BALANCE, "%s", why);
    cr_expect_eq(ev.kind, CQ_TRADER_EV_BALANCE_UPDATE);
    cr_assert_eq(ev.u.balances.n, 2);
    cr_expect_str_eq(ev.u.balances.items[1].asset, "USDT");
    expect_dec(ev.u.balances.items[1].free, "9900.0549524");
    static const char gap[] =
        "{\"e\":\"userStreamGap\",\"E\":1,\"reason\":\"subscribed\",\"gaps\":1}";
    cr_expect_eq(cq_trader__parse_user_event(gap, strlen(gap), &ev, why, sizeof(why)),
                 CQ_TRADER__USER_GAP);
    cr_expect_eq(ev.kind, CQ_TRADER_EV_STREAM_GAP);
    static const char other[] = "{\"e\":\"balanceUpdate\",\"a\":\"USDT\",\"d\":\"1\"}";
    cr_expect_eq(cq_trader__parse_user_event(other, strlen(other), &ev, why, sizeof(why)),
                 CQ_TRADER__USER_OTHER);
}

Test(trader_parse, hostile_user_events_are_refused_with_a_reason)
{
    static const struct {
        const char *json;
        const char *why;
    } bad[] = {
        {"not json", "not a JSON object"},
        {"[1,2]", "not a JSON object"},
        {"{\"x\":1}", "no \"e\""},
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\"}", "\"c\" is missing"},
        /* a number where the exchange sends a decimal string: never through a double */
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":\"x\",\"S\":\"BUY\",\"o\":\"MARKET\","
         "\"X\":\"NEW\",\"i\":1,\"z\":0.1,\"Z\":\"0\"}",
         "\"z\" is not a decimal string"},
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":\"x\",\"S\":\"HOLD\",\"o\":\"MARKET\","
         "\"X\":\"NEW\",\"i\":1,\"z\":\"0\",\"Z\":\"0\"}",
         "unknown side"},
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":\"x\",\"S\":\"BUY\",\"o\":\"MARKET\","
         "\"X\":\"LOST\",\"i\":1,\"z\":\"0\",\"Z\":\"0\"}",
         "unknown order status"},
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":\"x\",\"S\":\"BUY\",\"o\":\"MARKET\","
         "\"X\":\"NEW\",\"i\":1,\"z\":\"1e5\",\"Z\":\"0\"}",
         "\"z\" is not a decimal string"},
        {"{\"e\":\"executionReport\",\"s\":\"AVERYLONGSYMBOLNAMETHATDOESNOTFIT\",\"c\":\"x\"}",
         "\"s\" is longer than"},
        {"{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":"
         "\"cq1-0123456789abcdef0123456789abcdef-and-more\"}",
         "\"c\" is longer than"},
        {"{\"e\":\"outboundAccountPosition\",\"B\":{}}", "\"B\" is not an array"},
        {"{\"e\":\"outboundAccountPosition\",\"B\":[{\"a\":\"BTC\",\"f\":\"-\",\"l\":\"0\"}]}",
         "\"f\" is not a decimal string"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad); i++) {
        struct cq_trader_event ev;
        why[0] = '\0';
        cr_expect_eq(
            cq_trader__parse_user_event(bad[i].json, strlen(bad[i].json), &ev, why, sizeof(why)),
            CQ_TRADER__USER_BAD, "%s accepted", bad[i].json);
        cr_expect_not_null(strstr(why, bad[i].why), "%s: why \"%s\" lacks \"%s\"", bad[i].json, why,
                           bad[i].why);
    }
}

/* POST /api/v3/order, newOrderRespType FULL, a market order over three
 * levels (rest.c's shape). */
static const char PLACE_FULL[] =
    "{\"symbol\":\"BTCUSDT\",\"orderId\":28,\"orderListId\":-1,"
    "\"clientOrderId\":\"cq1-ffa9810699f698430941aa9ceeb89e9f\",\"transactTime\":1764000000500,"
    "\"price\":\"0.00000000\",\"origQty\":\"0.00300000\",\"executedQty\":\"0.00300000\","
    "\"origQuoteOrderQty\":\"0.00000000\",\"cummulativeQuoteQty\":\"90.30000000\","
    "\"status\":\"FILLED\",\"timeInForce\":\"GTC\",\"type\":\"MARKET\",\"side\":\"BUY\","
    "\"workingTime\":1764000000500,\"selfTradePreventionMode\":\"EXPIRE_MAKER\",\"fills\":["
    "{\"price\":\"30000.00000000\",\"qty\":\"0.00100000\",\"commission\":\"0.00000100\","
    "\"commissionAsset\":\"BTC\",\"tradeId\":1},"
    "{\"price\":\"30100.00000000\",\"qty\":\"0.00100000\",\"commission\":\"0.00000100\","
    "\"commissionAsset\":\"BTC\",\"tradeId\":2},"
    "{\"price\":\"30200.00000000\",\"qty\":\"0.00100000\",\"commission\":\"0.00000100\","
    "\"commissionAsset\":\"BTC\",\"tradeId\":3}]}";

Test(trader_parse, full_place_answer_gives_one_cumulative_update_per_fill)
{
    json_t *j = J(PLACE_FULL);
    struct cq_trader_order_update u[CQ_TRADER_PARSE_FILLS_MAX];
    size_t n = cq_trader__parse_place_response(j, u, CQ_ARRAY_LEN(u), why, sizeof(why));
    cr_assert_eq(n, 3, "%s", why);
    static const char *const exec[] = {"0.001", "0.002", "0.003"};
    static const char *const quote[] = {"30", "60.1", "90.3"};
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(u[i].client_id, "cq1-ffa9810699f698430941aa9ceeb89e9f");
        cr_expect_eq(u[i].order_id, 28);
        cr_expect_eq(u[i].trade_id, i + 1);
        expect_dec(u[i].executed_qty, exec[i]);
        expect_dec(u[i].cum_quote, quote[i]);
        expect_dec(u[i].commission, "0.000001");
        cr_expect_eq(u[i].state, i < 2 ? CQ_TRADER_OS_OPEN : CQ_TRADER_OS_FILLED);
    }
    expect_dec(u[2].last_price, "30200");
    /* more fills than room: the last update carries the answer's totals and
     * every commission beyond it */
    n = cq_trader__parse_place_response(j, u, 2, why, sizeof(why));
    cr_assert_eq(n, 2, "%s", why);
    expect_dec(u[1].executed_qty, "0.003");
    expect_dec(u[1].cum_quote, "90.3");
    expect_dec(u[1].commission, "0.000002");
    cr_expect_eq(u[1].state, CQ_TRADER_OS_FILLED);
    json_decref(j);
}

Test(trader_parse, query_cancel_and_open_order_objects)
{
    json_t *q = J("{\"symbol\":\"ETHUSDT\",\"orderId\":5,\"orderListId\":-1,"
                  "\"clientOrderId\":\"cq1-bb\",\"price\":\"2500.10\",\"origQty\":\"0.04\","
                  "\"executedQty\":\"0.01\",\"cummulativeQuoteQty\":\"25.001\",\"status\":"
                  "\"PARTIALLY_FILLED\",\"timeInForce\":\"GTC\",\"type\":\"LIMIT\",\"side\":"
                  "\"SELL\",\"stopPrice\":\"0\",\"icebergQty\":\"0\",\"time\":1,\"updateTime\":7,"
                  "\"isWorking\":true,\"workingTime\":1,\"origQuoteOrderQty\":\"0\"}");
    struct cq_trader_order_update u;
    cr_assert_eq(cq_trader__parse_order(q, &u, why, sizeof(why)), 0, "%s", why);
    cr_expect_str_eq(u.client_id, "cq1-bb");
    cr_expect_eq(u.side, CQ_SIDE_SELL);
    cr_expect_eq(u.state, CQ_TRADER_OS_OPEN);
    cr_expect_eq(u.event_ms, 7);
    expect_dec(u.price, "2500.1");
    json_decref(q);
    json_t *c = J("{\"symbol\":\"ETHUSDT\",\"origClientOrderId\":\"cq1-bb\",\"orderId\":5,"
                  "\"orderListId\":-1,\"clientOrderId\":\"cancel-me\",\"transactTime\":9,"
                  "\"price\":\"2500.10\",\"origQty\":\"0.04\",\"executedQty\":\"0.01\","
                  "\"cummulativeQuoteQty\":\"25.001\",\"status\":\"CANCELED\",\"type\":\"LIMIT\","
                  "\"side\":\"SELL\"}");
    cr_assert_eq(cq_trader__parse_order(c, &u, why, sizeof(why)), 0, "%s", why);
    cr_expect_str_eq(u.client_id, "cq1-bb", "a cancel answer is keyed by the order's id");
    cr_expect_eq(u.state, CQ_TRADER_OS_CANCELED);
    cr_expect_eq(u.event_ms, 9);
    json_decref(c);
    static const struct {
        const char *status;
        enum cq_trader_order_state state;
    } st[] = {{"NEW", CQ_TRADER_OS_OPEN},
              {"PENDING_CANCEL", CQ_TRADER_OS_OPEN},
              {"FILLED", CQ_TRADER_OS_FILLED},
              {"EXPIRED", CQ_TRADER_OS_CANCELED},
              {"EXPIRED_IN_MATCH", CQ_TRADER_OS_CANCELED},
              {"REJECTED", CQ_TRADER_OS_REJECTED}};
    for (size_t i = 0; i < CQ_ARRAY_LEN(st); i++) {
        enum cq_trader_order_state s;
        cr_expect(cq_trader__order_state_parse(st[i].status, &s));
        cr_expect_eq(s, st[i].state, "%s", st[i].status);
    }
    enum cq_trader_order_state s;
    cr_expect_not(cq_trader__order_state_parse("FILLED ", &s));
    json_t *bad = J("{\"symbol\":\"ETHUSDT\",\"orderId\":\"5\",\"clientOrderId\":\"x\"}");
    cr_expect_lt(cq_trader__parse_order(bad, &u, why, sizeof(why)), 0);
    cr_expect_not_null(strstr(why, "\"orderId\" is not an integer"), "%s", why);
    json_decref(bad);
}

Test(trader_parse, account_keeps_non_zero_balances_exactly)
{
    json_t *a = J("{\"makerCommission\":10,\"canTrade\":true,\"balances\":["
                  "{\"asset\":\"BTC\",\"free\":\"0.00000000\",\"locked\":\"0.00000000\"},"
                  "{\"asset\":\"USDT\",\"free\":\"9999.99000001\",\"locked\":\"0.01\"},"
                  "{\"asset\":\"ETH\",\"free\":\"0\",\"locked\":\"1.5\"}]}");
    struct cq_trader_event ev;
    size_t dropped = 9;
    cr_assert_eq(cq_trader__parse_account(a, &ev, &dropped, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(dropped, 0);
    cr_assert_eq(ev.u.balances.n, 2);
    cr_expect_str_eq(ev.u.balances.items[0].asset, "USDT");
    expect_dec(ev.u.balances.items[0].free, "9999.99000001");
    expect_dec(ev.u.balances.items[1].locked, "1.5");
    json_decref(a);
    /* more non-zero assets than the core tracks: the rest is counted */
    json_t *many = json_pack("{s:[]}", "balances");
    for (int i = 0; i < CQ_TRADER_ASSETS_MAX + 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "A%d", i);
        json_array_append_new(
            json_object_get(many, "balances"),
            json_pack("{s:s,s:s,s:s}", "asset", name, "free", "1", "locked", "0"));
    }
    cr_assert_eq(cq_trader__parse_account(many, &ev, &dropped, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(ev.u.balances.n, CQ_TRADER_ASSETS_MAX);
    cr_expect_eq(dropped, 5);
    json_decref(many);
    /* dryrun's virtual account */
    cr_assert_eq(cq_trader__parse_balance_list("USDT=10000,BTC=0.5", &ev, why, sizeof(why)), 0);
    cr_assert_eq(ev.u.balances.n, 2);
    expect_dec(ev.u.balances.items[1].free, "0.5");
    cr_expect_lt(cq_trader__parse_balance_list("USDT=1e4", &ev, why, sizeof(why)), 0);
    cr_expect_not_null(strstr(why, "is not ASSET=AMOUNT"), "%s", why);
}

Test(trader_parse, recorded_exchange_info_symbols_and_a_ticker)
{
    static const char *const files[] = {
        CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2021-10-12.json",
        CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2024-09-08.json"};
    for (size_t f = 0; f < CQ_ARRAY_LEN(files); f++) {
        json_error_t e;
        json_t *info = json_load_file(files[f], 0, &e);
        cr_assert_not_null(info, "%s: %s", files[f], e.text);
        const json_t *syms = json_object_get(info, "symbols");
        size_t ok = 0, trading = 0;
        for (size_t i = 0; i < json_array_size(syms); i++) {
            struct cq_trader_symbol_info si;
            if (cq_trader__parse_symbol(json_array_get(syms, i), &si, why, sizeof(why)) == 0) {
                ok++;
                trading += si.trading;
                if (strcmp(si.symbol, "BTCUSDT") == 0) {
                    cr_expect_str_eq(si.base, "BTC");
                    cr_expect_str_eq(si.quote, "USDT");
                    cr_expect(si.trading);
                    cr_expect_gt(cq_dec_sign(si.filters.tick_size), 0);
                    cr_expect_gt(cq_dec_sign(si.filters.step_size), 0);
                }
            }
        }
        cr_expect_eq(ok, json_array_size(syms), "%s: %zu of %zu symbols read (%s)", files[f], ok,
                     json_array_size(syms), why);
        cr_expect_gt(trading, 0);
        json_decref(info);
    }
    json_t *t = J("{\"symbol\":\"BTCUSDT\",\"price\":\"30105.64000000\"}");
    char sym[CQ_SYMBOL_LEN];
    cq_dec p;
    cr_assert_eq(cq_trader__parse_ticker_price(t, sym, sizeof(sym), &p, why, sizeof(why)), 0);
    expect_dec(p, "30105.64");
    json_decref(t);
    t = J("{\"symbol\":\"BTCUSDT\",\"price\":\"0\"}");
    cr_expect_lt(cq_trader__parse_ticker_price(t, sym, sizeof(sym), &p, why, sizeof(why)), 0);
    json_decref(t);
}

/* An order learned only by a query (its FULL answer lost in a crash): its
 * trades from myTrades become the fills, so every commission is applied once
 * per trade id, and the last update carries the query's totals. */
Test(trader_parse, query_answer_with_my_trades_gives_the_commissions)
{
    json_t *q = J("{\"symbol\":\"BTCUSDT\",\"orderId\":28,\"clientOrderId\":\"cq1-cc\","
                  "\"price\":\"0\",\"origQty\":\"0.002\",\"executedQty\":\"0.002\","
                  "\"cummulativeQuoteQty\":\"60.1\",\"status\":\"FILLED\",\"type\":\"MARKET\","
                  "\"side\":\"BUY\",\"updateTime\":5}");
    json_t *trades = J("[{\"symbol\":\"BTCUSDT\",\"id\":7,\"orderId\":28,\"price\":\"30000\","
                       "\"qty\":\"0.001\",\"quoteQty\":\"30\",\"commission\":\"0.000001\","
                       "\"commissionAsset\":\"BTC\",\"time\":1},"
                       "{\"symbol\":\"BTCUSDT\",\"id\":8,\"orderId\":27,\"price\":\"1\","
                       "\"qty\":\"9\",\"quoteQty\":\"9\",\"commission\":\"1\","
                       "\"commissionAsset\":\"BTC\",\"time\":1},"
                       "{\"symbol\":\"BTCUSDT\",\"id\":9,\"orderId\":28,\"price\":\"30100\","
                       "\"qty\":\"0.001\",\"quoteQty\":\"30.1\",\"commission\":\"0.000001\","
                       "\"commissionAsset\":\"BTC\",\"time\":2}]");
    cr_assert_eq(cq_trader__attach_trades(q, trades, why, sizeof(why)), 0, "%s", why);
    struct cq_trader_order_update u[CQ_TRADER_PARSE_FILLS_MAX];
    size_t n = cq_trader__parse_place_response(q, u, CQ_ARRAY_LEN(u), why, sizeof(why));
    cr_assert_eq(n, 2, "%s (another order's trade must be skipped)", why);
    cr_expect_eq(u[0].trade_id, 7);
    cr_expect_eq(u[1].trade_id, 9);
    cr_expect_eq(u[0].state, CQ_TRADER_OS_OPEN);
    cr_expect_eq(u[1].state, CQ_TRADER_OS_FILLED);
    expect_dec(u[0].executed_qty, "0.001");
    expect_dec(u[1].executed_qty, "0.002");
    expect_dec(u[1].cum_quote, "60.1");
    expect_dec(u[1].commission, "0.000001");
    cr_expect_str_eq(u[1].commission_asset, "BTC");
    json_decref(trades);
    trades = J("[{\"id\":1,\"orderId\":28,\"qty\":\"1\"}]");
    cr_expect_lt(cq_trader__attach_trades(q, trades, why, sizeof(why)), 0);
    cr_expect_not_null(strstr(why, "lacks price, qty or commission"), "%s", why);
    json_decref(trades);
    json_decref(q);
}
