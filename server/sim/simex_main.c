/*
 * simex_main.c — the `coinquant-simex` command: a Binance-compatible spot
 * exchange on loopback for tests, drills and third-party clients.
 *
 *   coinquant-simex [--bind 127.0.0.1] [--rest-port 0] [--ws-port 0]
 *                   [--symbols BTCUSDT,ETHUSDT] [--data PATH] [--speed N|max]
 *                   [--seed N] [--api-key K]
 *                   [--api-secret-file F | --api-secret S] [--control-token-file F]
 *                   [--balances USDT=10000,BTC=0] [--fees MAKER_BPS,TAKER_BPS]
 *                   [--state FILE] [--weight-limit N] [--order-limit-10s N]
 *
 * Secrets: the HMAC secret comes from --api-secret-file F (a regular file of
 * ours, mode 0600 or stricter), else the environment (CQ_SIM_API_SECRET),
 * else --api-secret S (visible in ps: kept for old scripts, warned about and
 * overwritten in argv once read), else the documented local default. The
 * /_sim/ control token likewise from --control-token-file F or
 * CQ_SIM_CONTROL_TOKEN (none: /_sim/ is open to loopback peers). Both
 * variables are removed from the environment (and their bytes wiped) once
 * read, so children and /proc/PID/environ do not see them.
 *
 * On start it prints one JSON line to stdout:
 *   {"event":"listening","rest":"http://127.0.0.1:P","ws":"ws://127.0.0.1:Q"}
 * and runs until SIGTERM or SIGINT (saving --state). Exit codes: 0 clean
 * stop, 1 start failure, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq/log.h"
#include "cq/market.h"
#include "cq/sim.h"

#define MAX_BALANCES 64
/* A secret or token file holds one line; anything longer is not one. */
#define SECRET_FILE_MAX_BYTES 4096
#define ENV_API_SECRET "CQ_SIM_API_SECRET"
#define ENV_CONTROL_TOKEN "CQ_SIM_CONTROL_TOKEN"

static void usage(FILE *out)
{
    fputs("usage: coinquant-simex [--bind ADDR] [--rest-port P] [--ws-port Q]\n"
          "         [--symbols BTCUSDT,ETHUSDT] [--data PATH] [--speed N|max] [--seed N]\n"
          "         [--book-recording FILE[,FILE...]] [--order-latency-ms MS]\n"
          "         [--response-latency-ms MS]\n"
          "         [--api-key K] [--api-secret-file F] [--control-token-file F]\n"
          "         [--balances USDT=10000,BTC=0]\n"
          "         [--fees MAKER_BPS,TAKER_BPS] [--state FILE]\n"
          "         [--weight-limit N] [--order-limit-10s N]\n"
          "         [--queue-model conservative|probabilistic|none] [--queue-power N]\n"
          "         [--refill change|net]\n"
          "The HMAC secret: --api-secret-file F (mode 0600) or CQ_SIM_API_SECRET;\n"
          "--api-secret S still works but shows in ps. The /_sim/ control token:\n"
          "--control-token-file F (mode 0600) or CQ_SIM_CONTROL_TOKEN.\n"
          "Ports 0 (the default) are ephemeral. Defaults: 127.0.0.1, BTCUSDT,ETHUSDT,\n"
          "a synthetic market (seed 1), speed 1, fees 10,10, balances " CQ_SIM_DEFAULT_BALANCES
          ",\n"
          "and the documented local-only API key and secret (see docs/SIMEX.md).\n",
          out);
}

static void wipe(char *s)
{
    if (s == NULL) {
        return;
    }
    volatile char *v = s;
    while (*v != '\0') {
        *v++ = '\0';
    }
}

static void free_secret(char *s)
{
    wipe(s);
    free(s);
}

/* One secret line from a file only we can read: a regular file (no symlink,
 * FIFO or device), owned by the effective user, no group or other mode bits.
 * Trailing CR/LF/space stripped. NULL with the problem and its fix on stderr. */
