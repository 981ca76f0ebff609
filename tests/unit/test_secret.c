/* test_secret.c — every long-lived copy of a secret lives in a secret buffer
 * (MADV_DONTDUMP: not in a core dump) and is wiped in a way the compiler
 * cannot drop (issue 9 item 10).
 *
 * How: this executable defines OPENSSL_cleanse, which takes the place of
 * libcrypto's for every caller linked here (cq_secret_free, cq_secret_wipe
 * and the modules). It looks for the watched secret in each range it is
 * asked to wipe, and there, while the memory is still mapped, reads the
 * mapping's VmFlags in /proc/self/smaps ("dd" = MADV_DONTDUMP). A module
 * that frees a copy without wiping it, or wipes it with a memset the
 * optimiser may remove, never shows the secret here; a copy in plain heap
 * memory shows it without "dd". No freed memory is ever read. */
#define _GNU_SOURCE /* memmem, explicit_bzero */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq/api.h"
#include "cq/config.h"
#include "cq/rest.h"
#include "cq/fs.h"
#include "cq/health.h"
#include "cq/log.h"
#include "cq/ws_client.h"
#include "cq/wsapi.h"

/* ---- smaps: is the mapping holding addr marked MADV_DONTDUMP? ---------------- */

static bool smaps_dontdump(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL) {
        return false;
    }
    uintptr_t a = (uintptr_t)addr;
    char line[512];
    bool inside = false;
    bool dd = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            dd = strstr(line, " dd") != NULL;
            break;
        }
    }
    fclose(f);
    return dd;
}

/* ---- the interposed wipe --------------------------------------------------------- */

static const char *g_watched;    /* the secret looked for in wiped ranges */
static int g_wipes_seen;         /* ranges wiped that held it */
static int g_wipes_not_dontdump; /* of those, in memory that a core dump holds */

void OPENSSL_cleanse(void *ptr, size_t len);
void OPENSSL_cleanse(void *ptr, size_t len)
{
    const char *w = g_watched;
    const char *at = w != NULL && ptr != NULL ? memmem(ptr, len, w, strlen(w)) : NULL;
    if (at != NULL) {
        g_wipes_seen++;
        if (!smaps_dontdump(at)) {
            g_wipes_not_dontdump++;
        }
    }
    explicit_bzero(ptr, len);
}

static void watch(const char *secret)
{
    g_watched = secret;
    g_wipes_seen = 0;
    g_wipes_not_dontdump = 0;
}

/* ---- the helper ----------------------------------------------------------------- */

Test(secret, dup_lives_in_dontdump_memory_and_free_wipes_it)
{
    const char *s = "dup-5ecret-0123456789abcdef";
    char *d = cq_secret_dup(s);
    cr_assert_not_null(d);
    cr_assert_str_eq(d, s);
    cr_assert(smaps_dontdump(d), "cq_secret_dup's copy is not MADV_DONTDUMP");
    watch(s);
    cq_secret_free(d);
    cr_assert_eq(g_wipes_seen, 1);
    cr_assert_eq(g_wipes_not_dontdump, 0);
    cq_secret_free(NULL);
    cr_assert_null(cq_secret_dup(NULL));

    /* the length boundary */
    char *big = malloc(CQ_SECRET_DUP_MAX_LEN + 2);
    cr_assert_not_null(big);
    memset(big, 'x', CQ_SECRET_DUP_MAX_LEN + 1);
    big[CQ_SECRET_DUP_MAX_LEN + 1] = '\0';
    cr_assert_null(cq_secret_dup(big), "one byte over CQ_SECRET_DUP_MAX_LEN");
    d = cq_secret_dupn(big, CQ_SECRET_DUP_MAX_LEN);
    cr_assert_not_null(d);
    cr_assert_eq(strlen(d), CQ_SECRET_DUP_MAX_LEN);
    cq_secret_free(d);
    big[CQ_SECRET_DUP_MAX_LEN] = '\0';
    d = cq_secret_dup(big);
    cr_assert_not_null(d, "exactly CQ_SECRET_DUP_MAX_LEN");
    cq_secret_free(d);
    free(big);
    d = cq_secret_dup("");
    cr_assert_not_null(d);
    cr_assert_str_eq(d, "");
    cq_secret_free(d);
}

Test(secret, wipe_goes_through_openssl_cleanse)
{
    char buf[32] = "wipe-me-5ecret";
    watch("wipe-me-5ecret");
    cq_secret_wipe(buf, sizeof(buf));
    cr_assert_eq(g_wipes_seen, 1);
    cr_assert_eq(buf[0], '\0');
    cq_secret_wipe(NULL, 3);
}

/* ---- the config ------------------------------------------------------------------ */

