/*
 * test_journal_crash.c — the journal's crash and power-loss proof
 * (server/journal/, issue 5 "Proof").
 *
 * 1. The SIGKILL campaign (journal_crash/sigkill_campaign): K times
 *    (CQ_CRASH_ITERATIONS, default 200; scripts/journal-crash-soak runs
 *    thousands) run tests/support/journal_child on a journal directory, kill
 *    it with SIGKILL at a seeded random moment (1-30 ms after the fork, one
 *    time in eight 30-300 ms: during exec, recovery, appends, segment rolls,
 *    snapshots, retention, stop), collect every "durable N" it printed, then
 *    recover the directory in this process with cq_journal_open and check:
 *    no corruption found, nothing quarantined, no snapshot thrown away, no
 *    debug bundle; cq_journal_verify_dir ok; every record readable with
 *    cq_journal_read_dir, seqs contiguous, each one byte-identical to what
 *    the child appended (jc_check); every acknowledged seq present; nothing
 *    recovered earlier lost later; replay from the snapshot and from the
 *    first record give byte-identical state. Directories live on for up to
 *    24 kills (segments roll, snapshots and retention run mid-campaign) and
 *    the options change from child to child.
 *    A SIGKILL loses nothing the kernel accepted, so "durable" is checked
 *    for every policy, off included ("written" survives a process crash);
 *    off makes no promise against power loss, which part 2 reflects.
 *    CQ_CRASH_SEED picks another campaign; a failure prints the seed, the
 *    iteration, the child's command line and keeps the directory.
 *
 * 2. Power loss (journal_crash/power_loss_*) through the filesystem boundary
 *    (tests/fakes/fake_fs.h), in-process: records made durable, more
 *    appended without waiting, the power cut (unsynced writes dropped, a
 *    random prefix of them kept, or kept out of order), then recovery
 *    through the real filesystem: every durable record present, verify ok,
 *    nothing after a hole accepted.
 *
 *    CQ_POWER_LOSS_SEEDS scenarios per test (default 40), drawn from
 *    CQ_CRASH_SEED: where the machine stops (the nth fdatasync, write,
 *    fsync_dir, open, rename or unlink after phase A, or a random moment
 *    on a disk slow to sync), sizes, segment and snapshot settings.
 *    CQ_CRASH_VERBOSE=1 prints each scenario and its time.
 *
 *    A power loss that writes pages back out of order can leave a hole with
 *    intact records after it, which recovery cannot tell from damage: it
 *    reports corruption and cuts. That is accepted (counted as
 *    cut_as_corrupt) only when every acknowledged record stays live, the
 *    bundle exists and the quarantine record takes a new seq.
 *
 * 2b. Damage at rest (journal_crash/damage_campaign, CQ_DAMAGE_SCENARIOS,
 *    default 60; the soak runs more): a journal of acknowledged records, then
 *    a zeroed 512-byte sector, a zeroed length field or a bit flip at a
 *    random offset of a sealed or the active segment, then a restart. No
 *    acknowledged record may be silently dropped: it is live and intact
 *    afterwards, or recovery reported corruption with the damaged segment,
 *    byte for byte, in the bundle (or, when a kept snapshot summarises the
 *    damaged segment, left every file as it was for verify to report); never
 *    a torn-tail cut, never a seq used twice. Zeroed sectors in the active
 *    segment are placed before its last record: zeros up to the end of the
 *    file are what a lost page looks like and nothing can tell them apart.
 *
 * 3. Crash points a real kill cannot aim at (journal_crash/fault_*): a crash
 *    before a snapshot's tmp fdatasync, between its write and rename, after
 *    the rename before the directory fsync (rename kept or lost); at a new
 *    segment's creation, before its header's fdatasync, between creation
 *    and the directory fsync (entry kept or lost); in the middle of
 *    retention. Stopped there with fake_fs, each loss mode, group and
 *    always, and recovered.
 *
 * 4. A kill, a restart, then the power
 *    (journal_crash/power_loss_after_restart_into_unsynced_segment): the
 *    writer dies between creating a segment and fsyncing the directory, the
 *    next process appends into that segment and acknowledges, the power
 *    goes and takes the never-fsync'ed directory entry with it. fake_fs
 *    keeps directory entries at once, so this test tracks them itself.
 *
 * Every wait is bounded; every child is reaped; temporary directories are
 * removed when the test passes.
 */
#define JOURNAL_CHILD_NO_MAIN
#include "support/journal_child.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "fakes/fake_fs.h"
#include "journal-int.h"

/* meson may compile in where journal_child is built */
#ifndef CQ_JOURNAL_CHILD_PATH
#define CQ_JOURNAL_CHILD_PATH ""
#endif

#define DEFAULT_ITERATIONS 200
#define DEFAULT_SEED 0x5EEDC0DEULL
#define RUNS_PER_DIR_MAX 24
#define OUT_LINE_MAX 256
#define DRAIN_MS 10000     /* after SIGKILL: the pipe's EOF */
#define REAP_MS 10000      /* after SIGKILL: waitpid */
#define FINISH_MS 60000    /* a child expected to finish on its own */
#define OPEN_WAIT_MS 10000 /* a child's exec and recovery */
#define ROOT_MAX 256       /* the temporary root */
#define SUB_MAX 320        /* a scenario's root under it */
#define PATH_BUF 512       /* paths under those */

/* ---- small helpers --------------------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_for_us(int64_t us)
{
    if (us <= 0) {
        return;
    }
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            for (e = readdir(d); e != NULL; e = readdir(d)) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                    continue;
                }
                char child[PATH_MAX];
                snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    uint64_t v = 0;
    const char *s = getenv(name);
    if (s == NULL || *s == '\0') {
        return dflt;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0') {
        return dflt;
    }
    v = (uint64_t)x;
    return v;
}

/* The journal_child binary: $CQ_JOURNAL_CHILD, else CQ_JOURNAL_CHILD_PATH
 * (compiled in by meson), else "journal_child" beside this executable. */
static void child_path(char *out, size_t out_len)
{
    const char *env = getenv("CQ_JOURNAL_CHILD");
    if (env != NULL && *env != '\0') {
        cq_strlcpy(out, env, out_len);
        return;
    }
    if (CQ_JOURNAL_CHILD_PATH[0] != '\0' && access(CQ_JOURNAL_CHILD_PATH, X_OK) == 0) {
        cq_strlcpy(out, CQ_JOURNAL_CHILD_PATH, out_len);
        return;
    }
    char self[PATH_BUF - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        cq_strlcpy(out, "journal_child", out_len);
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    snprintf(out, out_len, "%s/journal_child", self);
}

/* How many files in dir have a name ending with suffix. */
static size_t count_suffix(const char *dir, const char *suffix)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    size_t sl = strlen(suffix);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        size_t nl = strlen(e->d_name);
        if (nl >= sl && strcmp(e->d_name + nl - sl, suffix) == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* The last bytes of a small text file (the child's stderr), for messages. */
static void file_tail(const char *path, char *out, size_t out_len)
{
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)out_len - 1 ? size - (off_t)out_len + 1 : 0;
    ssize_t n = pread(fd, out, out_len - 1, from);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
}

/* ---- running and killing the child --------------------------------------------------- */

struct child_run {
    int status; /* from waitpid */
    bool reaped;
    bool killed;        /* we sent SIGKILL before it exited */
    bool exited_first;  /* it exited before the kill moment */
    uint64_t acked_max; /* highest "durable N" (0: none) */
    uint64_t acks;
    bool have_recovered; /* "recovered L S T C" seen */
    uint64_t rec_last, rec_snap;
    int rec_torn;
    unsigned rec_corrupt;
    bool done;
    uint64_t done_last;
    char corrupt[OUT_LINE_MAX];
    char problem[OUT_LINE_MAX]; /* a malformed or out-of-order line ("" = none) */
    char line[OUT_LINE_MAX];    /* partial line being read */
    size_t line_len;
};

static void child_line(struct child_run *r, const char *line)
{
    uint64_t a = 0, b = 0;
    int c = 0;
    unsigned d = 0;
    if (sscanf(line, "durable %" SCNu64, &a) == 1) {
        if (a <= r->acked_max || (r->have_recovered && a <= r->rec_last)) {
            if (r->problem[0] == '\0') {
                snprintf(r->problem, sizeof(r->problem),
                         "ack %" PRIu64 " after ack %" PRIu64 " (recovered %" PRIu64 ")", a,
                         r->acked_max, r->rec_last);
            }
        }
        if (a > r->acked_max) {
            r->acked_max = a;
        }
        r->acks++;
    } else if (sscanf(line, "recovered %" SCNu64 " %" SCNu64 " %d %u", &a, &b, &c, &d) == 4) {
        r->have_recovered = true;
        r->rec_last = a;
        r->rec_snap = b;
        r->rec_torn = c;
        r->rec_corrupt = d;
    } else if (sscanf(line, "done %" SCNu64, &a) == 1) {
        r->done = true;
        r->done_last = a;
    } else if (strncmp(line, "corrupt ", 8) == 0) {
        cq_strlcpy(r->corrupt, line + 8, sizeof(r->corrupt));
    } else if (r->problem[0] == '\0') {
        snprintf(r->problem, sizeof(r->problem), "unexpected line \"%.200s\"", line);
    }
}

static void child_bytes(struct child_run *r, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            r->line[r->line_len] = '\0';
            child_line(r, r->line);
            r->line_len = 0;
        } else if (r->line_len + 1 < sizeof(r->line)) {
            r->line[r->line_len++] = buf[i];
        }
    }
}

/* Read what is available; false at EOF (or on a read error). */
static bool child_read(struct child_run *r, int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            child_bytes(r, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        return false;
    }
}

/* Read the pipe until deadline_us (or EOF; or, with until_recovered, the
 * "recovered" line). Returns false at EOF. */
static bool child_pump(struct child_run *r, int fd, int64_t deadline_us, bool until_recovered)
{
    for (;;) {
        int64_t left = deadline_us - now_us();
        if (left <= 0 || (until_recovered && r->have_recovered)) {
            return true;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int ms = (int)((left + 999) / 1000);
        int n = poll(&p, 1, ms);
        if (n < 0 && errno != EINTR) {
            return false;
        }
        if (n > 0 && !child_read(r, fd)) {
            return false;
        }
    }
}

static void child_reap(struct child_run *r, pid_t pid)
{
    int64_t until = now_us() + (int64_t)REAP_MS * 1000;
    while (!r->reaped) {
        pid_t w = waitpid(pid, &r->status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR)) {
            r->reaped = true;
            break;
        }
        if (now_us() > until) {
            /* SIGKILL cannot be refused: this only waits out a stuck disk */
            kill(pid, SIGKILL);
            if (waitpid(pid, &r->status, 0) == pid) {
                r->reaped = true;
            }
            break;
        }
        sleep_for_us(1000);
    }
}

/* Fork/exec argv with stdout on a pipe and stderr in stderr_path (truncated);
 * SIGKILL it kill_after_us after the fork (from_open: after it printed
 * "recovered", so slow builds still get killed mid-append) unless it exited
 * by then (kill_after_us < 0: it gets FINISH_MS to finish); read everything
 * it printed; reap it. Never asserts (the child is always reaped first). */