static char *read_secret_file(const char *flag, const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fprintf(stderr, "coinquant-simex: %s %s: %s (give a regular file of yours, mode 0600)\n",
                flag, path, e == ELOOP ? "is a symbolic link, which is refused" : strerror(e));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    const char *problem = NULL;
    if (fstat(fd, &st) != 0) {
        problem = strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        problem = "is not a regular file";
    } else if (st.st_uid != geteuid()) {
        problem = "is owned by another user (chown it to the user that runs the simulator)";
    } else if ((st.st_mode & 077) != 0) {
        fprintf(stderr,
                "coinquant-simex: %s %s is readable or writable by group or others (mode %03o): "
                "run chmod 600 %s\n",
                flag, path, (unsigned)(st.st_mode & 0777), path);
        close(fd);
        return NULL;
    } else if (st.st_size > SECRET_FILE_MAX_BYTES) {
        problem = "is larger than 4096 bytes: it should hold the secret on one line";
    } else {
        buf = calloc(1, SECRET_FILE_MAX_BYTES + 2);
        size_t got = 0;
        while (buf != NULL && got <= SECRET_FILE_MAX_BYTES) {
            ssize_t n = read(fd, buf + got, SECRET_FILE_MAX_BYTES + 1 - got);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                problem = strerror(errno);
                break;
            }
            if (n == 0) {
                break;
            }
            got += (size_t)n;
        }
        if (buf == NULL) {
            problem = "out of memory";
        } else if (problem == NULL && got > SECRET_FILE_MAX_BYTES) {
            problem = "is larger than 4096 bytes: it should hold the secret on one line";
        }
        while (problem == NULL && got > 0 &&
               (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' ' ||
                buf[got - 1] == '\t')) {
            buf[--got] = '\0';
        }
        if (problem == NULL && got == 0) {
            problem = "is empty: write the secret into it";
        }
        if (problem == NULL && strlen(buf) != got) {
            problem = "holds a NUL byte: write the secret as text on one line";
        }
    }
    close(fd);
    if (problem != NULL) {
        fprintf(stderr, "coinquant-simex: %s %s %s\n", flag, path, problem);
        free_secret(buf);
        return NULL;
    }
    return buf;
}

/* Take a secret out of the environment: copy it, wipe its bytes (which
 * /proc/PID/environ shows even after unsetenv) and remove the variable.
 * NULL when unset or empty; *oom set when the copy failed. */
