/*
 * ws_tclient.c — the libwebsockets test client (see ws_tclient.h).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "support/ws_tclient.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct tclient {
    struct lws_context *ctx;
    struct lws *wsi;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    bool established, closed, conn_error;
    int close_code; /* from the server's close frame, 0 if none */
    char **msgs;
    size_t n_msgs;
    char *out[TC_OUT_MAX];
    size_t n_out;
    bool want_close;
    /* service thread only */
    char *rx;
    size_t rx_len;
};

static void tc_signal(struct tclient *tc)
{
    pthread_cond_broadcast(&tc->cv);
}

static int tc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct tclient *tc = lws_context_user(lws_get_context(wsi));
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        pthread_mutex_lock(&tc->mu);
        tc->established = true;
        tc_signal(tc);
        pthread_mutex_unlock(&tc->mu);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        pthread_mutex_lock(&tc->mu);
        tc->conn_error = true;
        tc->closed = true;
        tc->wsi = NULL;
        tc_signal(tc);
        pthread_mutex_unlock(&tc->mu);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        char *rx = realloc(tc->rx, tc->rx_len + len + 1);
        cr_assert_not_null(rx);
        tc->rx = rx;
        memcpy(tc->rx + tc->rx_len, in, len);
        tc->rx_len += len;
        tc->rx[tc->rx_len] = '\0';
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            pthread_mutex_lock(&tc->mu);
            if (tc->n_msgs < TC_MSGS_MAX) {
                tc->msgs[tc->n_msgs++] = tc->rx;
                tc->rx = NULL;
            }
            tc_signal(tc);
            pthread_mutex_unlock(&tc->mu);
            free(tc->rx);
            tc->rx = NULL;
            tc->rx_len = 0;
        }
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        pthread_mutex_lock(&tc->mu);
        if (len >= 2) {
            const unsigned char *p = in;
            tc->close_code = (p[0] << 8) | p[1];
        }
        pthread_mutex_unlock(&tc->mu);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        pthread_mutex_lock(&tc->mu);
        tc->closed = true;
        tc->wsi = NULL;
        tc_signal(tc);
        pthread_mutex_unlock(&tc->mu);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        pthread_mutex_lock(&tc->mu);
        if (tc->want_close) {
            pthread_mutex_unlock(&tc->mu);
            return -1;
        }
        char *text = NULL;
        if (tc->n_out > 0) {
            text = tc->out[0];
            memmove(&tc->out[0], &tc->out[1], (tc->n_out - 1) * sizeof tc->out[0]);
            tc->n_out--;
        }
        bool more = tc->n_out > 0;
        pthread_mutex_unlock(&tc->mu);
        if (text != NULL) {
            size_t n = strlen(text);
            unsigned char *buf = malloc(LWS_PRE + n);
            cr_assert_not_null(buf);
            memcpy(buf + LWS_PRE, text, n);
            int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
            free(buf);
            free(text);
            if (w < 0) {
                return -1;
            }
        }
        if (more) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (tc != NULL) {
            pthread_mutex_lock(&tc->mu);
            bool go = tc->wsi != NULL && tc->established && (tc->n_out > 0 || tc->want_close);
            struct lws *w = tc->wsi;
            pthread_mutex_unlock(&tc->mu);
            if (go) {
                lws_callback_on_writable(w);
            }
        }
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols tc_protocols[] = {
    {"tc", tc_callback, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *tc_main(void *arg)
{
    struct tclient *tc = arg;
    while (!atomic_load(&tc->stop)) {
        if (lws_service(tc->ctx, 0) < 0) {
            break;
        }
    }
    return NULL;
}

struct tclient *tc_open(int port, const char *path)
{
    struct tclient *tc = calloc(1, sizeof *tc);
    cr_assert_not_null(tc);
    pthread_mutex_init(&tc->mu, NULL);
    pthread_cond_init(&tc->cv, NULL);
    tc->msgs = calloc(TC_MSGS_MAX, sizeof *tc->msgs);
    cr_assert_not_null(tc->msgs);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = tc_protocols;
    info.user = tc;
    tc->ctx = lws_create_context(&info);
    cr_assert_not_null(tc->ctx);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = tc->ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = path;
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.local_protocol_name = "tc";
    ci.pwsi = &tc->wsi;
    if (lws_client_connect_via_info(&ci) == NULL) {
        tc->conn_error = true;
        tc->closed = true;
    }
    cr_assert_eq(pthread_create(&tc->thread, NULL, tc_main, tc), 0);
    return tc;
}

void tc_free(struct tclient *tc)
{
    if (tc == NULL) {
        return;
    }
    atomic_store(&tc->stop, true);
    lws_cancel_service(tc->ctx);
    pthread_join(tc->thread, NULL);
    lws_context_destroy(tc->ctx);
    for (size_t i = 0; i < tc->n_msgs; i++) {
        free(tc->msgs[i]);
    }
    for (size_t i = 0; i < tc->n_out; i++) {
        free(tc->out[i]);
    }
    free(tc->msgs);
    free(tc->rx);
    pthread_mutex_destroy(&tc->mu);
    pthread_cond_destroy(&tc->cv);
    free(tc);
}

static void tc_wait_until(struct tclient *tc, int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    if (left <= 0) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
    ts.tv_sec += left / 1000 + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&tc->cv, &tc->mu, &ts);
}

/* True once the handshake completed; false on a refused connection. */
bool tc_wait_established(struct tclient *tc, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&tc->mu);
    while (!tc->established && !tc->closed && mono_ms() < deadline) {
        tc_wait_until(tc, deadline);
    }
    bool ok = tc->established && !tc->closed;
    pthread_mutex_unlock(&tc->mu);
    return ok;
}

