/*
 * test_risk.c — the risk gate (server/trader/risk.c, include/cq/risk.h):
 * every rule refuses at its boundary and allows just below it; exits pass
 * while paused or at the daily loss limit; the kill switch and a quarantine
 * refuse exits too; a limit of 0 is no limit; when several rules refuse,
 * the first in risk.h's order names the decision; the detail names the
 * inputs.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cq/risk.h"

static cq_dec D(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    int rc = cq_dec_parse(s, (size_t)-1, &d);
    cr_assert_eq(rc, 0, "cannot parse '%s'", s);
    return d;
}

/* Limits as config.env.example sets them, nothing in use, a 100 USDT entry. */
struct fixture {
    struct cq_risk_limits lim;
    struct cq_risk_usage use;
    struct cq_risk_request req;
    struct cq_risk_decision out;
};

static void fx_init(struct fixture *x)
{
    memset(x, 0, sizeof(*x));
    x->lim.max_open_positions = 3;
    x->lim.max_position_notional = D("1000");
    x->lim.max_total_exposure = D("3000");
    x->lim.max_daily_loss = D("500");
    x->lim.max_orders_per_minute = 10;
    x->use.symbol_notional = D("0");
    x->use.total_exposure = D("0");
    x->use.daily_realized_pnl = D("0");
    x->req.symbol = "BTCUSDT";
    x->req.side = CQ_SIDE_BUY;
    x->req.reduce_only = false;
    x->req.notional = D("100");
}

static void run(struct fixture *x)
{
    memset(&x->out, 0x5a, sizeof(x->out));
    cq_risk_check(&x->lim, &x->use, &x->req, &x->out);
    cr_assert_not_null(x->out.rule);
    cr_assert(memchr(x->out.detail, '\0', sizeof(x->out.detail)) != NULL, "detail unterminated");
}

#define expect_allowed(x)                                                                          \
    do {                                                                                           \
        run(x);                                                                                    \
        cr_expect((x)->out.allowed, "refused by %s: %s", (x)->out.rule, (x)->out.detail);          \
        cr_expect_str_eq((x)->out.rule, "ok");                                                     \
    } while (0)

#define expect_refused(x, want_rule)                                                               \
    do {                                                                                           \
        run(x);                                                                                    \
        cr_expect(!(x)->out.allowed, "allowed (%s), want %s", (x)->out.detail, (want_rule));       \
        cr_expect_str_eq((x)->out.rule, (want_rule), "detail: %s", (x)->out.detail);               \
    } while (0)

Test(risk, the_default_entry_is_allowed)
{
    struct fixture x;
    fx_init(&x);
    expect_allowed(&x);
    cr_expect(strstr(x.out.detail, "BTCUSDT") != NULL, "%s", x.out.detail);
}

Test(risk, kill_switch_refuses_entries_and_exits)
{
    struct fixture x;
    fx_init(&x);
    x.lim.kill_switch = true;
    expect_refused(&x, "kill_switch");
    x.req.reduce_only = true;
    x.req.side = CQ_SIDE_SELL;
    expect_refused(&x, "kill_switch");
    x.lim.kill_switch = false;
    expect_allowed(&x);
}

Test(risk, quarantine_refuses_entries_and_exits_of_the_symbol)
{
    struct fixture x;
    fx_init(&x);
    x.use.symbol_quarantined = true;
    expect_refused(&x, "symbol_quarantined");
    cr_expect(strstr(x.out.detail, "BTCUSDT") != NULL, "%s", x.out.detail);
    x.req.reduce_only = true;
    expect_refused(&x, "symbol_quarantined");
}

Test(risk, paused_refuses_entries_and_allows_exits)
{
    struct fixture x;
    fx_init(&x);
    x.lim.trading_paused = true;
    expect_refused(&x, "trading_paused");
    x.req.reduce_only = true;
    x.req.side = CQ_SIDE_SELL;
    expect_allowed(&x);
}

Test(risk, daily_loss_refuses_at_the_limit_and_allows_just_above_it)
{
    struct fixture x;
    fx_init(&x);
    x.use.daily_realized_pnl = D("-500");
    expect_refused(&x, "daily_loss_limit");
    cr_expect(strstr(x.out.detail, "-500") != NULL && strstr(x.out.detail, "<= -500") != NULL, "%s",
              x.out.detail);
    x.use.daily_realized_pnl = D("-512.30000000");
    expect_refused(&x, "daily_loss_limit");
    cr_expect(strstr(x.out.detail, "-512.30000000") != NULL, "%s", x.out.detail);
    x.use.daily_realized_pnl = D("-499.99999999");
    expect_allowed(&x);
    /* exits still allowed at the limit */
    x.use.daily_realized_pnl = D("-600");
    x.req.reduce_only = true;
    expect_allowed(&x);
    /* 0 = no limit */
    x.req.reduce_only = false;
    x.lim.max_daily_loss = D("0");
    expect_allowed(&x);
}