static int run_child(char *const argv[], const char *stderr_path, int64_t kill_after_us,
                     bool from_open, struct child_run *r)
{
    int p[2];
    memset(r, 0, sizeof(*r));
    if (pipe(p) != 0) {
        return -errno;
    }
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    int err_fd = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    int64_t start = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        close(err_fd);
        return -e;
    }
    if (pid == 0) {
        if (dup2(p[1], STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0) {
            _exit(127);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    close(err_fd);
    fcntl(p[0], F_SETFL, O_NONBLOCK);

    bool open_pipe = true;
    if (kill_after_us >= 0 && from_open) {
        open_pipe = child_pump(r, p[0], start + (int64_t)OPEN_WAIT_MS * 1000, true);
        start = now_us();
    }
    int64_t kill_at =
        kill_after_us >= 0 ? start + kill_after_us : start + (int64_t)FINISH_MS * 1000;
    if (open_pipe) {
        open_pipe = child_pump(r, p[0], kill_at, false);
    }
    if (open_pipe) {
        kill(pid, SIGKILL);
        r->killed = true;
    } else {
        r->exited_first = true;
    }
    /* what it printed before dying is still in the pipe */
    int64_t drain_until = now_us() + (int64_t)DRAIN_MS * 1000;
    while (open_pipe && now_us() < drain_until) {
        open_pipe = child_pump(r, p[0], now_us() + 50000, false);
    }
    close(p[0]);
    child_reap(r, pid);
    if (r->reaped && WIFEXITED(r->status)) {
        r->killed = false; /* it exited before the signal landed */
    }
    return 0;
}

/* ---- checking a directory ------------------------------------------------------------ */

/* Which seed wrote which seqs in a directory that several children used. */
struct dir_runs {
    uint64_t first_seq[RUNS_PER_DIR_MAX + 1];
    uint64_t seed[RUNS_PER_DIR_MAX + 1];
    size_t n;
};

struct read_check {
    const struct dir_runs *runs; /* borrowed; NULL: any seed */
    uint64_t n, first, last;
    char why[512];
};

static int read_check_one(void *vctx, const struct cq_journal_record *rec)
{
    struct read_check *c = vctx;
    uint64_t seed = 0;
    if (c->n > 0 && rec->seq != c->last + 1) {
        snprintf(c->why, sizeof(c->why), "seq %" PRIu64 " follows %" PRIu64, rec->seq, c->last);
        return 1;
    }
    if (!jc_check(rec, &seed, c->why, sizeof(c->why))) {
        return 1;
    }
    if (c->runs != NULL) {
        uint64_t want = 0;
        bool known = false;
        for (size_t i = 0; i < c->runs->n; i++) {
            if (c->runs->first_seq[i] <= rec->seq) {
                want = c->runs->seed[i];
                known = true;
            }
        }
        if (!known || want != seed) {
            snprintf(c->why, sizeof(c->why),
                     "seq %" PRIu64 " was written by seed %" PRIu64 ", expected %" PRIu64, rec->seq,
                     seed, want);
            return 1;
        }
    }
    if (c->n == 0) {
        c->first = rec->seq;
    }
    c->n++;
    c->last = rec->seq;
    return 0;
}

/* What one recovery + check of a directory found. */
struct dir_check {
    struct cq_journal_recovery rec;
    struct cq_journal_verify_report rep;
    uint64_t first, last, n;
    size_t snapshots, segments;
    bool cut;           /* recovery reported corruption and cut (allowed by the caller) */
    uint64_t last_good; /* when cut: the last record kept before the quarantine records */
};

/* After a cut: the records before the first QUARANTINE record are the
 * child's, contiguous and intact; the quarantine records after them take
 * seqs no record before had. */
struct cut_check {
    const struct dir_runs *runs;
    struct read_check rc;
    bool in_quarantine;
    uint64_t quarantine_first;
    char why[512];
};

static int cut_check_one(void *vctx, const struct cq_journal_record *rec)
{
    struct cut_check *c = vctx;
    if (rec->type == CQ_REC_QUARANTINE) {
        if (!c->in_quarantine) {
            c->quarantine_first = rec->seq;
        }
        c->in_quarantine = true;
        return 0;
    }
    if (c->in_quarantine) {
        snprintf(c->why, sizeof(c->why), "record %" PRIu64 " after the quarantine records",
                 rec->seq);
        return 1;
    }
    if (read_check_one(&c->rc, rec) != 0) {
        cq_strlcpy(c->why, c->rc.why, sizeof(c->why));
        return 1;
    }
    return 0;
}

/* A cut was made (allowed): every acknowledged record must still be live,
 * the evidence in a bundle, and no seq used twice. */
static bool check_cut(const char *root, const char *dir, uint64_t acked,
                      const struct dir_runs *runs, struct dir_check *out, char *why, size_t why_len)
{
    char bundles[PATH_BUF];
    snprintf(bundles, sizeof(bundles), "%s/bundles", root);
    if (access(bundles, F_OK) != 0) {
        snprintf(why, why_len, "corruption reported (%s) but no bundle", out->rec.first_corruption);
        return false;
    }
    if (cq_journal_verify_dir(dir, NULL, &out->rep) < 0 || !out->rep.ok) {
        snprintf(why, why_len, "verify after the cut: %s", out->rep.problem);
        return false;
    }
    struct cut_check c = {.runs = runs, .rc = {.runs = runs}};
    struct cq_err err;
    cq_err_clear(&err);
    if (cq_journal_read_dir(dir, NULL, 0, cut_check_one, &c, &err) < 0) {
        snprintf(why, why_len, "read_dir after the cut: %s", err.message);
        return false;
    }
    if (c.why[0] != '\0') {
        snprintf(why, why_len, "after the cut: %s", c.why);
        return false;
    }
    uint64_t last_good = c.rc.n > 0 ? c.rc.last : out->rec.snapshot_seq;
    if (last_good < acked) {
        snprintf(why, why_len,
                 "the cut (%s) dropped acknowledged records: last kept %" PRIu64
                 ", acknowledged %" PRIu64,
                 out->rec.first_corruption, last_good, acked);
        return false;
    }
    if (!c.in_quarantine || c.quarantine_first <= last_good) {
        snprintf(why, why_len, "quarantine record at seq %" PRIu64 " after %" PRIu64,
                 c.quarantine_first, last_good);
        return false;
    }
    out->cut = true;
    out->last_good = last_good;
    return true;
}

static char *dump_replay(const char *dir, bool use_snapshot, char *why, size_t why_len)
{
    struct cq_err err;
    json_t *state = NULL;
    cq_err_clear(&err);
    int rc = cq_journal_replay_dir(dir, NULL, use_snapshot, &state, &err);
    if (rc < 0) {
        snprintf(why, why_len, "replay_dir(use_snapshot=%d): %s", use_snapshot, err.message);
        return NULL;
    }
    char *text = cq_journal_state_dump(state);
    json_decref(state);
    if (text == NULL) {
        snprintf(why, why_len, "state_dump failed");
    }
    return text;
}

/* Recover dir like a restart would (cq_journal_open through the real
 * filesystem, writer not started), then check it offline. acked: every seq
 * <= acked must be present. runs: which seed wrote which seqs (NULL: any).
 * false and why on the first problem. */
static bool recover_and_check_cut(const char *root, const char *dir, uint64_t acked,
                                  const struct dir_runs *runs, bool cut_ok, struct dir_check *out,
                                  char *why, size_t why_len);

static bool recover_and_check(const char *root, const char *dir, uint64_t acked,
                              const struct dir_runs *runs, struct dir_check *out, char *why,
                              size_t why_len)
{
    return recover_and_check_cut(root, dir, acked, runs, false, out, why, why_len);
}

/* cut_ok: recovery may report corruption and cut (a power loss that wrote
 * pages back out of order leaves a hole with intact records after it,
 * which recovery cannot tell from damage), provided every acknowledged
 * record stays live (check_cut). */
static bool recover_and_check_cut(const char *root, const char *dir, uint64_t acked,
                                  const struct dir_runs *runs, bool cut_ok, struct dir_check *out,
                                  char *why, size_t why_len)
{
    struct cq_err err;
    memset(out, 0, sizeof(*out));
    cq_err_clear(&err);
    struct cq_journal_options jo = {
        .dir = dir,
        .fsync = CQ_JOURNAL_FSYNC_GROUP,
    };
    struct cq_journal *j = cq_journal_open(&jo, &out->rec, &err);
    if (j == NULL) {
        snprintf(why, why_len, "cq_journal_open: %s (%s)", err.message, cq_strerror(err.code));
        return false;
    }
    cq_journal_free(j);
    if (cut_ok && out->rec.corrupt_segments != 0 && !out->rec.torn_tail_truncated) {
        return check_cut(root, dir, acked, runs, out, why, why_len);
    }
    if (out->rec.corrupt_segments != 0 || out->rec.n_quarantined != 0 ||
        out->rec.first_corruption[0] != '\0') {
        snprintf(why, why_len, "recovery found corruption: %u segments, %zu quarantined, \"%s\"",
                 (unsigned)out->rec.corrupt_segments, out->rec.n_quarantined,
                 out->rec.first_corruption);
        return false;
    }
    char bundles[PATH_BUF];
    snprintf(bundles, sizeof(bundles), "%s/bundles", root);
    if (access(bundles, F_OK) == 0) {
        snprintf(why, why_len, "a debug bundle was written (%s)", bundles);
        return false;
    }
    if (count_suffix(dir, ".invalid") > 0) {
        snprintf(why, why_len, "recovery set a snapshot aside as .invalid");
        return false;
    }
    if (count_suffix(dir, ".tmp") > 0) {
        snprintf(why, why_len, "recovery left a .tmp file");
        return false;
    }
    if (out->rec.last_seq < acked) {
        snprintf(why, why_len,
                 "acknowledged seq %" PRIu64 " lost: recovery ends at %" PRIu64
                 " (torn %d, %" PRIu64 " bytes)",
                 acked, out->rec.last_seq, out->rec.torn_tail_truncated, out->rec.torn_bytes);
        return false;
    }

    if (cq_journal_verify_dir(dir, NULL, &out->rep) < 0) {
        snprintf(why, why_len, "verify_dir: I/O error");
        return false;
    }
    if (!out->rep.ok || out->rep.torn_tail) {
        snprintf(why, why_len, "verify after recovery: segment %u offset %" PRIu64 ": %s",
                 (unsigned)out->rep.bad_segment, out->rep.bad_offset, out->rep.problem);
        return false;
    }
    if (out->rep.records > 0 && out->rep.last_seq != out->rec.last_seq) {
        snprintf(why, why_len, "verify ends at %" PRIu64 ", recovery at %" PRIu64,
                 out->rep.last_seq, out->rec.last_seq);
        return false;
    }

    struct read_check rc = {.runs = runs};
    cq_err_clear(&err);
    if (cq_journal_read_dir(dir, NULL, 0, read_check_one, &rc, &err) < 0) {
        snprintf(why, why_len, "read_dir: %s", err.message);
        return false;
    }
    if (rc.why[0] != '\0') {
        snprintf(why, why_len, "%s", rc.why);
        return false;
    }
    if (rc.n > 0 ? rc.last != out->rec.last_seq : out->rec.last_seq != out->rec.snapshot_seq) {
        snprintf(why, why_len,
                 "read_dir ends at %" PRIu64 " (%" PRIu64 " records), recovery at %" PRIu64,
                 rc.last, rc.n, out->rec.last_seq);
        return false;
    }
    if (rc.n > 0 && rc.first > 1 && out->rec.snapshot_seq + 1 < rc.first) {
        snprintf(why, why_len,
                 "records before %" PRIu64 " pruned but recovery used snapshot %" PRIu64, rc.first,
                 out->rec.snapshot_seq);
        return false;
    }
    out->first = rc.first;
    out->last = rc.last;
    out->n = rc.n;
    out->snapshots = count_suffix(dir, ".cqs");
    out->segments = count_suffix(dir, ".cqj");

    /* determinism: from the snapshot and (when nothing is pruned) from seq 1 */
    if (out->rec.last_seq > 0) {
        char *a = dump_replay(dir, true, why, why_len);
        if (a == NULL) {
            return false;
        }
        json_t *s = json_loads(a, 0, NULL);
        json_int_t ls = json_integer_value(json_object_get(s, "last_seq"));
        json_int_t nr = json_integer_value(json_object_get(s, "records"));
        json_decref(s);
        if ((uint64_t)ls != out->rec.last_seq || (uint64_t)nr != out->rec.last_seq) {
            snprintf(why, why_len,
                     "replayed state says last_seq %lld records %lld, journal ends at %" PRIu64,
                     (long long)ls, (long long)nr, out->rec.last_seq);
            free(a);
            return false;
        }
        if (rc.n > 0 && rc.first == 1) {
            char *b = dump_replay(dir, false, why, why_len);
            if (b == NULL) {
                free(a);
                return false;
            }
            bool same = strcmp(a, b) == 0;
            free(b);
            if (!same) {
                snprintf(why, why_len, "replay from the snapshot and from seq 1 differ");
                free(a);
                return false;
            }
        }
        free(a);
    }
    return true;
}

/* ---- fixtures ------------------------------------------------------------------------ */

static char tmp_root[ROOT_MAX];
static bool keep_tmp;

static void setup(void)
{
    struct cq_err err;
    /* the journal's warnings and errors are expected here by the hundred
     * (torn tails, failed fsyncs after the power cut): kept in the ring,
     * printed when a check fails */
    struct cq_log_options lo = {
        .dir = NULL, .to_stderr = false, .level = CQ_LOG_INFO, .ring_lines = 64};
    cq_err_clear(&err);
    cr_assert_eq(cq_log_open(&lo, &err), 0, "log: %s", err.message);
    const char *base = getenv("TMPDIR");
    snprintf(tmp_root, sizeof(tmp_root), "%s/cq-test-journal-crash-XXXXXX",
             base != NULL && *base != '\0' ? base : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_root), "mkdtemp: %s", strerror(errno));
    keep_tmp = false;
}

static void print_line(const char *line, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "  | %s\n", line);
}

