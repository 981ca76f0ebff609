/*
 * log-int.h — private to the log module and its tests.
 *
 * cq_log_writer_main() switches the logger from synchronous writes to the
 * queue when it starts running, which is some time after pthread_create()
 * returns. Tests that need the queue path (e.g. to fill it) wait for this.
 * Any thread.
 */
#ifndef CQ_LOG_INT_H
#define CQ_LOG_INT_H

#include <stdbool.h>

/* True while a writer thread is inside cq_log_writer_main (lines are queued). */
bool cq_log__writer_running(void);

#endif /* CQ_LOG_INT_H */
