/*
 * tsan_health.c — the health board from several threads: one publisher per
 * service (its record, its freshness, its typed counters), readers of the
 * records, the summaries, the counters and the health files at the same
 * time. Readers check what they copy is whole (the journal counters are
 * published with appends_total == durable_seq: a torn copy differs) and
 * never goes back; at the end every record is the publisher's last.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cq/health.h"
#include "tsan/tsan.h"

#define PUBLISHES 3000

struct board_run {
    struct tsan_t *t;
    struct cq_health_board *board;
    atomic_int publishers_left;
};

struct publisher {
    struct board_run *run;
    enum cq_service_id id;
};

static void *publish_main(void *arg)
{
    struct publisher *p = arg;
    struct cq_health_board *b = p->run->board;
    for (int i = 1; i <= PUBLISHES; i++) {
        /* Readiness flips every 500 publishes: the change is logged too. */
        bool ready = (i / 500) % 2 == 0 || i == PUBLISHES;
        cq_health_set_fresh(b, p->id, (int64_t)i);
        cq_health_publish(
            b, p->id, CQ_HEALTH_OK, ready, ready ? "" : "warming_up", "tsan",
            json_pack("{s:i,s:I}", "n", i, "check", (json_int_t)(tsan_mix64((uint64_t)i) >> 2)));
        switch (p->id) {
        case CQ_SVC_FEEDER: {
            struct cq_feeder_metrics m = {0};
            m.messages_total = (uint64_t)i;
            m.candles_closed_total = (uint64_t)i * 2;
            cq_health_set_feeder_metrics(b, &m);
            break;
        }
        case CQ_SVC_ARES: {
            struct cq_ares_metrics m = {0};
            m.signals_emitted_total = (uint64_t)i;
            m.n_blocked = 1;
            m.blocked[0].reason = "tsan";
            m.blocked[0].total = (uint64_t)i;
            cq_health_set_ares_metrics(b, &m);
            break;
        }
        case CQ_SVC_TRADER: {
            struct cq_trader_metrics m = {0};
            m.signals_received_total = (uint64_t)i;
            m.execution_reports_total = (uint64_t)i;
            cq_health_set_trader_metrics(b, &m);
            break;
        }
        case CQ_SVC_JOURNAL: {
            struct cq_journal_metrics m = {0};
            m.appends_total = (uint64_t)i;
            m.durable_seq = (uint64_t)i;
            cq_latency_histogram_observe(&m.commit_wait, (uint64_t)i * 1000);
            cq_health_set_journal_metrics(b, &m);
            break;
        }
        default:
            break;
        }
    }
    atomic_fetch_sub(&p->run->publishers_left, 1);
    return NULL;
}

static void *read_main(void *arg)
{
    struct board_run *r = arg;
    struct tsan_t *t = r->t;
    json_int_t last_n[CQ_SVC__COUNT] = {0};
    uint64_t last_feeder = 0, last_journal = 0;
    int rounds = 0;
    for (;;) {
        bool last_round = atomic_load(&r->publishers_left) == 0;
        json_t *all = cq_health_services_json(r->board);
        TSAN_ASSERT(t, all != NULL, NULL, "services json");
        for (int i = 0; i < CQ_SVC__COUNT; i++) {
            json_t *rec = json_object_get(all, cq_health_service_name((enum cq_service_id)i));
            json_t *details = json_object_get(rec, "details");
            json_t *n = json_object_get(details, "n");
            if (n == NULL) {
                continue; /* not published yet */
            }
            json_int_t v = json_integer_value(n);
            json_int_t check = json_integer_value(json_object_get(details, "check"));
            TSAN_EXPECT(t, check == (json_int_t)(tsan_mix64((uint64_t)v) >> 2),
                        "%s: details n %lld with another publish's check",
                        cq_health_service_name((enum cq_service_id)i), (long long)v);
            TSAN_EXPECT(t, v >= last_n[i], "%s went back from n %lld to %lld",
                        cq_health_service_name((enum cq_service_id)i), (long long)last_n[i],
                        (long long)v);
            last_n[i] = v;
        }
        json_decref(all);

        struct cq_health_metrics m;
        cq_health_get_metrics(r->board, &m);
        TSAN_EXPECT(t, m.journal.appends_total == m.journal.durable_seq,
                    "torn journal counters: appends %llu durable %llu",
                    (unsigned long long)m.journal.appends_total,
                    (unsigned long long)m.journal.durable_seq);
        TSAN_EXPECT(t, m.feeder.candles_closed_total == 2 * m.feeder.messages_total,
                    "torn feeder counters");
        TSAN_EXPECT(t, m.feeder.messages_total >= last_feeder, "feeder counter went back");
        TSAN_EXPECT(t, m.journal.appends_total >= last_journal, "journal counter went back");
        last_feeder = m.feeder.messages_total;
        last_journal = m.journal.appends_total;

        struct cq_health_summary s[CQ_SVC__COUNT];
        cq_health_get_summaries(r->board, s);
        json_t *reasons = NULL;
        (void)cq_health_all_ready(r->board, &reasons);
        json_decref(reasons);
        rounds++;
        if (last_round) {
            break;
        }
    }
    TSAN_EXPECT(t, rounds > 0, "no read round");
    return NULL;
}