static void teardown(void)
{
    if (keep_tmp) {
        fprintf(stderr, "test_journal_crash: the last log lines:\n");
        cq_log_ring_foreach(print_line, NULL);
        fprintf(stderr, "test_journal_crash: kept %s for inspection\n", tmp_root);
    } else {
        rm_rf(tmp_root);
    }
    cq_log_close();
}

TestSuite(journal_crash, .init = setup, .fini = teardown);

/* ---- 1. the SIGKILL campaign ------------------------------------------------------------- */

struct campaign_stats {
    uint64_t iterations, kills, finished, acks, acked_records;
    uint64_t torn_truncated, killed_before_recovered, dir_resets;
    uint64_t max_segments, max_snapshots, pruned_seen, snapshot_used;
    uint64_t max_last_seq;
    uint64_t policy_runs[3];
};

static const char *const policy_names[3] = {"always", "group", "off"};

/* The options of one child, drawn from the iteration's generator. */
static void child_argv(char *store, size_t store_len, char *argv[16], const char *exe,
                       const char *dir, int policy, uint64_t n_records, uint64_t seed,
                       uint64_t *rng)
{
    static const uint64_t seg_bytes[] = {8192, 16384, 65536, 1 << 20};
    static const uint64_t snap_every[] = {20, 50, 200, 100000};
    static const uint64_t keep_snaps[] = {1, 2, 2, 3};
    static const uint64_t batch[] = {1, 4, 16, 64};
    size_t off = 0;
    int argc = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        argv[argc++] = store + off;                                                                \
        int n_ = snprintf(store + off, store_len - off, __VA_ARGS__);                              \
        off += (size_t)n_ + 1;                                                                     \
    } while (0)
    ADD("%s", exe);
    ADD("%s", dir);
    ADD("%s", policy_names[policy]);
    ADD("%" PRIu64, n_records);
    ADD("%" PRIu64, seed);
    ADD("seg_bytes=%" PRIu64, seg_bytes[jc_rand(rng) % 4]);
    ADD("snap_every=%" PRIu64, snap_every[jc_rand(rng) % 4]);
    ADD("keep_snaps=%" PRIu64, keep_snaps[jc_rand(rng) % 4]);
    ADD("batch=%" PRIu64, batch[jc_rand(rng) % 4]);
    ADD("snap_request=%" PRIu64, jc_rand(rng) % 4 == 0 ? (uint64_t)3 : 0);
    ADD("snap_ms=%" PRIu64, jc_rand(rng) % 4 == 0 ? (uint64_t)5 : 3600000);
    ADD("verify_ms=%" PRIu64, jc_rand(rng) % 4 == 0 ? (uint64_t)2 : 0);
#undef ADD
    argv[argc] = NULL;
}

static void argv_str(char *const argv[], char *out, size_t out_len)
{
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; argv[i] != NULL && off < out_len; i++) {
        int n = snprintf(out + off, out_len - off, "%s%s", i > 0 ? " " : "", argv[i]);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
}

Test(journal_crash, sigkill_campaign, .timeout = 3600)
{
    uint64_t iterations = env_u64("CQ_CRASH_ITERATIONS", DEFAULT_ITERATIONS);
    uint64_t base_seed = env_u64("CQ_CRASH_SEED", DEFAULT_SEED);
    char exe[PATH_BUF], dir[PATH_BUF], err_path[PATH_BUF], why[1024] = "", cmd[1024];
    child_path(exe, sizeof(exe));
    cr_assert_eq(access(exe, X_OK), 0, "journal_child not found at %s (set CQ_JOURNAL_CHILD)", exe);
    snprintf(dir, sizeof(dir), "%s/journal", tmp_root);
    snprintf(err_path, sizeof(err_path), "%s/child.stderr", tmp_root);

    struct campaign_stats st;
    memset(&st, 0, sizeof(st));
    struct dir_runs runs;
    memset(&runs, 0, sizeof(runs));
    uint64_t prev_last = 0;
    int64_t t0 = now_us();

    for (uint64_t it = 0; it < iterations; it++) {
        uint64_t rng = jc_mix(base_seed ^ jc_mix(it + 1));
        /* a fresh directory now and then, and always when the run table is full */
        if (runs.n == RUNS_PER_DIR_MAX || (runs.n > 0 && jc_rand(&rng) % 16 == 0)) {
            rm_rf(dir);
            memset(&runs, 0, sizeof(runs));
            prev_last = 0;
            st.dir_resets++;
        }
        /* always and group alternate; every fifth child runs with off */
        int policy = it % 5 == 4 ? 2 : (int)(it % 2);
        uint64_t child_seed = jc_rand(&rng) >> 16;
        uint64_t n_records = jc_rand(&rng) % 10 == 0 ? 1 + jc_rand(&rng) % 300 : 10000000;
        int64_t kill_us = jc_rand(&rng) % 8 == 0 ? 30000 + (int64_t)(jc_rand(&rng) % 270000)
                                                 : 1000 + (int64_t)(jc_rand(&rng) % 29000);
        /* one kill in four counts from the fork (exec, recovery), the rest
         * from the open, so that a slow (sanitized) build still dies
         * mid-append */
        bool from_open = jc_rand(&rng) % 4 != 0;
        char store[2048];
        char *argv[16];
        child_argv(store, sizeof(store), argv, exe, dir, policy, n_records, child_seed, &rng);
        argv_str(argv, cmd, sizeof(cmd));

        struct child_run r;
        int rc = run_child(argv, err_path, kill_us, from_open, &r);
        cr_assert_eq(rc, 0, "fork/exec: %s", strerror(-rc));
        cr_assert(r.reaped, "iteration %" PRIu64 ": child not reaped", it);

        char err_tail[1024];
        file_tail(err_path, err_tail, sizeof(err_tail));
        bool status_ok = r.killed ? WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL
                                  : WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 && r.done;
        if (!status_ok || r.problem[0] != '\0' || r.corrupt[0] != '\0' ||
            (r.have_recovered && r.rec_last != prev_last) || (r.acks > 0 && !r.have_recovered)) {
            keep_tmp = true;
            cr_assert_fail("seed %#" PRIx64 " iteration %" PRIu64 ": `%s`: status %#x (killed %d, "
                           "done %d), recovered %d last %" PRIu64 " (expected %" PRIu64 "), "
                           "problem \"%s\", corrupt \"%s\"; stderr: %s",
                           base_seed, it, cmd, (unsigned)r.status, r.killed, r.done,
                           r.have_recovered, r.rec_last, prev_last, r.problem, r.corrupt, err_tail);
        }
        if (r.have_recovered) {
            runs.first_seq[runs.n] = r.rec_last + 1;
            runs.seed[runs.n] = child_seed;
            runs.n++;
        }

        struct dir_check dc;
        if (!recover_and_check(tmp_root, dir, r.acked_max, &runs, &dc, why, sizeof(why)) ||
            dc.rec.last_seq < prev_last || (!r.have_recovered && dc.rec.last_seq != prev_last)) {
            keep_tmp = true;
            cr_assert_fail("seed %#" PRIx64 " iteration %" PRIu64 ": `%s` killed %lld us after "
                           "its %s (acked %" PRIu64 ", previous last %" PRIu64
                           ", recovered %" PRIu64 "): %s; child stderr: %s",
                           base_seed, it, cmd, (long long)kill_us, from_open ? "open" : "fork",
                           r.acked_max, prev_last, dc.rec.last_seq,
                           why[0] != '\0' ? why : "records lost since the last kill", err_tail);
        }

        st.iterations++;
        st.kills += r.killed;
        st.finished += r.done;
        st.acks += r.acks;
        st.acked_records += r.acked_max > prev_last ? r.acked_max - prev_last : 0;
        st.torn_truncated += dc.rec.torn_tail_truncated;
        st.killed_before_recovered += !r.have_recovered;
        st.policy_runs[policy]++;
        st.max_segments = dc.segments > st.max_segments ? dc.segments : st.max_segments;
        st.max_snapshots = dc.snapshots > st.max_snapshots ? dc.snapshots : st.max_snapshots;
        st.pruned_seen += dc.n > 0 && dc.first > 1;
        st.snapshot_used += dc.rec.snapshot_seq > 0;
        st.max_last_seq = dc.rec.last_seq > st.max_last_seq ? dc.rec.last_seq : st.max_last_seq;
        prev_last = dc.rec.last_seq;
        why[0] = '\0';
    }
    double secs = (double)(now_us() - t0) / 1e6;
    fprintf(stderr,
            "journal_crash_campaign {\"iterations\":%" PRIu64 ",\"seed\":%" PRIu64
            ",\"kills\":%" PRIu64 ",\"finished\":%" PRIu64 ",\"acks\":%" PRIu64
            ",\"acked_records\":%" PRIu64 ",\"torn_tails_truncated\":%" PRIu64
            ",\"killed_before_open\":%" PRIu64 ",\"dir_resets\":%" PRIu64
            ",\"max_segments\":%" PRIu64 ",\"max_snapshots\":%" PRIu64 ",\"pruned_seen\":%" PRIu64
            ",\"snapshot_used\":%" PRIu64 ",\"max_last_seq\":%" PRIu64 ",\"runs_always\":%" PRIu64
            ",\"runs_group\":%" PRIu64 ",\"runs_off\":%" PRIu64
            ",\"seconds\":%.1f,\"failures\":0}\n",
            st.iterations, base_seed, st.kills, st.finished, st.acks, st.acked_records,
            st.torn_truncated, st.killed_before_recovered, st.dir_resets, st.max_segments,
            st.max_snapshots, st.pruned_seen, st.snapshot_used, st.max_last_seq, st.policy_runs[0],
            st.policy_runs[1], st.policy_runs[2], secs);
    /* the campaign proved something: children got far enough to be killed
     * mid-stream with acknowledged records, segments rolled, snapshots were
     * used by recovery */
    if (iterations >= 50) {
        cr_expect_gt(st.acked_records, 0, "no child acknowledged anything before its kill");
        cr_expect_gt(st.kills, iterations / 2, "most children should die by SIGKILL");
        cr_expect_gt(st.max_segments, 1, "no segment ever rolled");
        cr_expect_gt(st.snapshot_used, 0, "recovery never started from a snapshot");
    }
}