#define CFG_SECRET "cfgS3cretABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop"
#define CFG_KEY "cfgK3yABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstu"
#define CFG_TOKEN "cfgT0kenABCDEFGHIJKLMNOPQRSTUVWXYZ"

static struct cq_config *load_env(char *const *envp, const char *file)
{
    struct cq_config_load_options o = {.file_path = file, .envp = envp};
    struct cq_config_report rep;
    struct cq_config *cfg = cq_config_load(&o, &rep);
    cr_assert_not_null(cfg, "config refused (%zu errors)", rep.n_errors);
    return cfg;
}

Test(secret, config_secret_values_are_not_dumped_and_wiped_when_freed)
{
    char *envp[] = {"CQ_MODE=paper", "BINANCE_API_KEY=" CFG_KEY, "BINANCE_API_SECRET=" CFG_SECRET,
                    "CQ_ADMIN_TOKEN=" CFG_TOKEN, NULL};
    struct cq_config *cfg = load_env(envp, NULL);
    const enum cq_config_key_id ids[] = {CQ_CFG_BINANCE_API_KEY, CQ_CFG_BINANCE_API_SECRET,
                                         CQ_CFG_ADMIN_TOKEN};
    for (size_t i = 0; i < 3; i++) {
        cr_assert(smaps_dontdump(cq_config_str(cfg, ids[i])), "config value %zu is dumped", i);
    }
    cr_assert_str_eq(cq_config_str(cfg, CQ_CFG_BINANCE_API_SECRET), CFG_SECRET);
    watch(CFG_SECRET);
    cq_config_unref(cfg);
    cr_assert_eq(g_wipes_seen, 1, "the config's copy of the secret was freed unwiped");
    cr_assert_eq(g_wipes_not_dontdump, 0);
}

Test(secret, config_file_secret_copies_are_wiped_while_loading)
{
    char path[] = "/tmp/cq-secret-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "BINANCE_API_SECRET=" CFG_SECRET "\n";
    cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    cr_assert_eq(chmod(path, 0600), 0);
    char *envp[] = {"CQ_MODE=paper", NULL};
    watch(CFG_SECRET);
    struct cq_config *cfg = load_env(envp, path);
    /* the file's buffer, the line buffer, the loader's copy */
    cr_assert_eq(g_wipes_seen, 3, "copies wiped while loading: %d", g_wipes_seen);
    cr_assert(smaps_dontdump(cq_config_str(cfg, CQ_CFG_BINANCE_API_SECRET)));
    cq_config_unref(cfg);
    cr_assert_eq(g_wipes_seen, 4);
    unlink(path);
}

/* ---- the clients ----------------------------------------------------------------- */

#define CLI_SECRET "cliS3cretABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop"
#define CLI_KEY "cliK3yABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstu"

Test(secret, rest_client_keeps_key_and_secret_out_of_dumps_and_wipes_them)
{
    struct cq_rest_options o = {
        .base_url = "http://127.0.0.1:9",
        .api_key = CLI_KEY,
        .api_secret = CLI_SECRET,
        .service = "test",
    };
    struct cq_err err;
    struct cq_rest_client *c = cq_rest_client_new(&o, &err);
    cr_assert_not_null(c, "%s", err.message);
    watch(CLI_SECRET);
    cq_rest_client_free(c);
    cr_assert_eq(g_wipes_seen, 1, "the REST client's copy of the secret was not wiped");
    cr_assert_eq(g_wipes_not_dontdump, 0, "the REST client's copy of the secret is dumped");

    c = cq_rest_client_new(&o, &err);
    cr_assert_not_null(c, "%s", err.message);
    watch(CLI_KEY);
    cq_rest_client_free(c);
    /* its own copy (not dumped) and curl's header list (plain heap, wiped) */
    cr_assert_eq(g_wipes_seen, 2, "the REST client's copies of the key wiped: %d", g_wipes_seen);
    cr_assert_eq(g_wipes_not_dontdump, 1, "the REST client's own copy of the key is dumped");
}

Test(secret, wsapi_client_keeps_the_secret_out_of_dumps_and_wipes_it)
{
    struct cq_err err;
    struct cq_ws_loop *loop = cq_ws_loop_new(&err);
    cr_assert_not_null(loop, "%s", err.message);
    struct cq_wsapi_options o = {
        .url = "ws://127.0.0.1:9/ws-api/v3",
        .api_key = CLI_KEY,
        .api_secret = CLI_SECRET,
        .jitter_seed = 7,
    };
    struct cq_wsapi *a = cq_wsapi_new(loop, &o, NULL, &err);
    cr_assert_not_null(a, "%s", err.message);
    watch(CLI_SECRET);
    cq_wsapi_free(a);
    cr_assert_eq(g_wipes_seen, 1, "the WS API client's copy of the secret was not wiped");
    cr_assert_eq(g_wipes_not_dontdump, 0, "the WS API client's copy of the secret is dumped");
    cq_ws_loop_free(loop);
}

