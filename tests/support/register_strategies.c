/*
 * register_strategies.c — for a test program that loads a config: hands
 * ARES's strategy registry to the config layer before main() runs, as
 * coinquantd's main() does first thing (core checks CQ_STRATEGY only through
 * the check ARES registers, cq/config.h). tests/meson.build links it, with
 * the ARES library, into the tests that load a config.
 */
#include "cq/strategy.h"

__attribute__((constructor)) static void register_strategies(void)
{
    cq_strategy_register_config();
}