/* A child that runs to the end: exit 0 and "done", every record there, and
 * a second child continues the same chain. */
Test(journal_crash, child_finishes_and_continues, .timeout = 120)
{
    char exe[PATH_BUF], dir[PATH_BUF], err_path[PATH_BUF], why[1024];
    child_path(exe, sizeof(exe));
    cr_assert_eq(access(exe, X_OK), 0, "journal_child not found at %s", exe);
    snprintf(dir, sizeof(dir), "%s/journal", tmp_root);
    snprintf(err_path, sizeof(err_path), "%s/child.stderr", tmp_root);
    struct dir_runs runs;
    memset(&runs, 0, sizeof(runs));
    uint64_t last = 0;
    static const char *const policies[] = {"always", "group", "off"};
    for (size_t k = 0; k < 3; k++) {
        char seed[32];
        snprintf(seed, sizeof(seed), "%zu", 77 + k);
        char *argv[] = {
            exe,        dir, (char *)policies[k], "250", seed, "seg_bytes=16384", "snap_every=100",
            "batch=16", NULL};
        struct child_run r;
        cr_assert_eq(run_child(argv, err_path, -1, false, &r), 0);
        char tail[1024];
        file_tail(err_path, tail, sizeof(tail));
        cr_assert(r.reaped && !r.killed && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
                  "child %zu: status %#x, stderr: %s", k, (unsigned)r.status, tail);
        cr_assert(r.have_recovered && r.rec_last == last, "child %zu recovered %" PRIu64, k,
                  r.rec_last);
        cr_assert(r.done && r.done_last == last + 250, "child %zu: done %" PRIu64, k, r.done_last);
        cr_assert_eq(r.acked_max, last + 250, "child %zu: last ack %" PRIu64, k, r.acked_max);
        cr_assert_eq(r.problem[0], '\0', "%s", r.problem);
        runs.first_seq[runs.n] = last + 1;
        runs.seed[runs.n] = 77 + k;
        runs.n++;
        struct dir_check dc;
        cr_assert(recover_and_check(tmp_root, dir, r.acked_max, &runs, &dc, why, sizeof(why)),
                  "after child %zu: %s", k, why);
        cr_assert_eq(dc.rec.last_seq, last + 250);
        cr_assert_not(dc.rec.torn_tail_truncated, "a clean stop leaves no torn tail");
        /* stop writes a snapshot at the last record */
        cr_assert_eq(dc.rec.snapshot_seq, last + 250, "snapshot %" PRIu64, dc.rec.snapshot_seq);
        cr_assert_gt(dc.segments, 1, "16 KiB segments must have rolled");
        last += 250;
    }
}

/* ---- 2. power loss through the filesystem boundary ------------------------------------------ */

/* A crash at one call: the trigger call and every later one fail with EIO
 * (the machine stopped there); the test then pulls the plug with
 * fake_fs_power_loss. An optional prerequisite call (pre_op on a path
 * containing pre_substr) must be seen first: "the fsync_dir right after a
 * new segment was opened". Runs under fake_fs's mutex: touches only its own
 * atomics. */
struct crash_spec {
    bool has_trigger;
    enum fake_fs_op op;
    const char *substr; /* NULL: any path */
    unsigned nth;       /* the nth matching call after the prerequisite */
    bool has_pre;
    enum fake_fs_op pre_op;
    const char *pre_substr;
};

struct crash_point {
    struct crash_spec spec;
    uint32_t sync_delay_us; /* every fdatasync takes this long (a slow disk): widens
                             * the window in which written data is not yet synced */
    atomic_bool armed;
    atomic_bool pre_seen;
    atomic_uint count;
    atomic_bool fired;
    char pre_path[PATH_BUF]; /* the path of the prerequisite call */
};

static bool path_has(const char *path, const char *substr)
{
    return substr == NULL || (path != NULL && strstr(path, substr) != NULL);
}

static int crash_hook(void *ctx, enum fake_fs_op op, const char *path, size_t len)
{
    struct crash_point *c = ctx;
    const struct crash_spec *sp = &c->spec;
    (void)len;
    if (atomic_load(&c->fired)) {
        return EIO;
    }
    if (op == FAKE_FS_FDATASYNC && c->sync_delay_us > 0 && atomic_load(&c->armed)) {
        sleep_for_us(c->sync_delay_us);
        if (atomic_load(&c->fired)) {
            return EIO; /* the power went while the disk was syncing */
        }
    }
    if (!sp->has_trigger || !atomic_load(&c->armed)) {
        return 0;
    }
    if (sp->has_pre && !atomic_load(&c->pre_seen)) {
        if (op == sp->pre_op && path_has(path, sp->pre_substr)) {
            cq_strlcpy(c->pre_path, path != NULL ? path : "", sizeof(c->pre_path));
            atomic_store(&c->pre_seen, true);
        }
        return 0;
    }
    if (op == sp->op && path_has(path, sp->substr) &&
        atomic_fetch_add(&c->count, 1) + 1 == sp->nth) {
        atomic_store(&c->fired, true);
        return EIO;
    }
    return 0;
}

struct pl_scenario {
    uint64_t seed;
    enum fake_fs_loss mode;
    enum cq_journal_fsync policy;
    uint64_t n_durable; /* phase A: appended and waited for */
    uint64_t n_more;    /* phase B: appended, not waited for */
    uint64_t seg_bytes;
    uint64_t snap_every;
    unsigned keep_snaps;
    bool snapshot_after_a;  /* request a snapshot after phase A and wait for it */
    bool snapshot_in_b;     /* request a snapshot in the middle of phase B */
    int64_t cut_delay_us;   /* no trigger: the machine stops this long after */
    uint64_t cut_after;     /* … the first cut_after records of phase B */
    bool must_fire;         /* wait for the trigger itself, not for the records */
    struct crash_point *cp; /* NULL: no trigger */
    /* after the power loss, before recovery: lose what fake_fs keeps
     * (directory entries are durable at once there) */
    void (*after_loss)(const char *dir, struct crash_point *cp);
};

struct pl_outcome {
    uint64_t acked; /* acknowledged durable before the cut */
    uint64_t last_appended;
    uint64_t unsynced_bytes;      /* at the cut */
    uint64_t snapshot_seq_before; /* the journal's snapshot before the cut */
    bool fired;
    struct dir_check dc;
};

static const char *const loss_names[3] = {"drop", "prefix", "reorder"};

static void scenario_str(const struct pl_scenario *s, char *out, size_t out_len)
{
    static const struct crash_spec no_spec;
    const struct crash_spec *sp = s->cp != NULL ? &s->cp->spec : &no_spec;
    snprintf(out, out_len,
             "seed %" PRIu64 " loss %s policy %s durable %" PRIu64 " more %" PRIu64
             " seg_bytes %" PRIu64 " snap_every %" PRIu64 " trigger %s op %d \"%s\" nth %u pre "
             "%d op %d \"%s\" cut_delay %lld us after %" PRIu64 " sync_delay %u us",
             s->seed, loss_names[s->mode], policy_names[s->policy], s->n_durable, s->n_more,
             s->seg_bytes, s->snap_every, sp->has_trigger ? "yes" : "no", (int)sp->op,
             sp->substr != NULL ? sp->substr : "", sp->nth, sp->has_pre, (int)sp->pre_op,
             sp->pre_substr != NULL ? sp->pre_substr : "", (long long)s->cut_delay_us, s->cut_after,
             s->cp != NULL ? s->cp->sync_delay_us : 0u);
}

/* Append records seed/first.. (count), retrying a full queue; stops at the
 * first refusal (the journal failed or paused). Returns how many went in. */
static uint64_t append_range(struct cq_journal *j, uint64_t seed, uint64_t first, uint64_t count)
{
    static struct jc_record rec;
    uint64_t done = 0;
    for (uint64_t s = first; s < first + count; s++) {
        jc_make(seed, s, &rec);
        uint64_t got = 0;
        int rc = -CQ_EFULL;
        for (int tries = 0; tries < 1000 && rc == -CQ_EFULL; tries++) {
            rc = cq_journal_append(j, rec.type, rec.scope, rec.payload, rec.payload_len, &got);
            if (rc == -CQ_EFULL) {
                sleep_for_us(1000);
            }
        }
        if (rc < 0) {
            break;
        }
        if (got != s) {
            break;
        }
        done++;
    }
    return done;
}

/* Poll the journal's stats until pred says stop or timeout_ms passes. */
static bool wait_stats(struct cq_journal *j,
                       bool (*pred)(const struct cq_journal_stats *st, void *ctx), void *ctx,
                       int64_t timeout_ms)
{
    int64_t until = now_us() + timeout_ms * 1000;
    for (;;) {
        struct cq_journal_stats st;
        cq_journal_get_stats(j, &st);
        if (pred(&st, ctx)) {
            return true;
        }
        if (now_us() > until) {
            return false;
        }
        sleep_for_us(200);
    }
}

