/*
 * strategy_config.c — hands the strategy registry to the config layer.
 *
 * Core sits below ARES and does not link the strategies, so it cannot check
 * CQ_STRATEGY / CQ_STRATEGY_PARAMS itself: it declares a check slot
 * (cq_config_set_strategy_check, cq/config.h) and ARES fills it with
 * cq_strategy_params_check. A program calls cq_strategy_register_config()
 * before loading its config (coinquantd's main() does so first thing).
 */
#include "cq/config.h"
#include "cq/strategy.h"

static int check_params(const char *name, const char *params, char *why, size_t why_len, char *hint,
                        size_t hint_len)
{
    double values[CQ_STRATEGY_PARAMS_MAX];
    return cq_strategy_params_check(name, params, values, why, why_len, hint, hint_len);
}

void cq_strategy_register_config(void)
{
    cq_config_set_strategy_check(check_params);
}