struct files_run {
    struct board_run *run;
    char dir[300];
};

static void *files_main(void *arg)
{
    struct files_run *f = arg;
    while (atomic_load(&f->run->publishers_left) > 0) {
        struct cq_err err;
        cq_err_clear(&err);
        int rc = cq_health_write_files(f->run->board, f->dir, &err);
        TSAN_ASSERT(f->run->t, rc == 0, NULL, "write files: %s", err.message);
        tsan_sleep_ms(5);
    }
    return NULL;
}

static void health_board_publish_and_read_from_threads(struct tsan_t *t)
{
    struct board_run r;
    memset(&r, 0, sizeof(r));
    r.t = t;
    struct cq_err err;
    cq_err_clear(&err);
    r.board = cq_health_board_new(NULL, &err);
    TSAN_ASSERT_V(t, r.board != NULL, "board: %s", err.message);
    enum cq_service_id ids[] = {CQ_SVC_FEEDER, CQ_SVC_ARES, CQ_SVC_TRADER, CQ_SVC_JOURNAL,
                                CQ_SVC_API};
    enum { NPUB = sizeof(ids) / sizeof(ids[0]) };
    atomic_init(&r.publishers_left, NPUB);
    struct publisher pubs[NPUB];
    pthread_t pt[NPUB], rt[2], ft;
    struct files_run fr = {&r, ""};
    int len = snprintf(fr.dir, sizeof(fr.dir), "%s/health", t->tmpdir);
    TSAN_ASSERT_V(t, len > 0 && (size_t)len < sizeof(fr.dir), "directory name too long");

    for (int i = 0; i < 2; i++) {
        pthread_create(&rt[i], NULL, read_main, &r);
    }
    pthread_create(&ft, NULL, files_main, &fr);
    for (int i = 0; i < NPUB; i++) {
        pubs[i].run = &r;
        pubs[i].id = ids[i];
        pthread_create(&pt[i], NULL, publish_main, &pubs[i]);
    }
    for (int i = 0; i < NPUB; i++) {
        pthread_join(pt[i], NULL);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(rt[i], NULL);
    }
    pthread_join(ft, NULL);

    /* Every record is its publisher's last publish. */
    for (int i = 0; i < NPUB; i++) {
        json_t *rec = cq_health_record_json(r.board, ids[i]);
        json_int_t n = json_integer_value(json_object_get(json_object_get(rec, "details"), "n"));
        TSAN_EXPECT(t, n == PUBLISHES, "%s ends at n %lld", cq_health_service_name(ids[i]),
                    (long long)n);
        json_decref(rec);
        TSAN_EXPECT(t, cq_health_status_of(r.board, ids[i]) == CQ_HEALTH_OK, "status");
    }
    TSAN_EXPECT(t, cq_health_all_ready(r.board, NULL), "every service ends ready");
    struct cq_health_metrics m;
    cq_health_get_metrics(r.board, &m);
    TSAN_EXPECT(t, m.feeder.messages_total == PUBLISHES, "feeder %llu",
                (unsigned long long)m.feeder.messages_total);
    TSAN_EXPECT(t, m.ares.signals_emitted_total == PUBLISHES && m.ares.n_blocked == 1,
                "ares counters");
    TSAN_EXPECT(t, m.trader.signals_received_total == PUBLISHES, "trader counters");
    TSAN_EXPECT(t, m.journal.appends_total == PUBLISHES && m.journal.commit_wait.count == 1,
                "journal counters");
    cq_health_board_free(r.board);
}

const struct tsan_case tsan_health_cases[] = {
    {"health_board_publish_and_read_from_threads", health_board_publish_and_read_from_threads},
    {NULL, NULL},
};