struct settle_ctx {
    struct crash_point *cp;
    uint64_t snapshots_before;
    bool want_snapshot;
};

/* Everything appended is durable (and the snapshot asked for is written),
 * or the crash point fired, or the journal stopped making progress. */
static bool settled(const struct cq_journal_stats *st, void *vctx)
{
    struct settle_ctx *c = vctx;
    if (c->cp != NULL && atomic_load(&c->cp->fired)) {
        return true;
    }
    if (st->state == CQ_JOURNAL_FAILED) {
        return true;
    }
    return st->durable_seq == st->last_seq &&
           (!c->want_snapshot || st->snapshots_total > c->snapshots_before ||
            st->snapshot_seq == st->durable_seq);
}

/* A snapshot asked for is written, or none is needed: the newest one is
 * already at the last durable record. */
static bool trigger_fired(const struct cq_journal_stats *st, void *vctx)
{
    const struct crash_point *cp = vctx;
    (void)st;
    return atomic_load(&cp->fired);
}

static bool snapshot_written(const struct cq_journal_stats *st, void *vctx)
{
    const uint64_t *before = vctx;
    return st->snapshots_total > *before || st->snapshot_seq == st->durable_seq ||
           st->state != CQ_JOURNAL_OK;
}

/* Run one power-loss scenario in root (created). false and why when the
 * journal breaks a promise. */
static bool run_power_loss(const char *root, const struct pl_scenario *s, struct pl_outcome *o,
                           char *why, size_t why_len)
{
    char dir[PATH_BUF];
    struct cq_err err;
    memset(o, 0, sizeof(*o));
    why[0] = '\0';
    snprintf(dir, sizeof(dir), "%s/journal", root);
    struct fake_fs *ff = fake_fs_new(s->seed);
    if (ff == NULL) {
        snprintf(why, why_len, "fake_fs_new failed");
        return false;
    }
    struct crash_point none;
    memset(&none, 0, sizeof(none));
    struct crash_point *cp = s->cp != NULL ? s->cp : &none;
    fake_fs_set_hook(ff, crash_hook, cp);
    struct cq_journal_options jo = {
        .dir = dir,
        .fsync = s->policy,
        .segment_max_bytes = s->seg_bytes,
        .snapshot_every_records = s->snap_every,
        .snapshot_every_ms = 3600000,
        .keep_snapshots = s->keep_snaps,
        .verify_every_ms = 0,
        .pause_retry_ms = 5,
        .fs = fake_fs_ops(ff),
    };
    struct cq_journal_recovery rec;
    cq_err_clear(&err);
    struct cq_journal *j = cq_journal_open(&jo, &rec, &err);
    if (j == NULL) {
        snprintf(why, why_len, "open through fake_fs: %s", err.message);
        fake_fs_free(ff);
        return false;
    }
    if (cq_journal_start(j, &err) < 0) {
        snprintf(why, why_len, "start: %s", err.message);
        cq_journal_free(j);
        fake_fs_free(ff);
        return false;
    }

    /* phase A: durable records, in batches of 1..16 */
    uint64_t rng = jc_mix(s->seed ^ 0xA11CEULL);
    uint64_t next = 1;
    bool ok = true;
    while (next <= s->n_durable && ok) {
        uint64_t b = 1 + jc_rand(&rng) % 16;
        if (b > s->n_durable - next + 1) {
            b = s->n_durable - next + 1;
        }
        if (append_range(j, s->seed, next, b) != b) {
            snprintf(why, why_len, "phase A: append refused at seq %" PRIu64, next);
            ok = false;
            break;
        }
        next += b;
        int rc = cq_journal_wait_durable(j, next - 1, 10000);
        if (rc < 0) {
            snprintf(why, why_len, "phase A: wait_durable(%" PRIu64 "): %s", next - 1,
                     cq_strerror(rc));
            ok = false;
            break;
        }
        o->acked = next - 1;
    }
    if (ok && s->snapshot_after_a) {
        struct cq_journal_stats st;
        cq_journal_get_stats(j, &st);
        uint64_t before = st.snapshots_total;
        cq_journal_request_snapshot(j);
        if (!wait_stats(j, snapshot_written, &before, 10000)) {
            snprintf(why, why_len, "phase A: the requested snapshot never came");
            ok = false;
        }
    }

    /* phase B: more records, not waited for, with the crash point armed */
    struct settle_ctx sc = {.cp = s->cp, .want_snapshot = s->snapshot_in_b};
    if (ok) {
        struct cq_journal_stats st;
        cq_journal_get_stats(j, &st);
        o->snapshot_seq_before = st.snapshot_seq;
        sc.snapshots_before = st.snapshots_total;
        atomic_store(&cp->armed, true);
        bool moment = !cp->spec.has_trigger;
        uint64_t first = moment ? s->cut_after : s->n_more / 2;
        uint64_t n1 = append_range(j, s->seed, next, first);
        next += n1;
        if (s->snapshot_in_b) {
            cq_journal_request_snapshot(j);
        }
        if (moment) {
            sleep_for_us(s->cut_delay_us);
            atomic_store(&cp->fired, true); /* the machine stops at its next call */
        }
        if (n1 == first) {
            next += append_range(j, s->seed, next, s->n_more - first);
        }
        o->last_appended = next - 1;
        if (s->must_fire) {
            wait_stats(j, trigger_fired, cp, 10000);
        } else if (!moment) {
            wait_stats(j, settled, &sc, 10000);
        }
        /* what the journal has promised by now counts as acknowledged */
        cq_journal_get_stats(j, &st);
        if (st.durable_seq > o->acked) {
            o->acked = st.durable_seq;
        }
        o->unsynced_bytes = fake_fs_unsynced_bytes(ff);
        o->fired = atomic_load(&cp->fired) && cp->spec.has_trigger;
        if (fake_fs_power_loss(ff, s->mode) < 0) {
            snprintf(why, why_len, "fake_fs_power_loss failed");
            ok = false;
        }
    }
    (void)!cq_journal_stop(j, NULL); /* the machine is off: errors expected */
    cq_journal_free(j);
    fake_fs_power_on(ff);
    fake_fs_free(ff);
    if (!ok) {
        return false;
    }
    if (s->after_loss != NULL) {
        s->after_loss(dir, cp);
    }
    if (s->policy == CQ_JOURNAL_FSYNC_OFF) {
        o->acked = 0; /* off promises nothing against power loss */
    }

    /* recovery through the real filesystem */
    struct dir_runs runs = {.first_seq = {1}, .seed = {s->seed}, .n = 1};
    if (!recover_and_check_cut(root, dir, o->acked, &runs, true, &o->dc, why, why_len)) {
        return false;
    }
    if (o->dc.cut) {
        return true; /* checked: every acknowledged record live, the evidence kept */
    }
    if (o->dc.rec.last_seq > o->last_appended) {
        snprintf(why, why_len, "recovered seq %" PRIu64 " was never appended (last %" PRIu64 ")",
                 o->dc.rec.last_seq, o->last_appended);
        return false;
    }

    /* the journal goes on after the recovery: a new writer continues the chain */
    uint64_t seed2 = s->seed ^ 0x5A5A5A5AULL;
    uint64_t last = o->dc.rec.last_seq;
    struct cq_journal_options jo2 = {.dir = dir,
                                     .fsync = CQ_JOURNAL_FSYNC_GROUP,
                                     .segment_max_bytes = s->seg_bytes,
                                     .snapshot_every_records = s->snap_every,
                                     .keep_snapshots = s->keep_snaps};
    cq_err_clear(&err);
    j = cq_journal_open(&jo2, &rec, &err);
    if (j == NULL || rec.last_seq != last || cq_journal_start(j, &err) < 0) {
        snprintf(why, why_len, "reopen after recovery: %s (last %" PRIu64 " vs %" PRIu64 ")",
                 err.message, j != NULL ? rec.last_seq : 0, last);
        cq_journal_free(j);
        return false;
    }
    uint64_t added = append_range(j, seed2, last + 1, 20);
    int rc = added == 20 ? cq_journal_wait_durable(j, last + 20, 10000) : -CQ_EIO;
    cq_err_clear(&err);
    int src = cq_journal_stop(j, &err);
    cq_journal_free(j);
    if (rc < 0 || src < 0) {
        snprintf(why, why_len, "appending after recovery: %s / %s", cq_strerror(rc), err.message);
        return false;
    }
    runs.first_seq[1] = last + 1;
    runs.seed[1] = seed2;
    runs.n = 2;
    struct dir_check dc2;
    if (!recover_and_check(root, dir, last + 20, &runs, &dc2, why, why_len)) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "after appending past the recovery: %s", why);
        cq_strlcpy(why, tmp, why_len);
        return false;
    }
    return true;
}

/* The random part of a power-loss scenario: sizes, options, and where the
 * machine stops (a call of some kind, or just a moment). */
static void scenario_draw(uint64_t seed, enum fake_fs_loss mode, enum cq_journal_fsync policy,
                          struct pl_scenario *s, struct crash_point *cp)
{
    static const uint64_t seg_bytes[] = {4096, 8192, 16384, 1 << 20};
    static const uint64_t snap_every[] = {10, 25, 60, 100000};
    uint64_t rng = jc_mix(seed * 0x9E3779B97F4A7C15ULL + mode);
    memset(s, 0, sizeof(*s));
    memset(cp, 0, sizeof(*cp));
    struct crash_spec *sp = &cp->spec;
    s->seed = seed;
    s->mode = mode;
    s->policy = policy;
    s->n_durable = jc_rand(&rng) % 120;
    s->n_more = 1 + jc_rand(&rng) % 120;
    s->seg_bytes = seg_bytes[jc_rand(&rng) % 4];
    s->snap_every = snap_every[jc_rand(&rng) % 4];
    s->keep_snaps = 1 + (unsigned)(jc_rand(&rng) % 2);
    s->snapshot_after_a = s->n_durable > 0 && jc_rand(&rng) % 3 == 0;
    s->snapshot_in_b = jc_rand(&rng) % 3 == 0;
    s->cp = cp;
    switch (jc_rand(&rng) % 12) {
    case 0:
    case 1:
    case 2:
    case 3:
        /* just a moment: whatever is in flight, on a disk slow to sync */
        s->cut_after = jc_rand(&rng) % (s->n_more + 1);
        s->cut_delay_us = (int64_t)(jc_rand(&rng) % 3000);
        cp->sync_delay_us = (uint32_t)(jc_rand(&rng) % 400);
        return;
    case 4:
    case 5:
    case 6:
        /* the power goes during a segment's fdatasync: its data is written, not synced */
        *sp = (struct crash_spec){.has_trigger = true,
                                  .op = FAKE_FS_FDATASYNC,
                                  .substr = ".cqj",
                                  .nth = 1 + (unsigned)(jc_rand(&rng) % 3)};
        break;
    case 7:
        *sp = (struct crash_spec){.has_trigger = true,
                                  .op = FAKE_FS_WRITE,
                                  .substr = ".cqj",
                                  .nth = 1 + (unsigned)(jc_rand(&rng) % 6)};
        break;
    case 8:
        *sp = (struct crash_spec){
            .has_trigger = true, .op = FAKE_FS_FSYNC_DIR, .nth = 1 + (unsigned)(jc_rand(&rng) % 2)};
        break;
    case 9:
        *sp = (struct crash_spec){
            .has_trigger = true, .op = FAKE_FS_OPEN, .substr = ".cqj", .nth = 1};
        break;
    case 10:
        *sp = (struct crash_spec){
            .has_trigger = true, .op = FAKE_FS_RENAME, .substr = ".cqs", .nth = 1};
        s->snapshot_in_b = true;
        break;
    default:
        *sp = (struct crash_spec){.has_trigger = true, .op = FAKE_FS_UNLINK, .nth = 1};
        s->snapshot_in_b = true;
        break;
    }
}