Test(risk, orders_per_minute_refuses_at_the_count_entries_and_exits)
{
    struct fixture x;
    fx_init(&x);
    x.use.orders_last_minute = 9;
    expect_allowed(&x);
    x.use.orders_last_minute = 10;
    expect_refused(&x, "max_orders_per_minute");
    cr_expect(strstr(x.out.detail, "10") != NULL, "%s", x.out.detail);
    x.req.reduce_only = true;
    expect_refused(&x, "max_orders_per_minute");
    x.lim.max_orders_per_minute = 0;
    x.use.orders_last_minute = 100000;
    expect_allowed(&x);
}

Test(risk, open_positions_refuses_a_new_position_at_the_count)
{
    struct fixture x;
    fx_init(&x);
    x.use.open_positions = 2;
    expect_allowed(&x);
    x.use.open_positions = 3;
    expect_refused(&x, "max_open_positions");
    /* adding to a position the symbol already has opens none */
    x.use.symbol_has_position = true;
    expect_allowed(&x);
    /* an exit is not an entry */
    x.use.symbol_has_position = false;
    x.req.reduce_only = true;
    expect_allowed(&x);
    x.req.reduce_only = false;
    x.lim.max_open_positions = 0;
    x.use.open_positions = 1000;
    expect_allowed(&x);
}

Test(risk, position_notional_refuses_above_and_allows_at_the_limit)
{
    struct fixture x;
    fx_init(&x);
    x.use.symbol_has_position = true;
    x.use.open_positions = 1;
    x.use.symbol_notional = D("900");
    x.use.total_exposure = D("900");
    x.req.notional = D("100");
    expect_allowed(&x); /* 900 + 100 = 1000: at the limit */
    x.req.notional = D("100.00000001");
    expect_refused(&x, "max_position_notional");
    cr_expect(strstr(x.out.detail, "900") != NULL && strstr(x.out.detail, "100.00000001") != NULL &&
                  strstr(x.out.detail, "1000") != NULL,
              "%s", x.out.detail);
    x.req.reduce_only = true;
    expect_allowed(&x);
    x.req.reduce_only = false;
    x.lim.max_position_notional = D("0");
    expect_allowed(&x);
}

Test(risk, total_exposure_refuses_above_and_allows_at_the_limit)
{
    struct fixture x;
    fx_init(&x);
    x.lim.max_position_notional = D("0");
    x.use.open_positions = 2;
    x.use.total_exposure = D("2900");
    x.req.notional = D("100");
    expect_allowed(&x);
    x.req.notional = D("100.00000001");
    expect_refused(&x, "max_total_exposure");
    cr_expect(strstr(x.out.detail, "2900") != NULL && strstr(x.out.detail, "3000") != NULL, "%s",
              x.out.detail);
    x.req.reduce_only = true;
    expect_allowed(&x);
    x.req.reduce_only = false;
    x.lim.max_total_exposure = D("0");
    expect_allowed(&x);
}

Test(risk, a_sum_beyond_int64_is_above_the_limit)
{
    struct fixture x;
    fx_init(&x);
    x.lim.max_position_notional = D("0");
    x.use.total_exposure = cq_dec_make(INT64_MAX, 0);
    x.req.notional = D("1");
    expect_refused(&x, "max_total_exposure");
}

Test(risk, all_limits_zero_is_no_limit)
{
    struct fixture x;
    fx_init(&x);
    memset(&x.lim, 0, sizeof(x.lim));
    x.use.open_positions = 1000;
    x.use.orders_last_minute = 1000;
    x.use.daily_realized_pnl = D("-1000000");
    x.use.symbol_notional = D("1000000");
    x.use.total_exposure = D("1000000");
    x.req.notional = D("1000000");
    expect_allowed(&x);
}

/* Everything refuses; switching the rules off one by one, in risk.h's order,
 * must name each in turn. */
Test(risk, the_first_refusing_rule_in_order_wins)
{
    static const char *const order[] = {
        "kill_switch",           "symbol_quarantined",    "trading_paused",
        "daily_loss_limit",      "max_orders_per_minute", "max_open_positions",
        "max_position_notional", "max_total_exposure",
    };
    struct fixture x;
    fx_init(&x);
    x.lim.kill_switch = true;
    x.use.symbol_quarantined = true;
    x.lim.trading_paused = true;
    x.use.daily_realized_pnl = D("-500");
    x.use.orders_last_minute = 10;
    x.use.open_positions = 3;
    x.use.symbol_notional = D("1000");
    x.use.total_exposure = D("3000");
    for (size_t i = 0; i < CQ_ARRAY_LEN(order); i++) {
        expect_refused(&x, order[i]);
        switch (i) {
        case 0:
            x.lim.kill_switch = false;
            break;
        case 1:
            x.use.symbol_quarantined = false;
            break;
        case 2:
            x.lim.trading_paused = false;
            break;
        case 3:
            x.use.daily_realized_pnl = D("0");
            break;
        case 4:
            x.use.orders_last_minute = 0;
            break;
        case 5:
            x.use.open_positions = 0;
            break;
        case 6:
            x.use.symbol_notional = D("0");
            break;
        default:
            x.use.total_exposure = D("0");
            break;
        }
    }
    expect_allowed(&x);
}

Test(risk, a_null_symbol_still_answers)
{
    struct fixture x;
    fx_init(&x);
    x.req.symbol = NULL;
    x.lim.kill_switch = true;
    expect_refused(&x, "kill_switch");
}