bool tc_wait_closed(struct tclient *tc, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&tc->mu);
    while (!tc->closed && mono_ms() < deadline) {
        tc_wait_until(tc, deadline);
    }
    bool closed = tc->closed;
    pthread_mutex_unlock(&tc->mu);
    return closed;
}

bool tc_is_closed(struct tclient *tc)
{
    pthread_mutex_lock(&tc->mu);
    bool closed = tc->closed;
    pthread_mutex_unlock(&tc->mu);
    return closed;
}

size_t tc_count(struct tclient *tc)
{
    pthread_mutex_lock(&tc->mu);
    size_t n = tc->n_msgs;
    pthread_mutex_unlock(&tc->mu);
    return n;
}

size_t tc_wait_count(struct tclient *tc, size_t n, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&tc->mu);
    while (tc->n_msgs < n && !tc->closed && mono_ms() < deadline) {
        tc_wait_until(tc, deadline);
    }
    size_t got = tc->n_msgs;
    pthread_mutex_unlock(&tc->mu);
    return got;
}

/* Message i parsed (new reference), waiting for it up to timeout_ms. */
json_t *tc_msg(struct tclient *tc, size_t i, int timeout_ms)
{
    if (tc_wait_count(tc, i + 1, timeout_ms) <= i) {
        return NULL;
    }
    pthread_mutex_lock(&tc->mu);
    json_error_t jerr;
    json_t *v = json_loads(tc->msgs[i], 0, &jerr);
    cr_assert_not_null(v, "message %zu is not JSON (%s): %s", i, jerr.text, tc->msgs[i]);
    pthread_mutex_unlock(&tc->mu);
    return v;
}

void tc_send(struct tclient *tc, const char *text)
{
    pthread_mutex_lock(&tc->mu);
    cr_assert_lt(tc->n_out, (size_t)TC_OUT_MAX);
    tc->out[tc->n_out] = strdup(text);
    cr_assert_not_null(tc->out[tc->n_out]);
    tc->n_out++;
    pthread_mutex_unlock(&tc->mu);
    lws_cancel_service(tc->ctx);
}

static bool is_reply(const json_t *m)
{
    return json_is_object(m) &&
           (json_object_get(m, "result") != NULL || json_object_get(m, "error") != NULL);
}

/* The next control reply after *cursor (data messages are skipped). */
json_t *tc_next_reply(struct tclient *tc, size_t *cursor, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - mono_ms();
        json_t *m = tc_msg(tc, *cursor, left > 0 ? (int)left : 0);
        if (m == NULL) {
            return NULL;
        }
        (*cursor)++;
        if (is_reply(m)) {
            return m;
        }
        json_decref(m);
    }
}

/* Send a control message and return its reply. */
json_t *tc_request(struct tclient *tc, size_t *cursor, const char *text)
{
    tc_send(tc, text);
    json_t *r = tc_next_reply(tc, cursor, 3000);
    cr_assert_not_null(r, "no reply to %s", text);
    return r;
}

int tc_close_code(struct tclient *tc)
{
    pthread_mutex_lock(&tc->mu);
    int code = tc->close_code;
    pthread_mutex_unlock(&tc->mu);
    return code;
}

json_t *tc_try_next(struct tclient *tc, size_t *cursor, int timeout_ms)
{
    json_t *v = tc_msg(tc, *cursor, timeout_ms);
    if (v == NULL) {
        return NULL;
    }
    cr_assert(json_is_object(v), "message %zu is not an object", *cursor);
    (*cursor)++;
    return v;
}

void tc_last(struct tclient *tc, char *buf, size_t len)
{
    pthread_mutex_lock(&tc->mu);
    snprintf(buf, len, "%s", tc->n_msgs > 0 ? tc->msgs[tc->n_msgs - 1] : "(none)");
    pthread_mutex_unlock(&tc->mu);
}