static void power_loss_campaign(enum fake_fs_loss mode, bool with_off)
{
    uint64_t n = env_u64("CQ_POWER_LOSS_SEEDS", 40);
    uint64_t base = env_u64("CQ_CRASH_SEED", DEFAULT_SEED);
    uint64_t lost_unsynced = 0, fired = 0, torn = 0, acked = 0, cuts = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t seed = base + i * 7919 + (uint64_t)mode * 104729;
        enum cq_journal_fsync policy = with_off     ? CQ_JOURNAL_FSYNC_OFF
                                       : i % 2 == 0 ? CQ_JOURNAL_FSYNC_GROUP
                                                    : CQ_JOURNAL_FSYNC_ALWAYS;
        struct pl_scenario s;
        struct crash_point cp;
        scenario_draw(seed, mode, policy, &s, &cp);
        char root[SUB_MAX], why[1024], desc[512];
        snprintf(root, sizeof(root), "%s/pl-%" PRIu64, tmp_root, i);
        cr_assert_eq(mkdir(root, 0750), 0, "mkdir %s: %s", root, strerror(errno));
        struct pl_outcome o;
        int64_t t_start = now_us();
        bool ok = run_power_loss(root, &s, &o, why, sizeof(why));
        if (getenv("CQ_CRASH_VERBOSE") != NULL) {
            scenario_str(&s, desc, sizeof(desc));
            fprintf(stderr, "%lld ms: %s\n", (long long)(now_us() - t_start) / 1000, desc);
        }
        if (!ok) {
            keep_tmp = true;
            scenario_str(&s, desc, sizeof(desc));
            cr_assert_fail("power loss (%s) in %s: %s [acked %" PRIu64 ", appended %" PRIu64
                           ", unsynced %" PRIu64 " bytes at the cut, trigger fired %d]",
                           desc, root, why, o.acked, o.last_appended, o.unsynced_bytes, o.fired);
        }
        lost_unsynced += o.unsynced_bytes > 0;
        fired += o.fired;
        torn += o.dc.rec.torn_tail_truncated;
        cuts += o.dc.cut;
        acked += o.acked;
        rm_rf(root);
    }
    fprintf(stderr,
            "journal_power_loss {\"mode\":\"%s\",\"off\":%s,\"seeds\":%" PRIu64
            ",\"cut_with_unsynced_data\":%" PRIu64 ",\"triggers_fired\":%" PRIu64
            ",\"torn_tails_truncated\":%" PRIu64 ",\"cut_as_corrupt\":%" PRIu64
            ",\"acked_records\":%" PRIu64 "}\n",
            loss_names[mode], with_off ? "true" : "false", n, lost_unsynced, fired, torn, cuts,
            acked);
    if (n >= 20) {
        /* the campaign cut the power with something at stake */
        cr_expect_gt(lost_unsynced, 0, "never any unsynced data at the cut");
        cr_expect_gt(fired, 0, "no crash point ever fired");
        if (!with_off) {
            cr_expect_gt(acked, 0, "nothing was acknowledged");
        }
    }
}

Test(journal_crash, power_loss_drop, .timeout = 600)
{
    power_loss_campaign(FAKE_FS_LOSS_DROP, false);
}

Test(journal_crash, power_loss_prefix, .timeout = 600)
{
    power_loss_campaign(FAKE_FS_LOSS_PREFIX, false);
}

Test(journal_crash, power_loss_reorder, .timeout = 600)
{
    power_loss_campaign(FAKE_FS_LOSS_REORDER, false);
}

/* off: "durable" means written; after a power loss only the integrity
 * promises hold (recovery succeeds, verify ok, what is there is intact). */
Test(journal_crash, power_loss_off_policy, .timeout = 600)
{
    power_loss_campaign(FAKE_FS_LOSS_PREFIX, true);
}

/* ---- 2b. damage at rest: zeroed sectors, zeroed length fields, bit flips ------------------- */

enum dmg_kind { DMG_ZERO_SECTOR, DMG_ZERO_LENGTH, DMG_BIT_FLIP };
static const char *const dmg_names[3] = {"zero-sector", "zero-length", "bit-flip"};

struct dmg_rec {
    uint32_t segno;
    uint64_t off;
    uint32_t len;
};

struct dmg_outcome {
    bool cut, untouched, no_effect;
};

static uint8_t *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    struct stat st;
    uint8_t *b = NULL;
    if (fstat(fd, &st) == 0) {
        b = malloc((size_t)st.st_size + 1);
        if (b != NULL && pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
            free(b);
            b = NULL;
        }
        *len = (size_t)st.st_size;
    }
    close(fd);
    return b;
}

static bool write_all_file(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool ok = write(fd, b, len) == (ssize_t)len;
    close(fd);
    return ok;
}

/* The records of a segment file as written (the test's own parse). */
static size_t parse_records(const uint8_t *b, size_t n, uint32_t segno, struct dmg_rec *out,
                            size_t max)
{
    size_t k = 0;
    for (uint64_t off = CQJ_SEG_HDR_BYTES; off + CQJ_REC_HDR_BYTES <= n && k < max;) {
        uint32_t len = cqj_get32(b + off);
        if (len < CQJ_REC_MIN_BYTES || off + len > n) {
            break;
        }
        out[k].segno = segno;
        out[k].off = off;
        out[k].len = len;
        k++;
        off += len;
    }
    return k;
}

struct seen_ctx {
    uint64_t n_acked;
    uint8_t *live;    /* live[seq] = 1 when an intact child record seq is readable */
    uint64_t bad_seq; /* a record that is not the child's, or reuses a seq */
    char why[256];
};

static int seen_one(void *vctx, const struct cq_journal_record *rec)
{
    struct seen_ctx *c = vctx;
    if (rec->type == CQ_REC_QUARANTINE) {
        if (rec->seq <= c->n_acked) {
            c->bad_seq = rec->seq;
            snprintf(c->why, sizeof(c->why), "a quarantine record reuses seq %" PRIu64, rec->seq);
            return 1;
        }
        return 0;
    }
    uint64_t seed = 0;
    char why[256];
    if (rec->seq > c->n_acked || !jc_check(rec, &seed, why, sizeof(why))) {
        c->bad_seq = rec->seq;
        snprintf(c->why, sizeof(c->why), "live record %" PRIu64 " is not the one appended: %.180s",
                 rec->seq, rec->seq > c->n_acked ? "never appended" : why);
        return 1;
    }
    c->live[rec->seq] = 1;
    return 0;
}

/* One scenario: a journal of acknowledged records, one piece of damage at
 * rest in a sealed or the active segment, then a restart. Every
 * acknowledged record must be live afterwards, or the recovery must have
 * reported corruption with the damaged segment, byte for byte, in the
 * bundle (or, when a snapshot already summarises the damaged segment,
 * left every file untouched for verify to report); no torn-tail cut (all
 * of it was acknowledged) and no seq used twice. */
