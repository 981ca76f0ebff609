/*
 * simex_main.c — the `coinquant-simex` command: a Binance-compatible spot
 * exchange on loopback for tests, drills and third-party clients.
 *
 *   coinquant-simex [--bind 127.0.0.1] [--rest-port 0] [--ws-port 0]
 *                   [--symbols BTCUSDT,ETHUSDT] [--data PATH] [--speed N|max]
 *                   [--seed N] [--api-key K] [--api-secret S]
 *                   [--balances USDT=10000,BTC=0] [--fees MAKER_BPS,TAKER_BPS]
 *                   [--state FILE] [--weight-limit N] [--order-limit-10s N]
 *
 * On start it prints one JSON line to stdout:
 *   {"event":"listening","rest":"http://127.0.0.1:P","ws":"ws://127.0.0.1:Q"}
 * and runs until SIGTERM or SIGINT (saving --state). Exit codes: 0 clean
 * stop, 1 start failure, 2 usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/log.h"
#include "cq/sim.h"

#define MAX_SYMBOLS 32
#define MAX_BALANCES 64

static void usage(FILE *out)
{
    fputs("usage: coinquant-simex [--bind ADDR] [--rest-port P] [--ws-port Q]\n"
          "         [--symbols BTCUSDT,ETHUSDT] [--data PATH] [--speed N|max] [--seed N]\n"
          "         [--api-key K] [--api-secret S] [--balances USDT=10000,BTC=0]\n"
          "         [--fees MAKER_BPS,TAKER_BPS] [--state FILE]\n"
          "         [--weight-limit N] [--order-limit-10s N]\n"
          "Ports 0 (the default) are ephemeral. Defaults: 127.0.0.1, BTCUSDT,ETHUSDT,\n"
          "a synthetic market (seed 1), speed 1, fees 10,10, balances " CQ_SIM_DEFAULT_BALANCES
          ",\n"
          "and the documented local-only API key and secret (see docs/SIMEX.md).\n",
          out);
}

static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max) {
        fprintf(stderr, "coinquant-simex: %s '%s' is not a whole number from 0 to %llu\n", flag, s,
                (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct cq_sim_options o;
    memset(&o, 0, sizeof(o));
    o.bind = "127.0.0.1";
    o.speed = 1;
    o.seed = 1;
    o.maker_bps = 10;
    o.taker_bps = 10;
    const char *symbols_arg = "BTCUSDT,ETHUSDT";
    const char *balances_arg = CQ_SIM_DEFAULT_BALANCES;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "coinquant-simex: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--bind") == 0) {
            o.bind = v;
        } else if (strcmp(a, "--rest-port") == 0 || strcmp(a, "--ws-port") == 0) {
            if (parse_u64(a, v, 65535, &n) < 0) {
                return 2;
            }
            *(strcmp(a, "--rest-port") == 0 ? &o.rest_port : &o.ws_port) = (int)n;
        } else if (strcmp(a, "--symbols") == 0) {
            symbols_arg = v;
        } else if (strcmp(a, "--data") == 0) {
            o.data_path = v;
        } else if (strcmp(a, "--speed") == 0) {
            if (strcmp(v, "max") == 0) {
                o.speed_max = true;
            } else if (parse_u64(a, v, 1000000, &n) < 0 || n == 0) {
                fprintf(stderr, "coinquant-simex: --speed is 1..1000000 or max\n");
                return 2;
            } else {
                o.speed = (uint32_t)n;
            }
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_u64(a, v, UINT64_MAX, &o.seed) < 0) {
                return 2;
            }
        } else if (strcmp(a, "--api-key") == 0) {
            o.api_key = v;
        } else if (strcmp(a, "--api-secret") == 0) {
            o.api_secret = v;
        } else if (strcmp(a, "--balances") == 0) {
            balances_arg = v;
        } else if (strcmp(a, "--fees") == 0) {
            char maker[16], taker[16];
            const char *comma = strchr(v, ',');
            if (comma == NULL || (size_t)(comma - v) >= sizeof(maker) ||
                strlen(comma + 1) >= sizeof(taker)) {
                fprintf(stderr, "coinquant-simex: --fees is MAKER_BPS,TAKER_BPS, e.g. 10,10\n");
                return 2;
            }
            memcpy(maker, v, (size_t)(comma - v));
            maker[comma - v] = '\0';
            cq_strlcpy(taker, comma + 1, sizeof(taker));
            uint64_t mk, tk;
            if (parse_u64("--fees maker", maker, 10000, &mk) < 0 ||
                parse_u64("--fees taker", taker, 10000, &tk) < 0) {
                return 2;
            }
            o.maker_bps = (unsigned)mk;
            o.taker_bps = (unsigned)tk;
        } else if (strcmp(a, "--state") == 0) {
            o.state_path = v;
        } else if (strcmp(a, "--weight-limit") == 0) {
            if (parse_u64(a, v, 1000000, &n) < 0) {
                return 2;
            }
            o.weight_limit_1m = (uint32_t)n;
        } else if (strcmp(a, "--order-limit-10s") == 0) {
            if (parse_u64(a, v, 1000000, &n) < 0) {
                return 2;
            }
            o.order_limit_10s = (uint32_t)n;
        } else {
            fprintf(stderr, "coinquant-simex: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* Symbols: split the comma list into a bounded array. */
    static char symbol_buf[MAX_SYMBOLS][20];
    const char *symbols[MAX_SYMBOLS];
    size_t n_symbols = 0;
    for (const char *p = symbols_arg; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof(symbol_buf[0]) || n_symbols >= MAX_SYMBOLS) {
            fprintf(stderr, "coinquant-simex: --symbols '%s' is not a list of 1-32 symbols\n",
                    symbols_arg);
            return 2;
        }
        memcpy(symbol_buf[n_symbols], p, len);
        symbol_buf[n_symbols][len] = '\0';
        symbols[n_symbols] = symbol_buf[n_symbols];
        n_symbols++;
        p = comma != NULL ? comma + 1 : p + len;
    }
    o.symbols = symbols;
    o.n_symbols = n_symbols;

    struct cq_err err;
    static struct cq_sim_balance balances[MAX_BALANCES];
    size_t n_balances = 0;
    if (cq_sim_parse_balances(balances_arg, balances, MAX_BALANCES, &n_balances, &err) < 0) {
        fprintf(stderr, "coinquant-simex: --balances: %s (%s)\n", err.message, err.hint);
        return 2;
    }
    o.balances = balances;
    o.n_balances = n_balances;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct cq_log_options lo = {.dir = NULL, .to_stderr = true, .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20, .keep = 1, .ring_lines = 0, .clock = NULL};
    if (cq_log_open(&lo, &err) < 0) {
        fprintf(stderr, "coinquant-simex: %s\n", err.message);
        return 1;
    }
    struct cq_sim *sim = cq_sim_new(&o, &err);
    if (sim == NULL || cq_sim_start(sim, &err) < 0) {
        fprintf(stderr, "coinquant-simex: %s%s%s\n", err.message, err.hint[0] ? "; " : "",
                err.hint);
        cq_sim_free(sim);
        cq_log_close();
        return 1;
    }
    printf("{\"event\":\"listening\",\"rest\":\"%s\",\"ws\":\"%s\"}\n", cq_sim_rest_url(sim),
           cq_sim_ws_url(sim));
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    cq_log_info("simex", "stopping", json_pack("{s:s}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM"),
                "stopping the simulator");
    cq_sim_free(sim);
    cq_log_close();
    return 0;
}
