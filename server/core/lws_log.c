/*
 * lws_log.c — the one libwebsockets log hook (see cq/lws_log.h).
 */
#include <pthread.h>
#include <stddef.h>

#include <libwebsockets.h>

#include "cq/common.h"
#include "cq/log.h"
#include "cq/lws_log.h"

#define LWS_LINE_MAX 512

static void lws_log_emit(int level, const char *line)
{
    char buf[LWS_LINE_MAX];
    size_t n = cq_strlcpy(buf, line, sizeof buf);
    if (n >= sizeof buf) {
        n = sizeof buf - 1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        buf[--n] = '\0';
    }
    if (level & LLL_ERR) {
        cq_log_warn("lws", "lws_log", NULL, "%s", buf);
    } else {
        cq_log_debug("lws", "lws_log", NULL, "%s", buf);
    }
}

static pthread_once_t route_once = PTHREAD_ONCE_INIT;

static void route(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

void cq_lws_log_route(void)
{
    pthread_once(&route_once, route);
}