/* ---- the log's redaction list and the admin API's token --------------------------- */

Test(secret, log_redaction_copies_are_not_dumped_and_wiped)
{
    const char *s = "logS3cret\"with-a-quote-ABCDEFGHIJKLMNOP";
    cq_log_add_secret(s);
    watch(s);
    cq_log_close();
    cr_assert_eq(g_wipes_seen, 1, "the log's copy of the secret was not wiped");
    cr_assert_eq(g_wipes_not_dontdump, 0, "the log's copy of the secret is dumped");
    /* the escaped form (\") is a second copy */
    cq_log_add_secret(s);
    watch("logS3cret\\\"with-a-quote");
    cq_log_close();
    cr_assert_eq(g_wipes_seen, 1, "the log's escaped copy was not wiped");
    cr_assert_eq(g_wipes_not_dontdump, 0, "the log's escaped copy is dumped");
}

Test(secret, admin_api_token_is_not_dumped_and_wiped)
{
    const char *token = "apiT0kenABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct cq_err err = {0};
    struct cq_health_board *board = cq_health_board_new(NULL, &err);
    cr_assert_not_null(board, "%s", err.message);
    char *envp[] = {"CQ_MODE=paper", NULL};
    struct cq_config_current *current = cq_config_current_new(load_env(envp, NULL));
    cr_assert_not_null(current);
    struct cq_api_options o = {.board = board, .config = current, .token = token};
    struct cq_api *api = cq_api_new(&o, &err);
    cr_assert_not_null(api, "%s", err.message);
    watch(token);
    cq_api_free(api);
    g_watched = NULL;
    cq_config_current_free(current);
    cq_health_board_free(board);
    cr_assert_eq(g_wipes_seen, 1, "the admin API's copy of the token was not wiped");
    cr_assert_eq(g_wipes_not_dontdump, 0, "the admin API's copy of the token is dumped");
}

/* ---- no memset wipes of secrets in the sources ------------------------------------- */

/* A memset right before a free (or before a buffer goes out of scope) is a
 * dead store the compiler may drop (with LTO across files too): a secret is
 * wiped with cq_secret_wipe / OPENSSL_cleanse, or lives in a cq_secret_dup
 * buffer. This fails on any memset( whose destination names a secret. */
static bool names_secret(const char *dest)
{
    static const char *const words[] = {"secret", "token", "api_key", "apikey",    "sig",
                                        "passw",  "hmac",  "cred",    "key_header"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasestr(dest, words[i]) != NULL) {
            return true;
        }
    }
    return false;
}

Test(secret, no_memset_wipes_a_secret_in_server_or_api)
{
    static const char *const dirs[] = {"server",         "server/core",   "server/exchange",
                                       "server/feeder",  "server/trader", "server/ares",
                                       "server/journal", "server/sim",    "api"};
    char bad[2048] = "";
    size_t files = 0;
    for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
        char dpath[512];
        snprintf(dpath, sizeof(dpath), "%s/%s", CQ_SOURCE_DIR, dirs[d]);
        DIR *dir = opendir(dpath);
        cr_assert_not_null(dir, "%s", dpath);
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            size_t n = strlen(de->d_name);
            if (n < 3 || strcmp(de->d_name + n - 2, ".c") != 0) {
                continue;
            }
            char fpath[1024];
            snprintf(fpath, sizeof(fpath), "%s/%s", dpath, de->d_name);
            FILE *f = fopen(fpath, "r");
            cr_assert_not_null(f, "%s", fpath);
            files++;
            char line[1024];
            unsigned no = 0;
            while (fgets(line, sizeof(line), f) != NULL) {
                no++;
                const char *m = strstr(line, "memset(");
                if (m == NULL) {
                    continue;
                }
                char dest[256];
                size_t k = 0;
                for (m += 7; *m != '\0' && *m != ',' && k + 1 < sizeof(dest); m++) {
                    dest[k++] = *m;
                }
                dest[k] = '\0';
                if (names_secret(dest)) {
                    size_t used = strlen(bad);
                    snprintf(bad + used, sizeof(bad) - used, "\n  %s/%s:%u: memset(%s, ...)",
                             dirs[d], de->d_name, no, dest);
                }
            }
            fclose(f);
        }
        closedir(dir);
    }
    cr_assert_gt(files, 20);
    cr_assert_str_eq(bad, "", "secrets wiped with memset (use cq_secret_wipe):%s", bad);
}