static bool run_damage(const char *root, uint64_t seed, struct dmg_outcome *o, char *why,
                       size_t why_len)
{
    char dir[PATH_BUF];
    struct cq_err err;
    memset(o, 0, sizeof(*o));
    snprintf(dir, sizeof(dir), "%s/journal", root);
    uint64_t rng = jc_mix(seed ^ 0xDA3A6EULL);
    uint64_t n_acked = 20 + jc_rand(&rng) % 120;
    bool keep_snapshot = jc_rand(&rng) % 4 == 0;
    enum dmg_kind kind = (enum dmg_kind)(jc_rand(&rng) % 3);
    struct cq_journal_options jo = {
        .dir = dir,
        .fsync = CQ_JOURNAL_FSYNC_GROUP,
        .segment_max_bytes = 4096 + jc_rand(&rng) % 60000,
        .snapshot_every_records = 1000000,
        .snapshot_every_ms = 3600000,
        .keep_snapshots = 2,
    };
    struct cq_journal_recovery rec;
    cq_err_clear(&err);
    struct cq_journal *j = cq_journal_open(&jo, &rec, &err);
    if (j == NULL || cq_journal_start(j, &err) < 0) {
        snprintf(why, why_len, "open: %s", err.message);
        cq_journal_free(j);
        return false;
    }
    for (uint64_t next = 1; next <= n_acked;) {
        uint64_t b = 1 + jc_rand(&rng) % 8;
        b = b > n_acked - next + 1 ? n_acked - next + 1 : b;
        if (append_range(j, seed, next, b) != b ||
            cq_journal_wait_durable(j, next + b - 1, 10000) != 0) {
            snprintf(why, why_len, "appending at %" PRIu64, next);
            (void)!cq_journal_stop(j, NULL);
            cq_journal_free(j);
            return false;
        }
        next += b;
    }
    if (cq_journal_stop(j, &err) < 0) {
        snprintf(why, why_len, "stop: %s", err.message);
        cq_journal_free(j);
        return false;
    }
    cq_journal_free(j);
    struct cq_journal__dirlist l;
    if (cq_journal__list_dir(dir, &l, &err) < 0 || l.n_segs == 0) {
        snprintf(why, why_len, "listing %s", dir);
        cq_journal__dirlist_fini(&l);
        return false;
    }
    if (!keep_snapshot) {
        for (size_t i = 0; i < l.n_snaps; i++) {
            char p[PATH_BUF];
            cq_journal__snap_path(p, sizeof(p), dir, l.snaps[i]);
            unlink(p);
        }
    }

    /* the target: a sealed segment or the active one */
    bool active = l.n_segs == 1 || jc_rand(&rng) % 2 == 0;
    uint32_t segno = active ? l.segs[l.n_segs - 1] : l.segs[jc_rand(&rng) % (l.n_segs - 1)];
    uint32_t last_segno = l.segs[l.n_segs - 1];
    cq_journal__dirlist_fini(&l);
    char path[PATH_BUF];
    cq_journal__seg_path(path, sizeof(path), dir, segno);
    size_t n = 0;
    uint8_t *b = read_all(path, &n);
    static struct dmg_rec recs[4096];
    size_t nrec = b != NULL ? parse_records(b, n, segno, recs, CQ_ARRAY_LEN(recs)) : 0;
    if (b == NULL || nrec == 0) {
        free(b);
        snprintf(why, why_len, "segment %u has no records", segno);
        return false;
    }
    uint64_t at = 0;
    if (kind == DMG_ZERO_SECTOR) {
        /* in the active segment an intact record must follow the sector:
         * zeros up to the end are what a lost page looks like, and no
         * reader can tell them from the tail of a crash */
        uint64_t limit = active ? recs[nrec - 1].off : n;
        if (limit < CQJ_ZERO_BLOCK) {
            kind = DMG_BIT_FLIP;
        } else {
            at = jc_rand(&rng) % (limit / CQJ_ZERO_BLOCK) * CQJ_ZERO_BLOCK;
            uint64_t end = at + CQJ_ZERO_BLOCK < n ? at + CQJ_ZERO_BLOCK : n;
            memset(b + at, 0, (size_t)(end - at));
        }
    }
    if (kind == DMG_ZERO_LENGTH) {
        at = recs[jc_rand(&rng) % nrec].off;
        memset(b + at, 0, 4);
    } else if (kind == DMG_BIT_FLIP) {
        at = jc_rand(&rng) % n;
        b[at] ^= (uint8_t)(1u << (jc_rand(&rng) % 8));
    }
    bool wrote = write_all_file(path, b, n);
    if (!wrote) {
        free(b);
        snprintf(why, why_len, "rewriting %s", path);
        return false;
    }
    /* every segment as it is now, damaged one included, for the checks */
    uint8_t *damaged = b;
    size_t damaged_len = n;

    cq_err_clear(&err);
    struct cq_journal_options jo2 = {
        .dir = dir, .fsync = CQ_JOURNAL_FSYNC_GROUP, .segment_max_bytes = jo.segment_max_bytes};
    j = cq_journal_open(&jo2, &rec, &err);
    if (j == NULL) {
        snprintf(why, why_len, "%s %s at segment %u offset %" PRIu64 ": open failed: %s",
                 dmg_names[kind], active ? "active" : "sealed", segno, at, err.message);
        free(damaged);
        return false;
    }
    cq_journal_free(j);
    snprintf(why, why_len, "%s in the %s segment %u (last %u) at offset %" PRIu64 ": ",
             dmg_names[kind], active ? "active" : "sealed", segno, last_segno, at);
    size_t wl = strlen(why);
    bool ok = true;
    if (rec.torn_tail_truncated) {
        snprintf(why + wl, why_len - wl,
                 "cut as a torn tail (%" PRIu64 " bytes): "
                 "acknowledged records dropped",
                 rec.torn_bytes);
        ok = false;
    }
    struct seen_ctx sc = {.n_acked = n_acked, .live = calloc(n_acked + 2, 1)};
    if (ok) {
        cq_err_clear(&err);
        int rrc = cq_journal_read_dir(dir, NULL, 0, seen_one, &sc, &err);
        if (sc.bad_seq != 0) {
            snprintf(why + wl, why_len - wl, "%s", sc.why);
            ok = false;
        } else if (rrc < 0 && rec.corrupt_segments != 0) {
            snprintf(why + wl, why_len - wl, "read after the cut: %s", err.message);
            ok = false;
        }
    }
    uint64_t missing = 0, first_missing = 0;
    for (uint64_t q = 1; ok && q <= n_acked; q++) {
        if (!sc.live[q]) {
            first_missing = first_missing == 0 ? q : first_missing;
            missing++;
        }
    }
    if (ok && missing > 0) {
        if (rec.corrupt_segments != 0) {
            /* reported: the damaged segment must be in the bundle as it was */
            char bundles[PATH_BUF];
            snprintf(bundles, sizeof(bundles), "%s/bundles", root);
            DIR *d = opendir(bundles);
            bool found = false;
            struct dirent *e;
            while (d != NULL && (e = readdir(d)) != NULL && !found) {
                if (strncmp(e->d_name, "journal-corrupt-", 16) != 0) {
                    continue;
                }
                char cp[PATH_BUF + 300];
                snprintf(cp, sizeof(cp), "%s/%s/seg-%08u.cqj", bundles, e->d_name, segno);
                size_t cl = 0;
                uint8_t *copy = read_all(cp, &cl);
                found = copy != NULL && cl == damaged_len && memcmp(copy, damaged, cl) == 0;
                free(copy);
            }
            if (d != NULL) {
                closedir(d);
            }
            if (!found) {
                snprintf(why + wl, why_len - wl,
                         "%" PRIu64 " acknowledged records from %" PRIu64
                         " cut, but the damaged segment is not in the bundle as it was",
                         missing, first_missing);
                ok = false;
            }
            o->cut = true;
        } else {
            /* not acted on: only allowed when every file is as it was */
            size_t now_len = 0;
            uint8_t *now = read_all(path, &now_len);
            bool same = now != NULL && now_len == damaged_len && memcmp(now, damaged, now_len) == 0;
            free(now);
            struct cq_journal_verify_report rep;
            bool reported = cq_journal_verify_dir(dir, NULL, &rep) == 0 && !rep.ok;
            if (!same || !reported || !keep_snapshot) {
                snprintf(why + wl, why_len - wl,
                         "%" PRIu64 " acknowledged records from %" PRIu64
                         " gone without a corruption report (file unchanged %d, verify "
                         "reports it %d)",
                         missing, first_missing, same, reported);
                ok = false;
            }
            o->untouched = true;
        }
    } else if (ok) {
        o->no_effect = rec.corrupt_segments == 0;
        o->cut = rec.corrupt_segments != 0;
    }
    if (ok && rec.corrupt_segments != 0 && rec.last_seq <= n_acked) {
        snprintf(why + wl, why_len - wl,
                 "the journal continues at seq %" PRIu64 " after %" PRIu64
                 " records: a seq would be used twice",
                 rec.last_seq + 1, n_acked);
        ok = false;
    }
    free(sc.live);
    free(damaged);
    return ok;
}

Test(journal_crash, damage_campaign, .timeout = 600)
{
    uint64_t n = env_u64("CQ_DAMAGE_SCENARIOS", 60);
    uint64_t base = env_u64("CQ_CRASH_SEED", DEFAULT_SEED);
    uint64_t cuts = 0, untouched = 0, no_effect = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t seed = base + i * 6007 + 17;
        char root[SUB_MAX], why[1024];
        snprintf(root, sizeof(root), "%s/dmg-%" PRIu64, tmp_root, i);
        cr_assert_eq(mkdir(root, 0750), 0, "mkdir %s: %s", root, strerror(errno));
        struct dmg_outcome o;
        if (!run_damage(root, seed, &o, why, sizeof(why))) {
            keep_tmp = true;
            cr_assert_fail("damage scenario %" PRIu64 " (seed %" PRIu64 ") in %s: %s", i, seed,
                           root, why);
        }
        cuts += o.cut;
        untouched += o.untouched;
        no_effect += o.no_effect;
        rm_rf(root);
    }
    fprintf(stderr,
            "journal_damage {\"scenarios\":%" PRIu64 ",\"cut_and_bundled\":%" PRIu64
            ",\"left_for_verify\":%" PRIu64 ",\"nothing_lost\":%" PRIu64 "}\n",
            n, cuts, untouched, no_effect);
    if (n >= 20) {
        cr_expect_gt(cuts, 0, "no scenario ever cut anything");
    }
}

/* ---- 3. crash points a kill cannot aim at -------------------------------------------------- */

/* fake_fs makes directory operations durable at once; a real filesystem
 * may lose one that no fsync_dir covered. These put the loss back by hand. */

/* The snapshot rename never reached the disk: the file is back under its
 * tmp name (its content was fdatasync'ed before the rename). */
static void lose_snapshot_rename(const char *dir, struct crash_point *cp)
{
    (void)dir;
    char final[PATH_BUF];
    size_t n = strlen(cp->pre_path);
    if (n > 4 && strcmp(cp->pre_path + n - 4, ".tmp") == 0 && n - 4 < sizeof(final)) {
        memcpy(final, cp->pre_path, n - 4);
        final[n - 4] = '\0';
        cr_assert_eq(rename(final, cp->pre_path), 0, "rename %s back: %s", final, strerror(errno));
    }
}

/* The new segment's directory entry never reached the disk. */
static void lose_new_segment(const char *dir, struct crash_point *cp)
{
    (void)dir;
    cr_assert_eq(unlink(cp->pre_path), 0, "unlink %s: %s", cp->pre_path, strerror(errno));
}

enum snap_expect { SNAP_ANY, SNAP_OLD, SNAP_NEWER };

struct fault_case {
    const char *name;
    struct crash_spec cp; /* where the machine stops */
    uint64_t n_durable, n_more, seg_bytes, snap_every;
    unsigned keep_snaps;
    bool snapshot_after_a, snapshot_in_b;
    void (*after_loss)(const char *dir, struct crash_point *cp);
    enum snap_expect snap; /* which snapshot recovery must start from */
};

#define CP(...)                                                                                    \
    {                                                                                              \
        .has_trigger = true, __VA_ARGS__                                                           \
    }

static const struct fault_case snapshot_cases[] = {
    {"snapshot: crash before the tmp file's fdatasync",
     CP(.op = FAKE_FS_FDATASYNC, .substr = ".cqs.tmp", .nth = 1), 60, 30, 1 << 20, 100000, 2, true,
     true, NULL, SNAP_OLD},
    {"snapshot: crash between the tmp write and the rename",
     CP(.op = FAKE_FS_RENAME, .substr = ".cqs", .nth = 1), 60, 30, 1 << 20, 100000, 2, true, true,
     NULL, SNAP_OLD},
    {"snapshot: crash after the rename, before the directory fsync (rename kept)",
     CP(.op = FAKE_FS_FSYNC_DIR, .nth = 1, .has_pre = true, .pre_op = FAKE_FS_RENAME,
        .pre_substr = ".cqs"),
     60, 30, 1 << 20, 100000, 2, true, true, NULL, SNAP_NEWER},
    {"snapshot: crash after the rename, before the directory fsync (rename lost)",
     CP(.op = FAKE_FS_FSYNC_DIR, .nth = 1, .has_pre = true, .pre_op = FAKE_FS_RENAME,
        .pre_substr = ".cqs"),
     60, 30, 1 << 20, 100000, 2, true, true, lose_snapshot_rename, SNAP_OLD},
};

static const struct fault_case segment_cases[] = {
    {"segment: crash at the new segment's creation",
     CP(.op = FAKE_FS_OPEN, .substr = ".cqj", .nth = 1), 30, 60, 4096, 100000, 2, false, false,
     NULL, SNAP_ANY},
    {"segment: crash before the new header's fdatasync",
     CP(.op = FAKE_FS_FDATASYNC, .substr = ".cqj", .nth = 1, .has_pre = true,
        .pre_op = FAKE_FS_OPEN, .pre_substr = ".cqj"),
     30, 60, 4096, 100000, 2, false, false, NULL, SNAP_ANY},
    {"segment: crash between creation and the directory fsync (entry kept)",
     CP(.op = FAKE_FS_FSYNC_DIR, .nth = 1, .has_pre = true, .pre_op = FAKE_FS_OPEN,
        .pre_substr = ".cqj"),
     30, 60, 4096, 100000, 2, false, false, NULL, SNAP_ANY},
    {"segment: crash between creation and the directory fsync (entry lost)",
     CP(.op = FAKE_FS_FSYNC_DIR, .nth = 1, .has_pre = true, .pre_op = FAKE_FS_OPEN,
        .pre_substr = ".cqj"),
     30, 60, 4096, 100000, 2, false, false, lose_new_segment, SNAP_ANY},
    {"segment: crash before the old segment's last fdatasync at a roll",
     CP(.op = FAKE_FS_FDATASYNC, .substr = ".cqj", .nth = 1), 30, 60, 4096, 100000, 2, false, false,
     NULL, SNAP_ANY},
};