static char *take_env_secret(const char *name, bool *oom)
{
    char *v = getenv(name);
    if (v == NULL) {
        return NULL;
    }
    char *copy = v[0] != '\0' ? strdup(v) : NULL;
    if (v[0] != '\0' && copy == NULL) {
        *oom = true;
    }
    /* getenv points just past "NAME=" inside the entry: wipe the whole entry
     * once it is out of environ (libc never frees initial or putenv'd
     * entries), so neither name nor value stays in /proc/PID/environ. */
    size_t name_len = strlen(name);
    char *entry = v - name_len - 1;
    wipe(v);
    unsetenv(name);
    if (memcmp(entry, name, name_len) == 0 && entry[name_len] == '=') {
        wipe(entry);
    }
    return copy;
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
    const char *secret_file = NULL;
    const char *token_file = NULL;
    char *secret_arg = NULL; /* owned copy of --api-secret */
    char *secret = NULL;     /* owned: whichever source won */
    char *token = NULL;      /* owned */
    bool oom = false;
    /* Out of the environment first, whatever else happens below. */
    char *env_secret = take_env_secret(ENV_API_SECRET, &oom);
    char *env_token = take_env_secret(ENV_CONTROL_TOKEN, &oom);
    int rc = 2;
    if (oom) {
        fprintf(stderr, "coinquant-simex: out of memory reading the environment\n");
        rc = 1;
        goto out;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        if (v == NULL) {
            fprintf(stderr, "coinquant-simex: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            goto out;
        }
        i++;
        if (strcmp(a, "--bind") == 0) {
            o.bind = v;
        } else if (strcmp(a, "--rest-port") == 0 || strcmp(a, "--ws-port") == 0) {
            if (parse_u64(a, v, 65535, &n) < 0) {
                goto out;
            }
            *(strcmp(a, "--rest-port") == 0 ? &o.rest_port : &o.ws_port) = (int)n;
        } else if (strcmp(a, "--symbols") == 0) {
            symbols_arg = v;
        } else if (strcmp(a, "--data") == 0) {
            o.data_path = v;
        } else if (strcmp(a, "--book-recording") == 0) {
            o.book_recording = v;
        } else if (strcmp(a, "--order-latency-ms") == 0 ||
                   strcmp(a, "--response-latency-ms") == 0) {
            if (parse_u64(a, v, CQ_SIM_LATENCY_MS_MAX, &n) < 0) {
                goto out;
            }
            *(strcmp(a, "--order-latency-ms") == 0 ? &o.order_latency_ms : &o.response_latency_ms) =
                (uint32_t)n;
        } else if (strcmp(a, "--speed") == 0) {
            if (strcmp(v, "max") == 0) {
                o.speed_max = true;
            } else if (parse_u64(a, v, 1000000, &n) < 0 || n == 0) {
                fprintf(stderr, "coinquant-simex: --speed is 1..1000000 or max\n");
                goto out;
            } else {
                o.speed = (uint32_t)n;
            }
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_u64(a, v, UINT64_MAX, &o.seed) < 0) {
                goto out;
            }
        } else if (strcmp(a, "--api-key") == 0) {
            o.api_key = v;
        } else if (strcmp(a, "--api-secret") == 0) {
            free_secret(secret_arg);
            secret_arg = strdup(v);
            wipe(argv[i]); /* gone from ps from now on; it was visible until here */
            if (secret_arg == NULL) {
                fprintf(stderr, "coinquant-simex: out of memory\n");
                rc = 1;
                goto out;
            }
        } else if (strcmp(a, "--api-secret-file") == 0) {
            secret_file = v;
        } else if (strcmp(a, "--control-token-file") == 0) {
            token_file = v;
        } else if (strcmp(a, "--balances") == 0) {
            balances_arg = v;
        } else if (strcmp(a, "--fees") == 0) {
            char maker[16], taker[16];
            const char *comma = strchr(v, ',');
            if (comma == NULL || (size_t)(comma - v) >= sizeof(maker) ||
                strlen(comma + 1) >= sizeof(taker)) {
                fprintf(stderr, "coinquant-simex: --fees is MAKER_BPS,TAKER_BPS, e.g. 10,10\n");
                goto out;
            }
            memcpy(maker, v, (size_t)(comma - v));
            maker[comma - v] = '\0';
            /* fits: strlen(comma + 1) < sizeof(taker) was checked above */
            cq_strlcpy(taker, comma + 1, sizeof(taker));
            uint64_t mk, tk;
            if (parse_u64("--fees maker", maker, 10000, &mk) < 0 ||
                parse_u64("--fees taker", taker, 10000, &tk) < 0) {
                goto out;
            }
            o.maker_bps = (unsigned)mk;
            o.taker_bps = (unsigned)tk;
        } else if (strcmp(a, "--state") == 0) {
            o.state_path = v;
        } else if (strcmp(a, "--weight-limit") == 0) {
            if (parse_u64(a, v, 1000000, &n) < 0) {
                goto out;
            }
            o.weight_limit_1m = (uint32_t)n;
        } else if (strcmp(a, "--queue-model") == 0) {
            o.queue_model = v; /* checked by cq_sim_new, which names the choices */
        } else if (strcmp(a, "--refill") == 0) {
            o.refill = v;
        } else if (strcmp(a, "--queue-power") == 0) {
            if (parse_u64(a, v, 4, &n) < 0) {
                goto out;
            }
            if (n == 0) {
                fprintf(stderr, "coinquant-simex: --queue-power is 1 to 4\n");
                goto out;
            }
            o.queue_power = (unsigned)n;
        } else if (strcmp(a, "--order-limit-10s") == 0) {
            if (parse_u64(a, v, 1000000, &n) < 0) {
                goto out;
            }
            o.order_limit_10s = (uint32_t)n;
        } else {
            fprintf(stderr, "coinquant-simex: unknown option %s\n", a);
            usage(stderr);
            goto out;
        }
    }

    if (secret_file != NULL && secret_arg != NULL) {
        fprintf(stderr, "coinquant-simex: give --api-secret-file or --api-secret, not both\n");
        goto out;
    }
    if (secret_file != NULL) {
        secret = read_secret_file("--api-secret-file", secret_file);
        if (secret == NULL) {
            goto out;
        }
    } else if (env_secret != NULL) {
        secret = env_secret;
        env_secret = NULL;
        if (secret_arg != NULL) {
            fprintf(stderr, "coinquant-simex: both " ENV_API_SECRET " and --api-secret are set: "
                            "using the environment\n");
        }
    } else if (secret_arg != NULL) {
        secret = secret_arg;
        secret_arg = NULL;
        fprintf(stderr,
                "coinquant-simex: warning: --api-secret is visible to other users (ps) "
                "while the simulator starts; use --api-secret-file F or " ENV_API_SECRET "\n");
    }
    o.api_secret = secret;
    if (token_file != NULL) {
        token = read_secret_file("--control-token-file", token_file);
        if (token == NULL) {
            goto out;
        }
    } else {
        token = env_token;
        env_token = NULL;
    }
    o.control_token = token;

    /* Symbols: split the comma list into a bounded array. */
    char symbol_buf[CQ_MAX_SYMBOLS][CQ_SYMBOL_LEN];
    const char *symbols[CQ_MAX_SYMBOLS];
    size_t n_symbols = 0;
    for (const char *p = symbols_arg; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len > CQ_SYMBOL_MAX_CHARS) {
            fprintf(stderr,
                    "coinquant-simex: --symbols: '%.*s' is %zu characters; symbol names are at "
                    "most %d characters (CQ_SYMBOL_MAX_CHARS), e.g. BTCUSDT\n",
                    (int)len, p, len, CQ_SYMBOL_MAX_CHARS);
            goto out;
        }
        if (len == 0 || n_symbols >= CQ_MAX_SYMBOLS) {
            fprintf(stderr, "coinquant-simex: --symbols '%s' is not a list of 1-%d symbols\n",
                    symbols_arg, CQ_MAX_SYMBOLS);
            goto out;
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
    struct cq_sim_balance balances[MAX_BALANCES];
    size_t n_balances = 0;
    if (cq_sim_parse_balances(balances_arg, balances, MAX_BALANCES, &n_balances, &err) < 0) {
        fprintf(stderr, "coinquant-simex: --balances: %s (%s)\n", err.message, err.hint);
        goto out;
    }
    o.balances = balances;
    o.n_balances = n_balances;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = true,
                                .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 0,
                                .clock = NULL};
    if (cq_log_open(&lo, &err) < 0) {
        fprintf(stderr, "coinquant-simex: %s\n", err.message);
        rc = 1;
        goto out;
    }
    struct cq_sim *sim = cq_sim_new(&o, &err);
    /* cq_sim_new copied (and registered for redaction) the secrets */
    free_secret(secret);
    free_secret(token);
    secret = token = NULL;
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
    cq_log_info("simex", "stopping",
                json_pack("{s:s}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM"),
                "stopping the simulator");
    cq_sim_free(sim);
    cq_log_close();
    return 0;

out:
    free_secret(secret_arg);
    free_secret(secret);
    free_secret(token);
    free_secret(env_secret);
    free_secret(env_token);
    return rc;
}
