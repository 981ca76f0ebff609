/*
 * lws_log.h — routes libwebsockets' own log lines into coinquant's log.
 *
 * libwebsockets has one process-wide log hook. Every lws user here (the
 * exchange WebSocket client, the simulator's WS server) calls
 * cq_lws_log_route() before creating its context; the first call installs
 * the hook, later calls do nothing. Any thread.
 *
 * lws errors become warn events "lws_log" (service "lws"): they are mostly
 * about one connection, which the caller also reports in its own terms;
 * lws warnings become debug events.
 */
#ifndef CQ_LWS_LOG_H
#define CQ_LWS_LOG_H

void cq_lws_log_route(void);

#endif /* CQ_LWS_LOG_H */
