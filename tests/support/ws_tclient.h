/*
 * ws_tclient.h — a small libwebsockets test client for the simulator's WS
 * server tests: its own lws context and service thread, every received
 * message kept (up to TC_MSGS_MAX) for the test thread to read in order,
 * and text frames queued for sending. Failures to set up are Criterion
 * assertions.
 *
 * Threads: the test thread calls everything here; the client's own thread
 * only runs lws_service and the callback.
 */
#ifndef CQ_TEST_WS_TCLIENT_H
#define CQ_TEST_WS_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define TC_MSGS_MAX 50000 /* messages kept; later ones are dropped */
#define TC_OUT_MAX 64     /* frames queued for sending */

struct tclient;

/* Connect to ws://127.0.0.1:port<path>; the handshake completes (or fails)
 * in the background: see tc_wait_established. */
struct tclient *tc_open(int port, const char *path);
void tc_free(struct tclient *tc);

/* True once the handshake completed; false on a refused connection or
 * after timeout_ms. */
bool tc_wait_established(struct tclient *tc, int timeout_ms);
bool tc_wait_closed(struct tclient *tc, int timeout_ms);
bool tc_is_closed(struct tclient *tc);
/* The code in the server's close frame, 0 if none came. */
int tc_close_code(struct tclient *tc);

size_t tc_count(struct tclient *tc);
/* Wait until at least n messages arrived (or closed, or timeout); returns
 * how many there are. */
size_t tc_wait_count(struct tclient *tc, size_t n, int timeout_ms);
/* Message i parsed (a new reference), waiting for it up to timeout_ms; NULL
 * if it did not come. A message that is not JSON fails the test. */
json_t *tc_msg(struct tclient *tc, size_t i, int timeout_ms);
/* Message *cursor, which must be a JSON object, waiting up to timeout_ms;
 * the cursor moves past it. NULL on timeout or once closed with nothing
 * more queued. */
json_t *tc_try_next(struct tclient *tc, size_t *cursor, int timeout_ms);
/* The last message received, copied into buf (for failure messages). */
void tc_last(struct tclient *tc, char *buf, size_t len);

/* Queue one text frame. */
void tc_send(struct tclient *tc, const char *text);
/* The next control reply ({"result"} or {"error"}) after *cursor; data
 * messages are skipped. NULL on timeout. */
json_t *tc_next_reply(struct tclient *tc, size_t *cursor, int timeout_ms);
/* Send a control message and return its reply (within 3 s, or fail). */
json_t *tc_request(struct tclient *tc, size_t *cursor, const char *text);

#endif /* CQ_TEST_WS_TCLIENT_H */