static const struct fault_case retention_cases[] = {
    {"retention: crash before the old snapshot's unlink",
     CP(.op = FAKE_FS_UNLINK, .substr = ".cqs", .nth = 1), 40, 60, 4096, 15, 1, false, false, NULL,
     SNAP_ANY},
    {"retention: crash before the first segment's unlink",
     CP(.op = FAKE_FS_UNLINK, .substr = ".cqj", .nth = 1), 40, 60, 4096, 15, 1, false, false, NULL,
     SNAP_ANY},
    {"retention: crash in the middle of the segments' unlinks",
     CP(.op = FAKE_FS_UNLINK, .substr = ".cqj", .nth = 2), 40, 60, 4096, 15, 1, false, false, NULL,
     SNAP_ANY},
    {"retention: crash before the directory fsync after pruning",
     CP(.op = FAKE_FS_FSYNC_DIR, .nth = 1, .has_pre = true, .pre_op = FAKE_FS_UNLINK,
        .pre_substr = ".cqj"),
     40, 60, 4096, 15, 1, false, false, NULL, SNAP_ANY},
};

static void run_fault_cases(const struct fault_case *cases, size_t n_cases)
{
    static const enum cq_journal_fsync policies[] = {CQ_JOURNAL_FSYNC_GROUP,
                                                     CQ_JOURNAL_FSYNC_ALWAYS};
    unsigned k = 0;
    for (size_t i = 0; i < n_cases; i++) {
        for (int mode = 0; mode < 3; mode++) {
            for (size_t p = 0; p < CQ_ARRAY_LEN(policies); p++, k++) {
                const struct fault_case *fc = &cases[i];
                struct crash_point cp;
                memset(&cp, 0, sizeof(cp));
                cp.spec = fc->cp;
                struct pl_scenario s = {
                    .seed = 1000 + k,
                    .mode = (enum fake_fs_loss)mode,
                    .policy = policies[p],
                    .n_durable = fc->n_durable,
                    .n_more = fc->n_more,
                    .seg_bytes = fc->seg_bytes,
                    .snap_every = fc->snap_every,
                    .keep_snaps = fc->keep_snaps,
                    .snapshot_after_a = fc->snapshot_after_a,
                    .snapshot_in_b = fc->snapshot_in_b,
                    .cp = &cp,
                    .after_loss = fc->after_loss,
                    .must_fire = true,
                };
                char root[SUB_MAX], why[1024];
                snprintf(root, sizeof(root), "%s/fault-%u", tmp_root, k);
                cr_assert_eq(mkdir(root, 0750), 0, "mkdir %s: %s", root, strerror(errno));
                struct pl_outcome o;
                bool ok = run_power_loss(root, &s, &o, why, sizeof(why));
                if (ok && !o.fired) {
                    snprintf(why, sizeof(why), "the crash point was never reached");
                    ok = false;
                }
                if (ok && fc->snap == SNAP_OLD && o.dc.rec.snapshot_seq != o.snapshot_seq_before) {
                    snprintf(why, sizeof(why),
                             "recovery started from snapshot %" PRIu64
                             ", expected the older %" PRIu64,
                             o.dc.rec.snapshot_seq, o.snapshot_seq_before);
                    ok = false;
                }
                if (ok && fc->snap == SNAP_NEWER &&
                    o.dc.rec.snapshot_seq <= o.snapshot_seq_before) {
                    snprintf(why, sizeof(why),
                             "recovery started from snapshot %" PRIu64
                             ", expected the new one after %" PRIu64,
                             o.dc.rec.snapshot_seq, o.snapshot_seq_before);
                    ok = false;
                }
                if (!ok) {
                    keep_tmp = true;
                    cr_assert_fail("%s, loss %s, policy %s (in %s): %s [acked %" PRIu64
                                   ", appended %" PRIu64 ", unsynced %" PRIu64 " bytes]",
                                   fc->name, loss_names[mode], policy_names[policies[p]], root, why,
                                   o.acked, o.last_appended, o.unsynced_bytes);
                }
                rm_rf(root);
            }
        }
    }
}

Test(journal_crash, fault_snapshot_points, .timeout = 300)
{
    run_fault_cases(snapshot_cases, CQ_ARRAY_LEN(snapshot_cases));
}

Test(journal_crash, fault_segment_points, .timeout = 300)
{
    run_fault_cases(segment_cases, CQ_ARRAY_LEN(segment_cases));
}

Test(journal_crash, fault_retention_points, .timeout = 300)
{
    run_fault_cases(retention_cases, CQ_ARRAY_LEN(retention_cases));
}

/* ---- a kill, a restart, then the power ------------------------------------------------------- */

/* fake_fs makes a new directory entry durable at once. A real filesystem
 * keeps it only once the directory is fsync'ed: this hook remembers the
 * segment files created since the last fsync_dir, so the test can remove
 * them when it pulls the plug. It also stops the "process" at a crash
 * point like crash_hook. */
struct entry_watch {
    struct crash_point cp;
    char created[8][PATH_BUF]; /* segment files created since the last fsync_dir */
    size_t n_created;
    uint64_t fsync_dirs; /* fsync_dir calls that went through */
};

static int entry_hook(void *ctx, enum fake_fs_op op, const char *path, size_t len)
{
    struct entry_watch *w = ctx;
    int e = crash_hook(&w->cp, op, path, len);
    if (e != 0) {
        return e;
    }
    struct stat st;
    if (op == FAKE_FS_OPEN && path_has(path, ".cqj") && stat(path, &st) != 0 &&
        w->n_created < CQ_ARRAY_LEN(w->created)) {
        cq_strlcpy(w->created[w->n_created++], path, sizeof(w->created[0]));
    }
    if (op == FAKE_FS_FSYNC_DIR) {
        w->n_created = 0;
        w->fsync_dirs++;
    }
    return 0;
}

/* The writer is killed after creating a new segment and syncing its header,
 * before the directory fsync (a real SIGKILL can land there: the window is
 * one system call). The next process opens the journal, appends into that
 * segment and acknowledges. Then the power goes. Were the acknowledged
 * records' directory entry never fsync'ed, they are gone: the journal must
 * make a segment's entry durable before acknowledging records in it, even
 * when an earlier process created the file. */
Test(journal_crash, power_loss_after_restart_into_unsynced_segment, .timeout = 120)
{
    char dir[PATH_BUF], why[1024];
    snprintf(dir, sizeof(dir), "%s/journal", tmp_root);
    const uint64_t seed = 4242;
    static struct entry_watch w;
    memset(&w, 0, sizeof(w));
    w.cp.spec = (struct crash_spec){.has_trigger = true,
                                    .op = FAKE_FS_FSYNC_DIR,
                                    .nth = 1,
                                    .has_pre = true,
                                    .pre_op = FAKE_FS_OPEN,
                                    .pre_substr = ".cqj"};
    struct fake_fs *ff = fake_fs_new(seed);
    cr_assert_not_null(ff);
    fake_fs_set_hook(ff, entry_hook, &w);
    struct cq_err err;
    cq_err_clear(&err);

    /* process 1: 20 durable records, then killed in its next segment roll */
    struct cq_journal_options jo = {.dir = dir,
                                    .fsync = CQ_JOURNAL_FSYNC_GROUP,
                                    .segment_max_bytes = 4096,
                                    .fs = fake_fs_ops(ff)};
    struct cq_journal *j = cq_journal_open(&jo, NULL, &err);
    cr_assert_not_null(j, "open: %s", err.message);
    cr_assert_eq(cq_journal_start(j, &err), 0, "%s", err.message);
    cr_assert_eq(append_range(j, seed, 1, 20), 20);
    cr_assert_eq(cq_journal_wait_durable(j, 20, 10000), 0);
    struct cq_journal_stats st;
    cq_journal_get_stats(j, &st);
    uint32_t segments_before = st.segments;
    atomic_store(&w.cp.armed, true);
    uint64_t appended = 20 + append_range(j, seed, 21, 40);
    bool fired = wait_stats(j, trigger_fired, &w.cp, 10000);
    (void)!cq_journal_stop(j, NULL);
    cq_journal_free(j);
    cr_assert(fired, "process 1 never rolled to a new segment (%u segments)", segments_before);
    cr_assert_gt(w.n_created, 0, "the new segment's creation was not seen");
    char created[PATH_BUF];
    cq_strlcpy(created, w.created[w.n_created - 1], sizeof(created));

    /* process 2, same machine (the page cache and the new entry are still
     * there): recovers, appends into that segment, acknowledges */
    atomic_store(&w.cp.armed, false);
    atomic_store(&w.cp.fired, false);
    uint64_t fsync_dirs_before = w.fsync_dirs;
    struct cq_journal_recovery rec;
    jo.segment_max_bytes = 1 << 20; /* no roll of its own: its fsync_dir would hide the gap */
    j = cq_journal_open(&jo, &rec, &err);
    cr_assert_not_null(j, "reopen: %s", err.message);
    cr_assert(rec.last_seq >= 20 && rec.last_seq <= appended, "recovered %" PRIu64, rec.last_seq);
    cr_assert_eq(cq_journal_start(j, &err), 0, "%s", err.message);
    uint64_t first = rec.last_seq + 1;
    cr_assert_eq(append_range(j, seed, first, 10), 10);
    cr_assert_eq(cq_journal_wait_durable(j, first + 9, 10000), 0);
    uint64_t acked = first + 9;

    /* the power goes: unsynced data and un-fsync'ed directory entries */
    cr_assert_eq(fake_fs_power_loss(ff, FAKE_FS_LOSS_DROP), 0);
    (void)!cq_journal_stop(j, NULL);
    cq_journal_free(j);
    fake_fs_power_on(ff);
    fake_fs_free(ff);
    bool entry_lost = false;
    for (size_t i = 0; i < w.n_created; i++) {
        entry_lost |= unlink(w.created[i]) == 0;
    }

    struct dir_runs runs = {.first_seq = {1}, .seed = {seed}, .n = 1};
    struct dir_check dc;
    bool ok = recover_and_check(tmp_root, dir, acked, &runs, &dc, why, sizeof(why));
    if (!ok) {
        keep_tmp = true;
    }
    cr_assert(ok,
              "%s [segment %s created by process 1 before its kill; process 2 made %" PRIu64
              " fsync_dir calls before acknowledging seqs %" PRIu64 "..%" PRIu64
              "; entry lost at the power cut: %d]",
              why, created, w.fsync_dirs - fsync_dirs_before, first, acked, entry_lost);
}
