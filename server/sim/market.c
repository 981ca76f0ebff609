/*
 * market.c — coinquant-simex's market model (sim-market.h): the price path,
 * the public trades it implies, a synthetic book and 1m klines per symbol.
 *
 * Threads: none of its own and no queues. The simulator's market thread
 * calls cq_sim__market_advance() under the simulator lock; REST handlers read
 * klines, the ticker and the book under the same lock. Listener callbacks
 * run inside advance(); inside one, cq_sim__market_now_ms() is the time of the
 * event being reported (the kline callback has no time argument).
 *
 * Units. Each symbol computes in integers: a price is a count of ticks
 * (PRICE_FILTER tickSize), a quantity a count of steps (LOT_SIZE stepSize),
 * so every price is on the tick grid and every quantity on the step grid by
 * construction. cq_dec values are made at the edges: price = ticks x
 * tickSize at the tick's scale, quantity = steps x stepSize at the step's
 * scale (so "24934.2" in a CSV comes back as 24934.20). A trade's quote
 * amount is price x qty rounded half-even to 8 decimals, which is exact
 * whenever tick and step have at most 8 decimals between them (every real
 * symbol); kline and ticker quote volumes are exact sums of those amounts.
 * A sum too large for an int64 mantissa at 8 decimals loses decimals
 * (half-even) instead of overflowing. No double is used anywhere: the random
 * walk draws integer parts-per-million from the PRNG.
 *
 * Randomness: splitmix64, two streams per symbol seeded from the seed and the
 * symbol's name (FNV-1a): `path` plans bars and their trades, `book` draws
 * book quantities. Plans are drawn when a bar is scheduled and book draws
 * happen per trade, so the event stream depends on the data, the seed and
 * the sequence of advance()/set_paused() calls only — not on how finely
 * advance() slices time.
 *
 * Sources. CSV rows are validated once at load (strict: see load_csv) and
 * kept as ticks/steps. Rows keep their spacing: the file's first
 * min(history_bars, rows-1) rows become closed history before start_ms, the
 * next row opens exactly at start_ms (floored to the minute), and a gap in
 * the file (the 2023-03-24 halt: 80 minutes without rows) stays a gap — no
 * bar, no trade, no kline, no book change. Without data, a random walk per
 * symbol starts at 30000 (BTCUSDT), 2000 (ETHUSDT), 0.07 (DOGEUSDT) or 100,
 * snapped to the tick: each minute close = open x (1 + r), r the sum of four
 * uniform draws in [-500, 500] ppm; wicks up to 600 ppm beyond the body;
 * volume 0.2..3x a mean of 300,000 quote units per minute (at least 40
 * steps). history_bars of that walk are generated before start_ms.
 *
 * Inside a bar. 5..40 trades (seeded; at least the number of distinct
 * waypoints, at most the volume in steps; none for a zero-volume bar, whose
 * kline is o=h=l=c from the row). The path visits open -> the nearer extreme
 * (tie: the one farther from the close) -> the other extreme -> close; those
 * waypoints are trades, and the trades between two waypoints interpolate
 * linearly with a seeded jitter of up to a tenth of the bar's range, clamped
 * to [low, high]. Quantities are 1 step plus a seeded share of the rest, the
 * remainder handed out one step each from the first trade, so they add up
 * to the volume exactly. Times are sorted uniform draws in [open, open +
 * 59999]. A trade above the previous price is a taker buy (buyer_is_maker =
 * false), below a taker sell, level a seeded coin. Trade ids count up by one
 * per symbol from 1 (history trades included) and are given when a trade is
 * emitted, so they stay consecutive across a pause. History bars are built
 * from the same plans, so their quote volumes and trade counts are as real
 * as the live ones. Replaying a bar therefore reproduces its OHLCV exactly.
 *
 * Events, in time order across symbols (ties: lower symbol index first;
 * within a symbol: trades, then the forming kline, then the close):
 *   - a trade: on_trade, then on_book with the book re-centred on it;
 *   - the forming 1m kline at every 2 s mark of the bar (open + 2000k,
 *     k = 1..29), changed or not, like Binance's 2000 ms kline update speed:
 *     a quiet market still shows it is alive; a gap (no bar) sends nothing;
 *   - the close: exactly one closed kline at open + 59999, zero-volume bars
 *     included.
 * advance() returns the number of callbacks made (with or without a
 * listener).
 *
 * Book (per symbol, book_levels per side, 20 if 0): after a trade at p, a
 * taker buy leaves the best ask at p and the best bid one tick lower; a
 * taker sell the best bid at p and the best ask one tick higher. Levels are
 * one tick apart (bids stop at one tick). Each level holds (0.5..4 x the
 * current bar's average trade size) x (1 + level/10) steps, at least one
 * step. The initial book is built as after a taker buy at the last price.
 *
 * Pause (fault injection): advance() moves the clock and emits nothing;
 * the price and the book hold. A bar whose close passes during the pause is
 * closed silently with what traded before the pause (a flat zero-volume bar
 * if nothing did) and its unplayed trades are dropped. On resume at R, a bar
 * still open drops its trades at or before R and goes on; otherwise the
 * next source bar opens at the first minute boundary after R (the minutes
 * in between are a gap) and later rows keep their spacing from there.
 *
 * Exhaustion: after the last row the replay starts again at row 0, its open
 * one minute after the last bar's open, row spacing kept. Prices of that
 * loop are the file's prices x (last traded price / row 0's open), computed
 * exactly as ticks x num / den and rounded half-even to the tick, at least
 * one tick; row 0 therefore opens exactly at the last price and the order
 * low <= open, close <= high is preserved (rounding is monotonic). Volumes
 * are unchanged. The factor is always relative to the file, never compounded;
 * if it would leave [1/1000, 1000] or push a price past the value bound, the
 * loop replays unscaled (a visible jump, rather than an overflow).
 *
 * Klines for any interval are aggregated on request from the stored 1m bars
 * (the forming one included): intervals up to 1d and 3d are aligned to
 * multiples of their length since the epoch (UTC); 1w to Monday 00:00 UTC;
 * 1M to the calendar month in UTC (close = next month's start - 1), as
 * Binance does. A bucket without any 1m bar (a gap) is absent.
 *
 * Recorded book (options.book_recording; sim-recording.h reads the files).
 * A symbol with a recording replays it instead of a price path: its book
 * is the recorded order book, its tape the recorded trades, its klines and
 * ticker the 1m bars those trades build (no history bars before the start;
 * a minute without trades is a flat bar at the last price). The recording's
 * events happen in their recorded (receive) order at their receive times
 * shifted by one offset, so that the first live event happens at start_ms;
 * a trade's public time is its shifted receive time (the exchange's T is
 * not used: the collector's clock orders the events). Bootstrap, since the
 * diffs only carry changed levels: if a REST snapshot line comes within
 * the first book_warmup_ms (default 30 s) of the recording, the book is
 * that snapshot plus the diffs received before it that end after its
 * lastUpdateId, and the replay starts right after the snapshot line;
 * otherwise the replay starts after book_warmup_ms of recording (at most
 * half the events), the book being what the diffs and bookTickers of that
 * time built (a level that did not change then is missing until it does).
 * Events consumed by the bootstrap are not emitted (their trades are not
 * on the tape). Book rules: a depth diff sets each level it lists (0
 * removes it) unless its u is not after the book's; a bookTicker whose u is
 * after both the last diff's and the last bookTicker's sets the best bid
 * and ask with their quantities and removes levels better than them;
 * after an older diff the last newer bookTicker is applied again; a level
 * set by a diff removes the other side's levels at or through its price,
 * so the book is never crossed. Prices are ticks; book quantities are in
 * units of 1e-8 (levels hold resting orders from before a step size change,
 * e.g. 4690.34389600 on a 0.00001 step), trades in steps; anything off
 * those grids is refused at load. Each side keeps its best 20,000 levels
 * (REC_BOOK_SIDE_MAX; the worst is dropped and counted). A book event that
 * changes the book reports on_book with the best book_levels per side.
 * At the end the replay starts over REC_LOOP_GAP_MS (1 s) later from a
 * fresh bootstrap (prices unscaled: a visible jump); trade ids go on. A
 * pause shifts the replay by its length (nothing recorded is skipped).
 *
 * Bounds: CSV lines of at most 1024 bytes, at most 5,000,000 rows per file,
 * prices and volumes below 10^15 in their mantissa (so products fit in 128
 * bits), at most 262,144 stored 1m bars per symbol (the oldest quarter is
 * dropped when full), at most SIM_DEPTH_MAX levels per side.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cq/text.h"
#include "sim-market.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

#define I128_MAX ((i128)(((u128)1 << 127) - 1))

#define CSV_LINE_MAX 1024
#define CSV_ROWS_MAX 5000000
#define CSV_FIELDS_MAX 9
#define TRADES_MIN 5
#define TRADES_MAX 40
#define KLINE_PUSH_MS 2000
#define DAY_MS 86400000LL
#define BARS_MAX ((size_t)1 << 18)
#define BOOK_LEVELS_DEFAULT 20
#define MANTISSA_MAX 1000000000000000LL /* 10^15 */
#define RESCALE_LIMIT 1000
#define KLINES_LIMIT_DEFAULT 500
#define SYNTH_QUOTE_PER_MINUTE 300000
#define SYNTH_MOVE_PPM 500
#define SYNTH_WICK_PPM 600
#define PPM 1000000
#define REC_BOOK_SIDE_MAX 20000     /* levels per side of a replayed book */
#define REC_WARMUP_MS_DEFAULT 30000 /* recording time to build a book without a snapshot */
#define REC_LOOP_GAP_MS 1000        /* market time between a replay's end and its restart */
#define REC_PATHS_MAX 4096          /* bytes of the book_recording list */

/* ---- small integer helpers ------------------------------------------------ */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (hi >= lo). */
static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(uint64_t)(((u128)rng_next(r) * span) >> 64);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t floor_minute(int64_t ms)
{
    return floor_div(ms, SIM_MINUTE_MS) * SIM_MINUTE_MS;
}

static i128 pow10_wide(unsigned n)
{
    i128 p = 1;
    while (n-- > 0) {
        p *= 10;
    }
    return p;
}

/* n / d rounded half-even, n >= 0, d > 0. */
static i128 div_half_even(i128 n, i128 d)
{
    i128 q = n / d;
    i128 r = n - q * d;
    if (r > d - r || (r == d - r && (q & 1) != 0)) {
        q++;
    }
    return q;
}

static i128 sat_add(i128 a, i128 b)
{
    return a > I128_MAX - b ? I128_MAX : a + b;
}

/* A non-negative wide value at `scale` as a cq_dec, dropping decimals
 * (half-even, in one rounding) when the mantissa would not fit. */
static cq_dec dec_from_wide(i128 v, unsigned scale)
{
    unsigned drop = 0;
    while (drop < scale && v / pow10_wide(drop) > INT64_MAX) {
        drop++;
    }
    if (drop > 0) {
        v = div_half_even(v, pow10_wide(drop));
    }
    if (v > INT64_MAX) {
        v = INT64_MAX;
    }
    return cq_dec_make((int64_t)v, scale - drop);
}

/* ---- intervals ------------------------------------------------------------ */

enum iv_kind { IV_FIXED, IV_WEEK, IV_MONTH };

struct interval {
    const char *name;
    int64_t ms;
    enum iv_kind kind;
};

static const struct interval intervals[] = {
    {"1m", SIM_MINUTE_MS, IV_FIXED},        {"3m", 3 * SIM_MINUTE_MS, IV_FIXED},
    {"5m", 5 * SIM_MINUTE_MS, IV_FIXED},    {"15m", 15 * SIM_MINUTE_MS, IV_FIXED},
    {"30m", 30 * SIM_MINUTE_MS, IV_FIXED},  {"1h", 60 * SIM_MINUTE_MS, IV_FIXED},
    {"2h", 120 * SIM_MINUTE_MS, IV_FIXED},  {"4h", 240 * SIM_MINUTE_MS, IV_FIXED},
    {"6h", 360 * SIM_MINUTE_MS, IV_FIXED},  {"8h", 480 * SIM_MINUTE_MS, IV_FIXED},
    {"12h", 720 * SIM_MINUTE_MS, IV_FIXED}, {"1d", DAY_MS, IV_FIXED},
    {"3d", 3 * DAY_MS, IV_FIXED},           {"1w", 7 * DAY_MS, IV_WEEK},
    {"1M", 30 * DAY_MS, IV_MONTH},
};

static const struct interval *interval_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(intervals); i++) {
        if (strcmp(intervals[i].name, name) == 0) {
            return &intervals[i];
        }
    }
    return NULL;
}

int64_t cq_sim__interval_ms(const char *interval)
{
    const struct interval *iv = interval_find(interval);
    return iv != NULL ? iv->ms : -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_out, unsigned *m_out)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    *y_out = (int64_t)yoe + era * 400 + (m <= 2);
    *m_out = m;
}

static int64_t bucket_open(const struct interval *iv, int64_t t)
{
    switch (iv->kind) {
    case IV_WEEK: /* 1970-01-05 was a Monday */
        return floor_div(t - 4 * DAY_MS, iv->ms) * iv->ms + 4 * DAY_MS;
    case IV_MONTH: {
        int64_t y;
        unsigned m;
        civil_from_days(floor_div(t, DAY_MS), &y, &m);
        return days_from_civil(y, m, 1) * DAY_MS;
    }
    case IV_FIXED:
    default:
        return floor_div(t, iv->ms) * iv->ms;
    }
}

static int64_t bucket_close(const struct interval *iv, int64_t open_ms)
{
    if (iv->kind == IV_MONTH) {
        int64_t y;
        unsigned m;
        civil_from_days(floor_div(open_ms, DAY_MS), &y, &m);
        if (m == 12) {
            y++;
            m = 1;
        } else {
            m++;
        }
        return days_from_civil(y, m, 1) * DAY_MS - 1;
    }
    return open_ms + iv->ms - 1;
}

/* ---- the model ------------------------------------------------------------ */

/* A source bar: a CSV row (file times) or a generated bar. */
struct row {
    int64_t open_ms;
    int64_t o, h, l, c; /* ticks */
    int64_t volume;     /* steps */
};

/* A stored 1m bar, built from the trades that happened in it. */
struct bar {
    int64_t open_ms;
    int64_t o, h, l, c; /* ticks */
    int64_t volume;     /* steps */
    int64_t taker_buy_volume;
    i128 quote_e8; /* quote volume in units of 1e-8 */
    i128 taker_buy_quote_e8;
    uint64_t first_id, last_id;
    uint32_t trades;
    bool closed;
};

struct plan_trade {
    int64_t time_ms;
    int64_t price; /* ticks */
    int64_t qty;   /* steps */
    bool buyer_is_maker;
};

/* A replayed book's level: price in ticks, quantity in book units (not
 * steps: resting orders from before a step size change leave levels such
 * as 4690.34389600 BTC on a 0.00001 step). */
struct tq {
    int64_t p, q;
};

struct sym {
    char name[CQ_SYMBOL_LEN];
    cq_dec tick, step;  /* normalized, > 0 */
    int64_t price_max;  /* ticks: MANTISSA_MAX / tick.m */
    int64_t volume_max; /* steps */
    struct rng path_rng, book_rng;

    /* source: rows != NULL for CSV, else the random walk */
    struct row *rows; /* owned */
    size_t n_rows, cursor;
    int64_t row_offset_ms;        /* added to rows[].open_ms */
    int64_t rows_high_max;        /* ticks */
    int64_t scale_num, scale_den; /* this loop's prices: row x num / den */
    uint64_t loops;
    int64_t synth_volume; /* mean steps per minute of the walk */
    int64_t last_open_ms; /* open of the newest scheduled bar */

    /* stored 1m bars, oldest first; with `active` the newest is the bar
     * being played (its open may still be in the future) */
    struct bar *bars; /* owned */
    size_t n_bars, cap_bars;
    bool active;
    bool suspended; /* closed during a pause: next bar on resume */
    struct plan_trade plan[TRADES_MAX];
    size_t n_plan, next_plan;
    bool dirty; /* the forming bar changed since its last push */
    int64_t dirty_since_ms;

    int64_t last_price, last_qty; /* ticks, steps */
    uint64_t next_trade_id;
    int64_t avg_trade_qty; /* steps, for book sizes */

    struct cq_sim__level bids[SIM_DEPTH_MAX], asks[SIM_DEPTH_MAX];
    size_t n_bids, n_asks;
    uint64_t book_update_id;

    /* the newest SIM_TAPE_MAX public trades (GET trades / aggTrades), a ring:
     * tape[(tape_start + i) % SIM_TAPE_MAX] for i < tape_n, oldest first */
    struct cq_sim__public_trade tape[SIM_TAPE_MAX];
    size_t tape_start, tape_n;

    /* recorded-book replay (rec != NULL): see "Recorded book" */
    struct cq_sim__recording *rec; /* owned */
    size_t rec_cursor;             /* next event to replay */
    int64_t rec_offset_us;         /* market time (us) = recv_us + offset */
    int64_t rec_warmup_ms;
    struct tq *rb, *ra; /* owned, REC_BOOK_SIDE_MAX each: bids best (highest) first, asks lowest */
    size_t n_rb, n_ra;
    uint64_t rec_depth_u;  /* last depth update id applied (0: none) */
    uint64_t rec_ticker_u; /* last bookTicker applied */
    struct tq tk_bid, tk_ask;
    cq_dec bunit;      /* a replayed book's quantity unit: 1e-8 (or the step if finer) */
    int64_t bunit_max; /* units */
    struct cq_sim__replay_stats rstats;
};

struct cq_sim__market {
    struct sym *syms; /* owned */
    size_t n_syms;
    size_t book_levels;
    int64_t now_ms;
    bool paused;
    int64_t paused_at_ms;
    struct cq_sim__market_listener listener;
};

static cq_dec price_dec(const struct sym *s, int64_t ticks)
{
    return cq_dec_make(ticks * s->tick.m, s->tick.scale);
}

static cq_dec qty_dec(const struct sym *s, int64_t steps)
{
    return cq_dec_make(steps * s->step.m, s->step.scale);
}

static cq_dec volume_dec(const struct sym *s, i128 steps)
{
    return dec_from_wide(steps * s->step.m, s->step.scale);
}

/* price x qty in units of 1e-8, rounded half-even. */
static i128 quote_e8(const struct sym *s, int64_t price, int64_t qty)
{
    i128 prod = (i128)price * s->tick.m * ((i128)qty * s->step.m);
    unsigned sc = (unsigned)s->tick.scale + s->step.scale;
    if (sc <= 8) {
        return prod * pow10_wide(8 - sc);
    }
    return div_half_even(prod, pow10_wide(sc - 8));
}

/* ---- bars ----------------------------------------------------------------- */

/* Append a bar: the array doubles up to BARS_MAX; when it cannot grow (at
 * the bound, or out of memory) the oldest quarter is dropped instead. */
static void bars_push(struct sym *s, const struct bar *b)
{
    if (s->n_bars == s->cap_bars) {
        size_t ncap = s->cap_bars * 2 < BARS_MAX ? s->cap_bars * 2 : BARS_MAX;
        struct bar *nb = ncap > s->cap_bars ? realloc(s->bars, ncap * sizeof(*nb)) : NULL;
        if (nb != NULL) {
            s->bars = nb;
            s->cap_bars = ncap;
        } else {
            size_t drop = s->n_bars / 4 > 0 ? s->n_bars / 4 : 1;
            memmove(s->bars, s->bars + drop, (s->n_bars - drop) * sizeof(*s->bars));
            s->n_bars -= drop;
        }
    }
    s->bars[s->n_bars++] = *b;
}

static void bar_add_trade(struct sym *s, struct bar *b, const struct plan_trade *t, uint64_t id)
{
    i128 q = quote_e8(s, t->price, t->qty);
    if (b->trades == 0) {
        b->o = b->h = b->l = t->price;
        b->first_id = id;
    } else {
        b->h = t->price > b->h ? t->price : b->h;
        b->l = t->price < b->l ? t->price : b->l;
    }
    b->c = t->price;
    b->volume += t->qty;
    b->quote_e8 = sat_add(b->quote_e8, q);
    if (!t->buyer_is_maker) {
        b->taker_buy_volume += t->qty;
        b->taker_buy_quote_e8 = sat_add(b->taker_buy_quote_e8, q);
    }
    b->last_id = id;
    b->trades++;
    s->last_price = t->price;
    s->last_qty = t->qty;
    struct cq_sim__public_trade *slot;
    if (s->tape_n < SIM_TAPE_MAX) {
        slot = &s->tape[(s->tape_start + s->tape_n++) % SIM_TAPE_MAX];
    } else {
        slot = &s->tape[s->tape_start];
        s->tape_start = (s->tape_start + 1) % SIM_TAPE_MAX;
    }
    slot->trade_id = id;
    slot->price = price_dec(s, t->price);
    slot->qty = qty_dec(s, t->qty);
    slot->time_ms = t->time_ms;
    slot->buyer_is_maker = t->buyer_is_maker;
}

/* Plan the trades of bar r (see "Inside a bar" above). */
static void plan_bar(struct sym *s, const struct row *r)
{
    struct rng *g = &s->path_rng;
    int64_t w[4];
    size_t k = 0;
    size_t at[4];
    int64_t times[TRADES_MAX];
    int64_t weights[TRADES_MAX];

    s->n_plan = 0;
    s->next_plan = 0;
    if (r->volume == 0) {
        return;
    }
    bool high_first;
    if (r->h - r->o != r->o - r->l) {
        high_first = r->h - r->o < r->o - r->l;
    } else {
        high_first = r->h - r->c >= r->c - r->l;
    }
    int64_t path[4] = {r->o, high_first ? r->h : r->l, high_first ? r->l : r->h, r->c};
    for (size_t i = 0; i < 4; i++) {
        if (k == 0 || w[k - 1] != path[i]) {
            w[k++] = path[i];
        }
    }
    size_t n = (size_t)rng_range(g, TRADES_MIN, TRADES_MAX);
    if (n < k) {
        n = k;
    }
    if ((int64_t)n > r->volume) {
        n = (size_t)r->volume; /* >= k: checked at load */
    }

    /* trade index of each waypoint, spaced by leg length */
    at[0] = 0;
    if (k > 1) {
        int64_t total = 0;
        int64_t cum = 0;
        for (size_t j = 0; j + 1 < k; j++) {
            total += w[j + 1] > w[j] ? w[j + 1] - w[j] : w[j] - w[j + 1];
        }
        for (size_t j = 1; j + 1 < k; j++) {
            cum += w[j] > w[j - 1] ? w[j] - w[j - 1] : w[j - 1] - w[j];
            size_t idx = (size_t)(((i128)(n - 1) * cum + total / 2) / total);
            if (idx < at[j - 1] + 1) {
                idx = at[j - 1] + 1;
            }
            if (idx > n - 1 - (k - 1 - j)) {
                idx = n - 1 - (k - 1 - j);
            }
            at[j] = idx;
        }
        at[k - 1] = n - 1;
    }

    int64_t jitter = (r->h - r->l) / 10;
    size_t leg = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t p;
        while (k > 1 && leg + 2 < k && i >= at[leg + 1]) {
            leg++;
        }
        if (k == 1) {
            p = w[0];
        } else if (i == at[leg]) {
            p = w[leg];
        } else if (i == at[leg + 1]) {
            p = w[leg + 1];
        } else {
            i128 span = (i128)(w[leg + 1] - w[leg]) * (int64_t)(i - at[leg]);
            p = w[leg] + (int64_t)(span / (int64_t)(at[leg + 1] - at[leg]));
            if (jitter > 0) {
                p += rng_range(g, -jitter, jitter);
            }
            p = p < r->l ? r->l : p > r->h ? r->h : p;
        }
        s->plan[i].price = p;
    }

    /* times: sorted uniform draws within the minute */
    for (size_t i = 0; i < n; i++) {
        int64_t t = rng_range(g, 0, SIM_MINUTE_MS - 1);
        size_t j = i;
        while (j > 0 && times[j - 1] > t) {
            times[j] = times[j - 1];
            j--;
        }
        times[j] = t;
    }

    /* quantities: one step each plus a weighted share of the rest */
    int64_t wsum = 0;
    int64_t rest = r->volume - (int64_t)n;
    int64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        weights[i] = rng_range(g, 1, 1000);
        wsum += weights[i];
    }
    for (size_t i = 0; i < n; i++) {
        int64_t q = 1 + (int64_t)((i128)rest * weights[i] / wsum);
        s->plan[i].qty = q;
        given += q;
    }
    for (size_t i = 0; given < r->volume; i++) {
        s->plan[i].qty++;
        given++;
    }

    int64_t prev = s->last_price;
    for (size_t i = 0; i < n; i++) {
        struct plan_trade *t = &s->plan[i];
        t->time_ms = r->open_ms + times[i];
        if (t->price != prev) {
            t->buyer_is_maker = t->price < prev;
        } else {
            t->buyer_is_maker = (rng_next(g) & 1) != 0;
        }
        prev = t->price;
    }
    s->n_plan = n;
    s->avg_trade_qty = r->volume / (int64_t)n;
}

/* The bar entry for a scheduled row: flat at the row's price for a
 * zero-volume row, else at the last price until its first trade. */
static struct bar bar_for_row(const struct sym *s, const struct row *r)
{
    struct bar b;
    memset(&b, 0, sizeof(b));
    b.open_ms = r->open_ms;
    int64_t p = r->volume == 0 ? r->o : s->last_price;
    b.o = b.h = b.l = b.c = p;
    return b;
}

/* ---- sources -------------------------------------------------------------- */

static int64_t rescale_price(const struct sym *s, int64_t p)
{
    if (s->scale_num == s->scale_den) {
        return p;
    }
    int64_t v = (int64_t)div_half_even((i128)p * s->scale_num, s->scale_den);
    return v < 1 ? 1 : v;
}

/* Start the file over (see "Exhaustion" above). */
static void csv_loop(struct sym *s)
{
    int64_t num = s->last_price;
    int64_t den = s->rows[0].o;
    s->loops++;
    s->cursor = 0;
    s->row_offset_ms = s->last_open_ms + SIM_MINUTE_MS - s->rows[0].open_ms;
    if ((i128)num > (i128)den * RESCALE_LIMIT || (i128)num * RESCALE_LIMIT < (i128)den ||
        div_half_even((i128)s->rows_high_max * num, den) > s->price_max) {
        num = den = 1;
    }
    s->scale_num = num;
    s->scale_den = den;
}

static void synth_row(struct sym *s, int64_t open_ms, struct row *out)
{
    struct rng *g = &s->path_rng;
    int64_t o = s->last_price;
    int64_t move = 0;
    for (int i = 0; i < 4; i++) {
        move += rng_range(g, -SYNTH_MOVE_PPM, SYNTH_MOVE_PPM);
    }
    int64_t c = o + (int64_t)((i128)o * move / PPM);
    c = c < 1 ? 1 : c > s->price_max ? s->price_max : c;
    int64_t up = (int64_t)((i128)o * rng_range(g, 0, SYNTH_WICK_PPM) / PPM);
    int64_t down = (int64_t)((i128)o * rng_range(g, 0, SYNTH_WICK_PPM) / PPM);
    int64_t h = (o > c ? o : c) + up;
    int64_t l = (o < c ? o : c) - down;
    out->open_ms = open_ms;
    out->o = o;
    out->c = c;
    out->h = h > s->price_max ? s->price_max : h;
    out->l = l < 1 ? 1 : l;
    out->volume = (int64_t)((i128)s->synth_volume * rng_range(g, 20, 300) / 100);
    if (out->volume < TRADES_MAX) {
        out->volume = TRADES_MAX;
    }
}

/* The next source bar, opening no earlier than min_open_ms. */
static void source_next(struct sym *s, int64_t min_open_ms, struct row *out)
{
    if (s->rows == NULL) {
        synth_row(s, min_open_ms, out);
        return;
    }
    if (s->cursor == s->n_rows) {
        csv_loop(s);
    }
    const struct row *r = &s->rows[s->cursor++];
    int64_t open_ms = r->open_ms + s->row_offset_ms;
    if (open_ms < min_open_ms) {
        s->row_offset_ms += min_open_ms - open_ms;
        open_ms = min_open_ms;
    }
    out->open_ms = open_ms;
    out->o = rescale_price(s, r->o);
    out->h = rescale_price(s, r->h);
    out->l = rescale_price(s, r->l);
    out->c = rescale_price(s, r->c);
    out->volume = r->volume;
}

/* Schedule the next bar: store it, plan its trades. */
static void start_bar(struct sym *s, int64_t min_open_ms)
{
    struct row r;
    if (s->rec != NULL) {
        /* a replayed recording: the bar is made of the recorded trades */
        memset(&r, 0, sizeof(r));
        r.open_ms = min_open_ms;
        r.o = r.h = r.l = r.c = s->last_price;
        s->n_plan = s->next_plan = 0;
    } else {
        source_next(s, min_open_ms, &r);
    }
    struct bar b = bar_for_row(s, &r);
    bars_push(s, &b);
    if (s->rec == NULL) {
        plan_bar(s, &r);
    }
    s->last_open_ms = r.open_ms;
    s->active = true;
    s->suspended = false;
    /* Like Binance's kline streams (update speed 2000 ms), a forming bar is
     * pushed at every 2 s mark, changed or not: the first at open + 2000. */
    s->dirty = true;
    s->dirty_since_ms = r.open_ms + 1;
}

/* A closed history bar: planned and traded, nothing emitted. */
static void history_bar(struct sym *s, const struct row *r)
{
    struct bar b = bar_for_row(s, r);
    plan_bar(s, r);
    for (size_t i = 0; i < s->n_plan; i++) {
        bar_add_trade(s, &b, &s->plan[i], s->next_trade_id++);
    }
    s->n_plan = 0;
    b.closed = true;
    bars_push(s, &b);
    s->last_open_ms = r->open_ms;
}

/* ---- book ----------------------------------------------------------------- */

static void book_build(struct sym *s, size_t levels, int64_t price, bool buyer_is_maker)
{
    int64_t bid0 = buyer_is_maker ? price : price - 1;
    int64_t ask0 = buyer_is_maker ? price + 1 : price;
    if (bid0 < 1) {
        bid0 = 1;
        ask0 = 2;
    }
    s->n_bids = (int64_t)levels < bid0 ? levels : (size_t)bid0;
    s->n_asks = levels;
    int64_t avg = s->avg_trade_qty > 0 ? s->avg_trade_qty : 1;
    for (size_t side = 0; side < 2; side++) {
        struct cq_sim__level *lv = side == 0 ? s->bids : s->asks;
        size_t n = side == 0 ? s->n_bids : s->n_asks;
        for (size_t i = 0; i < n; i++) {
            i128 q = (i128)avg * rng_range(&s->book_rng, 50, 400) * (int64_t)(10 + i) / 1000;
            if (q < 1) {
                q = 1;
            }
            if (q > s->volume_max) {
                q = s->volume_max;
            }
            int64_t p = side == 0 ? bid0 - (int64_t)i : ask0 + (int64_t)i;
            lv[i].price = price_dec(s, p);
            lv[i].qty = qty_dec(s, (int64_t)q);
        }
    }
    s->book_update_id++;
}

/* ---- recorded book -------------------------------------------------------- */

/* v / unit exactly, in (0 or positive) units up to max; false otherwise. */
static bool to_units(cq_dec v, cq_dec unit, int64_t max, int64_t *out)
{
    cq_dec q;
    if (cq_dec_div(v, unit, 0, CQ_ROUND_EXACT, &q) < 0 || q.m < 0 || q.m > max) {
        return false;
    }
    *out = q.m;
    return true;
}

/* Is a better than b on this side? */
static bool better(bool bids, int64_t a, int64_t b)
{
    return bids ? a > b : a < b;
}

/* First index whose price is not better than p. */
static size_t side_pos(const struct tq *lv, size_t n, bool bids, int64_t p)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (better(bids, lv[mid].p, p)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Set the level at p to q (0 removes it). A full side keeps its best
 * REC_BOOK_SIDE_MAX levels: the worst goes (counted). */
static void side_set(struct sym *s, bool bids, int64_t p, int64_t q)
{
    struct tq *lv = bids ? s->rb : s->ra;
    size_t *n = bids ? &s->n_rb : &s->n_ra;
    size_t i = side_pos(lv, *n, bids, p);
    bool found = i < *n && lv[i].p == p;
    if (q == 0) {
        if (found) {
            memmove(&lv[i], &lv[i + 1], (*n - i - 1) * sizeof(*lv));
            (*n)--;
        }
        return;
    }
    if (found) {
        lv[i].q = q;
        return;
    }
    if (*n == REC_BOOK_SIDE_MAX) {
        s->rstats.levels_dropped++;
        if (i == *n) {
            return;
        }
        (*n)--;
    }
    memmove(&lv[i + 1], &lv[i], (*n - i) * sizeof(*lv));
    lv[i].p = p;
    lv[i].q = q;
    (*n)++;
}

/* Remove the levels better than p. */
static void side_trim_better(struct sym *s, bool bids, int64_t p)
{
    struct tq *lv = bids ? s->rb : s->ra;
    size_t *n = bids ? &s->n_rb : &s->n_ra;
    size_t k = side_pos(lv, *n, bids, p);
    if (k > 0) {
        memmove(lv, lv + k, (*n - k) * sizeof(*lv));
        *n -= k;
    }
}

/* Remove the levels at p or better (a price the other side now holds). */
static void side_trim_through(struct sym *s, bool bids, int64_t p)
{
    struct tq *lv = bids ? s->rb : s->ra;
    size_t *n = bids ? &s->n_rb : &s->n_ra;
    size_t k = 0;
    while (k < *n && !better(bids, p, lv[k].p)) {
        k++;
    }
    if (k > 0) {
        memmove(lv, lv + k, (*n - k) * sizeof(*lv));
        *n -= k;
    }
}

/* The last bookTicker is the newest truth about the top of the book. */
static void ticker_top(struct sym *s)
{
    side_trim_better(s, true, s->tk_bid.p);
    side_set(s, true, s->tk_bid.p, s->tk_bid.q);
    side_trim_better(s, false, s->tk_ask.p);
    side_set(s, false, s->tk_ask.p, s->tk_ask.q);
}

static bool apply_ticker(struct sym *s, const struct cq_sim__rec_event *e)
{
    struct tq b, a;
    if (e->u.ticker.update_id <= s->rec_depth_u || e->u.ticker.update_id <= s->rec_ticker_u ||
        !to_units(e->u.ticker.bid, s->tick, s->price_max, &b.p) ||
        !to_units(e->u.ticker.bid_qty, s->bunit, s->bunit_max, &b.q) ||
        !to_units(e->u.ticker.ask, s->tick, s->price_max, &a.p) ||
        !to_units(e->u.ticker.ask_qty, s->bunit, s->bunit_max, &a.q)) {
        return false; /* older than the book we have (or refused at load) */
    }
    s->rec_ticker_u = e->u.ticker.update_id;
    s->tk_bid = b;
    s->tk_ask = a;
    ticker_top(s);
    return true;
}

/* A depth diff: the changed levels, as of its u. */
static bool apply_depth(struct sym *s, const struct cq_sim__rec_event *e)
{
    if (e->u.depth.last_update_id <= s->rec_depth_u) {
        return false; /* already in the book (before a snapshot's id) */
    }
    const struct cq_sim__rec_level *lv = cq_sim__rec_bids(s->rec, e);
    for (uint32_t side = 0; side < 2; side++) {
        bool bids = side == 0;
        uint32_t n = bids ? e->u.depth.n_bids : e->u.depth.n_asks;
        const struct cq_sim__rec_level *l = bids ? lv : lv + e->u.depth.n_bids;
        for (uint32_t i = 0; i < n; i++) {
            int64_t p, q;
            if (to_units(l[i].price, s->tick, s->price_max, &p) &&
                to_units(l[i].qty, s->bunit, s->bunit_max, &q)) {
                side_set(s, bids, p, q);
                if (q > 0) {
                    side_trim_through(s, !bids, p); /* newer than what crosses it */
                }
            }
        }
    }
    s->rec_depth_u = e->u.depth.last_update_id;
    if (s->rec_ticker_u > s->rec_depth_u) {
        ticker_top(s);
    }
    return true;
}

/* A REST snapshot at event idx: the book is the snapshot, then the diffs
 * received before it that end after its lastUpdateId (Binance's
 * buffer-then-snapshot procedure; later ones follow in order). */
static void apply_snapshot(struct sym *s, size_t idx)
{
    const struct cq_sim__rec_event *e = &s->rec->events[idx];
    s->n_rb = s->n_ra = 0;
    s->rec_depth_u = 0;
    s->rec_ticker_u = 0;
    apply_depth(s, e);
    for (size_t j = 0; j < idx; j++) {
        const struct cq_sim__rec_event *d = &s->rec->events[j];
        if (d->kind == SIM_REC_DEPTH && d->u.depth.last_update_id > s->rec_depth_u) {
            apply_depth(s, d);
        }
    }
}

/* The exposed book: the best `levels` of each side. */
static void rec_view(struct sym *s, size_t levels)
{
    s->n_bids = s->n_rb < levels ? s->n_rb : levels;
    s->n_asks = s->n_ra < levels ? s->n_ra : levels;
    for (size_t i = 0; i < s->n_bids; i++) {
        s->bids[i].price = price_dec(s, s->rb[i].p);
        s->bids[i].qty = cq_dec_make(s->rb[i].q * s->bunit.m, s->bunit.scale);
    }
    for (size_t i = 0; i < s->n_asks; i++) {
        s->asks[i].price = price_dec(s, s->ra[i].p);
        s->asks[i].qty = cq_dec_make(s->ra[i].q * s->bunit.m, s->bunit.scale);
    }
    s->book_update_id++;
}

/* (Re)start the replay so that its first live event happens at start_ms:
 * build the book silently from the recording's first events (see "Recorded
 * book"), then shift the receive times. */
static void rec_start(struct sym *s, size_t levels, int64_t start_ms)
{
    const struct cq_sim__recording *r = s->rec;
    int64_t t0 = r->events[0].recv_us;
    int64_t last_trade = 0;
    size_t i = 0;
    s->n_rb = s->n_ra = 0;
    s->rec_depth_u = 0;
    s->rec_ticker_u = 0;
    for (; i < r->n_events / 2; i++) {
        const struct cq_sim__rec_event *e = &r->events[i];
        if (e->recv_us - t0 > s->rec_warmup_ms * 1000) {
            break;
        }
        if (e->kind == SIM_REC_TRADE) {
            to_units(e->u.trade.price, s->tick, s->price_max, &last_trade);
        } else if (e->kind == SIM_REC_BOOK_TICKER) {
            apply_ticker(s, e);
        } else if (e->kind == SIM_REC_DEPTH) {
            apply_depth(s, e);
        } else {
            apply_snapshot(s, i);
            i++;
            break;
        }
    }
    s->rec_cursor = i;
    s->rstats.warmup_events = i;
    s->rstats.events = 0;
    s->rec_offset_us = start_ms * 1000 - r->events[i].recv_us;
    if (last_trade > 0) {
        s->last_price = last_trade;
    } else if (s->n_rb > 0) {
        s->last_price = s->rb[0].p;
    } else if (s->n_ra > 0) {
        s->last_price = s->ra[0].p;
    } else if (s->last_price <= 0) {
        s->last_price = 1;
    }
    rec_view(s, levels);
}

static int64_t rec_next_ms(const struct sym *s)
{
    return floor_div(s->rec->events[s->rec_cursor].recv_us + s->rec_offset_us, 1000);
}

/* Every price and quantity of the recording fits the symbol's grid. */
static int rec_validate(const struct sym *s, const char *paths, struct cq_err *err)
{
    const struct cq_sim__recording *r = s->rec;
    char tick[CQ_DEC_STR_MAX], step[CQ_DEC_STR_MAX], v[CQ_DEC_STR_MAX];
    cq_dec_format(s->tick, tick, sizeof(tick));
    cq_dec_format(s->step, step, sizeof(step));
    for (size_t i = 0; i < r->n_events; i++) {
        const struct cq_sim__rec_event *e = &r->events[i];
        cq_dec prices[2], qtys[2];
        size_t np = 0;
        bool trade = e->kind == SIM_REC_TRADE;
        if (e->kind == SIM_REC_TRADE) {
            prices[0] = e->u.trade.price;
            qtys[0] = e->u.trade.qty;
            np = 1;
        } else if (e->kind == SIM_REC_BOOK_TICKER) {
            prices[0] = e->u.ticker.bid;
            qtys[0] = e->u.ticker.bid_qty;
            prices[1] = e->u.ticker.ask;
            qtys[1] = e->u.ticker.ask_qty;
            np = 2;
        }
        size_t nl = e->kind == SIM_REC_DEPTH || e->kind == SIM_REC_SNAPSHOT
                        ? (size_t)e->u.depth.n_bids + e->u.depth.n_asks
                        : 0;
        for (size_t k = 0; k < np + nl; k++) {
            cq_dec p = k < np ? prices[k] : r->levels[e->u.depth.level0 + (k - np)].price;
            cq_dec q = k < np ? qtys[k] : r->levels[e->u.depth.level0 + (k - np)].qty;
            int64_t u;
            if (!to_units(p, s->tick, s->price_max, &u)) {
                return cq_err_set(err, CQ_ECONFIG, 0,
                                  "replay a recording of a symbol with these filters",
                                  "%s: %s event %zu: price %s is not a multiple of the tick "
                                  "size %s (or too large)",
                                  paths, s->name, i + 1, cq_dec_format(p, v, sizeof(v)), tick);
            }
            if (!to_units(q, trade ? s->step : s->bunit, trade ? s->volume_max : s->bunit_max,
                          &u)) {
                return cq_err_set(
                    err, CQ_ECONFIG, 0, "replay a recording of a symbol with these filters",
                    "%s: %s event %zu: %s quantity %s is not a multiple of %s (or "
                    "too large)",
                    paths, s->name, i + 1, trade ? "trade" : "book", cq_dec_format(q, v, sizeof(v)),
                    trade ? step : cq_dec_format(s->bunit, tick, sizeof(tick)));
            }
        }
    }
    return 0;
}

/* ---- CSV ------------------------------------------------------------------ */

static const char *const field_names[CSV_FIELDS_MAX] = {"open_time_ms",  "open",         "high",
                                                        "low",           "close",        "volume",
                                                        "close_time_ms", "quote_volume", "trades"};

CQ_PRINTF(5, 6)
static int csv_fail(struct cq_err *err, const char *path, size_t line_no, const char *fix,
                    const char *fmt, ...)
{
    char problem[256];
    va_list ap;
    va_start(ap, fmt);
    /* may cut a quoted CSV field: the message still names file:line and
     * the rule, which is what the operator needs */
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return cq_err_set(err, CQ_EPARSE, 0, fix, "%s:%zu: %s; %s", path, line_no, problem, fix);
}

/* Strict non-negative integer (at most 18 digits). */
static bool parse_count(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 18) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parse field `f` as a positive price (tick multiple) or a non-negative
 * volume (step multiple) into units. */
static int parse_units(const char *path, size_t line_no, const char *text, size_t f, cq_dec unit,
                       int64_t max_units, bool positive, int64_t *out, struct cq_err *err)
{
    cq_dec v;
    cq_dec q;
    char ubuf[CQ_DEC_STR_MAX];
    const char *what = positive ? "tick size" : "step size";
    if (cq_dec_parse(text, (size_t)-1, &v) < 0) {
        return csv_fail(err, path, line_no, "write plain decimals such as 24934.2",
                        "%s '%s' is not a decimal number", field_names[f], text);
    }
    if (positive ? cq_dec_sign(v) <= 0 : cq_dec_sign(v) < 0) {
        return csv_fail(err, path, line_no, "fix the row", "%s %s must be %s", field_names[f], text,
                        positive ? "above zero" : "zero or more");
    }
    int rc = cq_dec_div(v, unit, 0, CQ_ROUND_EXACT, &q);
    if (rc == -CQ_ETOOBIG) {
        return csv_fail(err, path, line_no, "check the row's magnitude",
                        "%s %s is too large for the model", field_names[f], text);
    }
    if (rc < 0) {
        return csv_fail(err, path, line_no,
                        "give the symbol a tick/step size that divides the data, or fix the data",
                        "%s %s is not a multiple of the symbol's %s %s", field_names[f], text, what,
                        cq_dec_format(unit, ubuf, sizeof(ubuf)));
    }
    if (q.m > max_units) {
        return csv_fail(err, path, line_no, "check the row's magnitude",
                        "%s %s is too large for the model", field_names[f], text);
    }
    *out = q.m;
    return 0;
}

static int parse_row(const struct sym *s, const char *path, size_t line_no, char *line,
                     const struct row *prev, struct row *out, struct cq_err *err)
{
    char *field[CSV_FIELDS_MAX];
    size_t nf = 0;
    char *p = line;
    int64_t units[4];
    int rc;
    for (;;) {
        char *comma = strchr(p, ',');
        if (nf == CSV_FIELDS_MAX) {
            return csv_fail(err, path, line_no,
                            "use open_time_ms,open,high,low,close,volume,close_time_ms,"
                            "quote_volume,trades",
                            "more than %d fields", CSV_FIELDS_MAX);
        }
        field[nf++] = p;
        if (comma == NULL) {
            break;
        }
        *comma = '\0';
        p = comma + 1;
    }
    if (nf < 6) {
        return csv_fail(err, path, line_no,
                        "use open_time_ms,open,high,low,close,volume[,close_time_ms,"
                        "quote_volume,trades]",
                        "%zu fields, expected at least 6", nf);
    }
    if (!parse_count(field[0], &out->open_ms)) {
        return csv_fail(err, path, line_no, "write epoch milliseconds as digits",
                        "open_time_ms '%s' is not a time in milliseconds", field[0]);
    }
    if (out->open_ms % SIM_MINUTE_MS != 0) {
        return csv_fail(err, path, line_no, "give 1m klines whose open time is a whole minute",
                        "open_time_ms %s is not on a minute boundary", field[0]);
    }
    if (prev != NULL && out->open_ms <= prev->open_ms) {
        return csv_fail(err, path, line_no, "sort rows by open_time_ms and remove duplicates",
                        "open_time_ms %s is not after the previous row's %lld", field[0],
                        (long long)prev->open_ms);
    }
    for (size_t f = 1; f <= 4; f++) {
        rc = parse_units(path, line_no, field[f], f, s->tick, s->price_max, true, &units[f - 1],
                         err);
        if (rc < 0) {
            return rc;
        }
    }
    out->o = units[0];
    out->h = units[1];
    out->l = units[2];
    out->c = units[3];
    rc = parse_units(path, line_no, field[5], 5, s->step, s->volume_max, false, &out->volume, err);
    if (rc < 0) {
        return rc;
    }
    if (nf > 6 && field[6][0] != '\0') {
        int64_t close_ms;
        if (!parse_count(field[6], &close_ms) || close_ms != out->open_ms + SIM_MINUTE_MS - 1) {
            return csv_fail(err, path, line_no, "leave it empty or write open_time_ms + 59999",
                            "close_time_ms '%s' is not open_time_ms + 59999", field[6]);
        }
    }
    if (nf > 7 && field[7][0] != '\0') {
        cq_dec qv;
        if (cq_dec_parse(field[7], (size_t)-1, &qv) < 0 || cq_dec_sign(qv) < 0) {
            return csv_fail(err, path, line_no, "leave it empty or write a decimal",
                            "quote_volume '%s' is not a non-negative decimal", field[7]);
        }
    }
    if (nf > 8 && field[8][0] != '\0') {
        int64_t n;
        if (!parse_count(field[8], &n)) {
            return csv_fail(err, path, line_no, "leave it empty or write a count",
                            "trades '%s' is not a non-negative integer", field[8]);
        }
    }
    if (out->h < out->l) {
        return csv_fail(err, path, line_no, "fix the row", "high %s is below low %s", field[2],
                        field[3]);
    }
    if (out->o < out->l || out->o > out->h) {
        return csv_fail(err, path, line_no, "fix the row", "open %s is outside [low %s, high %s]",
                        field[1], field[3], field[2]);
    }
    if (out->c < out->l || out->c > out->h) {
        return csv_fail(err, path, line_no, "fix the row", "close %s is outside [low %s, high %s]",
                        field[4], field[3], field[2]);
    }
    if (out->volume == 0 && (out->o != out->h || out->l != out->h || out->c != out->h)) {
        return csv_fail(err, path, line_no, "a bar without volume has one price: o=h=l=c",
                        "volume is 0 but open/high/low/close differ");
    }
    if (out->volume > 0) {
        /* open, both extremes and the close must each be a trade of >= 1 step */
        int64_t need =
            1 + (out->h != out->o) + (out->l != out->o) + (out->c != out->h && out->c != out->l);
        if (out->volume < need) {
            return csv_fail(
                err, path, line_no, "a bar needs one step of volume per distinct price it visits",
                "volume %s is too small to trade through open/high/low/close", field[5]);
        }
    }
    return 0;
}

static int load_csv(struct sym *s, const char *path, struct cq_err *err)
{
    char buf[CSV_LINE_MAX + 2];
    size_t line_no = 0;
    size_t cap = 0;
    int rc = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return cq_err_set(err, CQ_EIO, errno,
                          "give --data a directory holding <SYMBOL>-1m.csv for every symbol",
                          "%s: cannot open kline data", path);
    }
    while (fgets(buf, sizeof(buf), f) != NULL) {
        size_t len = strlen(buf);
        line_no++;
        if (len > 0 && buf[len - 1] == '\n') {
            buf[--len] = '\0';
        } else if (!feof(f) || len > CSV_LINE_MAX) {
            rc = csv_fail(err, path, line_no, "each row is one short kline line",
                          "line longer than %d bytes", CSV_LINE_MAX);
            goto out;
        }
        if (len > 0 && buf[len - 1] == '\r') {
            buf[--len] = '\0';
        }
        if (len == 0) {
            rc = csv_fail(err, path, line_no, "remove blank lines", "empty line");
            goto out;
        }
        if (line_no == 1 && (buf[0] < '0' || buf[0] > '9')) {
            if (strncmp(buf, "open_time_ms,", 13) != 0) {
                rc = csv_fail(err, path, line_no,
                              "start with the header open_time_ms,open,high,low,close,volume,"
                              "close_time_ms,quote_volume,trades or with a data row",
                              "unexpected header");
                goto out;
            }
            continue;
        }
        if (s->n_rows == CSV_ROWS_MAX) {
            rc = csv_fail(err, path, line_no, "split the file or replay a shorter window",
                          "more than %d rows", CSV_ROWS_MAX);
            goto out;
        }
        if (s->n_rows == cap) {
            size_t ncap = cap == 0 ? 1024 : cap * 2;
            struct row *nr = realloc(s->rows, ncap * sizeof(*nr));
            if (nr == NULL) {
                rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "%s: out of memory at row %zu", path,
                                s->n_rows);
                goto out;
            }
            s->rows = nr;
            cap = ncap;
        }
        rc = parse_row(s, path, line_no, buf, s->n_rows > 0 ? &s->rows[s->n_rows - 1] : NULL,
                       &s->rows[s->n_rows], err);
        if (rc < 0) {
            goto out;
        }
        s->n_rows++;
    }
    if (ferror(f)) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the file", "%s: read error", path);
        goto out;
    }
    if (s->n_rows == 0) {
        rc = cq_err_set(err, CQ_EPARSE, 0, "give at least one kline row",
                        "%s:%zu: no kline rows; give at least one kline row", path, line_no);
        goto out;
    }
    for (size_t i = 0; i < s->n_rows; i++) {
        if (s->rows[i].h > s->rows_high_max) {
            s->rows_high_max = s->rows[i].h;
        }
    }
out:
    fclose(f);
    return rc;
}

/* ---- construction --------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    }
    return h;
}

static int64_t synth_start_price(const struct sym *s)
{
    static const struct {
        const char *symbol;
        const char *price;
    } starts[] = {{"BTCUSDT", "30000"}, {"ETHUSDT", "2000"}, {"DOGEUSDT", "0.07"}};
    const char *text = "100";
    cq_dec v;
    cq_dec q;
    for (size_t i = 0; i < CQ_ARRAY_LEN(starts); i++) {
        if (strcmp(starts[i].symbol, s->name) == 0) {
            text = starts[i].price;
        }
    }
    if (cq_dec_parse(text, (size_t)-1, &v) < 0 ||
        cq_dec_div(v, s->tick, 0, CQ_ROUND_HALF_EVEN, &q) < 0 || q.m < 1) {
        return 1;
    }
    return q.m > s->price_max ? s->price_max : q.m;
}

/* Mean steps per minute: SYNTH_QUOTE_PER_MINUTE / price / step. */
static int64_t synth_mean_volume(const struct sym *s, int64_t price)
{
    cq_dec base;
    cq_dec steps;
    if (cq_dec_div(cq_dec_make(SYNTH_QUOTE_PER_MINUTE, 0), price_dec(s, price), s->step.scale,
                   CQ_ROUND_DOWN, &base) < 0 ||
        cq_dec_div(base, s->step, 0, CQ_ROUND_DOWN, &steps) < 0 || steps.m < 100) {
        return 100;
    }
    return steps.m > s->volume_max / 4 ? s->volume_max / 4 : steps.m;
}

/* Load, check and start the replay of a recording (paths: a
 * comma-separated list of this symbol's files). */
static int rec_init(struct sym *s, const struct cq_sim__market_options *opts, const char *paths,
                    int64_t start, struct cq_err *err)
{
    const char *list[SIM_REC_FILES_MAX];
    char buf[REC_PATHS_MAX];
    size_t n = 0;
    cq_strlcpy(buf, paths, sizeof(buf)); /* bounded by the caller */
    for (char *p = buf; p != NULL && *p != '\0';) {
        char *comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (n == SIM_REC_FILES_MAX) {
            return cq_err_set(err, CQ_ECONFIG, 0, "give at most 64 recording files per symbol",
                              "%s: too many recording files", s->name);
        }
        list[n++] = p;
        p = comma != NULL ? comma + 1 : NULL;
    }
    s->bunit = s->step.scale >= 8 ? s->step : cq_dec_make(1, 8);
    s->bunit_max = MANTISSA_MAX / s->bunit.m;
    s->rec = cq_sim__recording_load(list, n, NULL, err);
    if (s->rec == NULL) {
        return -err->code;
    }
    int rc = rec_validate(s, paths, err);
    if (rc < 0) {
        return rc;
    }
    s->rb = malloc(REC_BOOK_SIDE_MAX * sizeof(*s->rb));
    s->ra = malloc(REC_BOOK_SIDE_MAX * sizeof(*s->ra));
    if (s->rb == NULL || s->ra == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "market: out of memory for %s's book", s->name);
    }
    s->rec_warmup_ms = opts->book_warmup_ms > 0 ? opts->book_warmup_ms : REC_WARMUP_MS_DEFAULT;
    s->rstats.replaying = true;
    rec_start(s, opts->book_levels, start);
    s->last_open_ms = start - SIM_MINUTE_MS;
    return 0;
}

static int sym_init(struct sym *s, const struct cq_sim__symbol *spec, size_t idx,
                    const struct cq_sim__market_options *opts, bool data_is_dir,
                    const char *rec_paths, struct cq_err *err)
{
    char path[4096];
    cq_strlcpy(s->name, spec->symbol, sizeof(s->name)); /* bounded: both CQ_SYMBOL_LEN */
    s->tick = cq_dec_normalize(spec->filters.tick_size);
    s->step = cq_dec_normalize(spec->filters.step_size);
    if (s->tick.m <= 0 || s->step.m <= 0 || s->tick.scale > CQ_DEC_MAX_SCALE ||
        s->step.scale > CQ_DEC_MAX_SCALE) {
        return cq_err_set(err, CQ_ECONFIG, 0, "give every symbol a tick size and a step size",
                          "symbol %zu (%s): tick size and step size must be above zero", idx,
                          spec->symbol);
    }
    s->price_max = MANTISSA_MAX / s->tick.m;
    s->volume_max = MANTISSA_MAX / s->step.m;
    uint64_t h = fnv1a(s->name);
    s->path_rng.s = opts->seed ^ h;
    rng_next(&s->path_rng);
    s->book_rng.s = (opts->seed ^ h) + 0x5851F42D4C957F2DULL;
    rng_next(&s->book_rng);
    s->next_trade_id = 1;
    s->scale_num = s->scale_den = 1;
    s->cap_bars = opts->history_bars + 1024 < BARS_MAX ? opts->history_bars + 1024 : BARS_MAX;
    s->bars = malloc(s->cap_bars * sizeof(*s->bars));
    if (s->bars == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "market: out of memory for %s", s->name);
    }
    int64_t start = floor_minute(opts->start_ms);
    if (rec_paths != NULL) {
        int rc = rec_init(s, opts, rec_paths, start, err);
        if (rc < 0) {
            return rc;
        }
        start_bar(s, start);
        return 0;
    }
    if (opts->data_path != NULL) {
        int n;
        if (data_is_dir) {
            n = snprintf(path, sizeof(path), "%s/%s-1m.csv", opts->data_path, s->name);
        } else {
            n = snprintf(path, sizeof(path), "%s", opts->data_path);
        }
        if (n < 0 || (size_t)n >= sizeof(path)) {
            return cq_err_set(err, CQ_ECONFIG, 0, "use a shorter path",
                              "data path for %s is too long", s->name);
        }
        int rc = load_csv(s, path, err);
        if (rc < 0) {
            return rc;
        }
        size_t hist = opts->history_bars < s->n_rows - 1 ? opts->history_bars : s->n_rows - 1;
        s->row_offset_ms = start - s->rows[hist].open_ms;
        s->last_price = s->rows[0].o;
        for (size_t i = 0; i < hist; i++) {
            struct row r = s->rows[i];
            r.open_ms += s->row_offset_ms;
            history_bar(s, &r);
        }
        s->cursor = hist;
        s->last_open_ms = start - SIM_MINUTE_MS;
    } else {
        s->last_price = synth_start_price(s);
        s->synth_volume = synth_mean_volume(s, s->last_price);
        for (size_t i = opts->history_bars; i > 0; i--) {
            struct row r;
            synth_row(s, start - (int64_t)i * SIM_MINUTE_MS, &r);
            history_bar(s, &r);
        }
    }
    start_bar(s, start);
    book_build(s, opts->book_levels, s->last_price, false);
    return 0;
}

/* Split opts->book_recording into each symbol's comma-separated files
 * (out[i] for opts->symbols[i], "" for none), by each file's stream symbol. */
static int group_recordings(const struct cq_sim__market_options *opts, char (*out)[REC_PATHS_MAX],
                            struct cq_err *err)
{
    const char *p = opts->book_recording;
    if (p == NULL) {
        return 0;
    }
    if (strlen(p) >= REC_PATHS_MAX) {
        return cq_err_set(err, CQ_ECONFIG, 0, "use shorter paths",
                          "the recording list is %zu bytes, more than %d", strlen(p),
                          REC_PATHS_MAX - 1);
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char path[REC_PATHS_MAX];
        char sym[CQ_SYMBOL_LEN];
        if (len == 0) {
            return cq_err_set(err, CQ_ECONFIG, 0, "separate recording files with single commas",
                              "empty path in the recording list");
        }
        memcpy(path, p, len);
        path[len] = '\0';
        int rc = cq_sim__recording_peek_symbol(path, sym, err);
        if (rc < 0) {
            return rc;
        }
        size_t i = 0;
        while (i < opts->n_symbols && strcmp(opts->symbols[i].symbol, sym) != 0) {
            i++;
        }
        if (i == opts->n_symbols) {
            return cq_err_set(err, CQ_ECONFIG, 0, "add the symbol to --symbols or drop the file",
                              "%s records %s, which is not one of the simulator's symbols", path,
                              sym);
        }
        size_t used = strlen(out[i]);
        /* fits: the whole list is shorter than REC_PATHS_MAX */
        snprintf(out[i] + used, REC_PATHS_MAX - used, "%s%s", used > 0 ? "," : "", path);
        p = end != NULL ? end + 1 : p + len;
    }
    return 0;
}

struct cq_sim__market *cq_sim__market_new(const struct cq_sim__market_options *opts,
                                          struct cq_err *err)
{
    struct cq_sim__market *m;
    bool data_is_dir = false;
    if (opts == NULL || opts->symbols == NULL || opts->n_symbols == 0 ||
        opts->n_symbols > SIM_SYMBOLS_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "configure at least one symbol and at most SIM_SYMBOLS_MAX",
                   "market: need 1 to %d symbols", SIM_SYMBOLS_MAX);
        return NULL;
    }
    if (opts->book_levels > SIM_DEPTH_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "use at most SIM_DEPTH_MAX levels per side",
                   "market: book_levels %zu exceeds %d", opts->book_levels, SIM_DEPTH_MAX);
        return NULL;
    }
    if (opts->data_path != NULL) {
        struct stat st;
        if (stat(opts->data_path, &st) == 0 && S_ISDIR(st.st_mode)) {
            data_is_dir = true;
        } else if (opts->n_symbols > 1) {
            cq_err_set(err, CQ_ECONFIG, 0,
                       "with several symbols give a directory holding <SYMBOL>-1m.csv",
                       "%s: not a directory", opts->data_path);
            return NULL;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "market: out of memory");
        return NULL;
    }
    m->syms = calloc(opts->n_symbols, sizeof(*m->syms));
    if (m->syms == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "market: out of memory");
        free(m);
        return NULL;
    }
    m->n_syms = opts->n_symbols;
    m->book_levels = opts->book_levels == 0 ? BOOK_LEVELS_DEFAULT : opts->book_levels;
    m->now_ms = floor_minute(opts->start_ms);
    struct cq_sim__market_options o = *opts;
    o.book_levels = m->book_levels;
    char(*rec_paths)[REC_PATHS_MAX] = calloc(SIM_SYMBOLS_MAX, REC_PATHS_MAX);
    if (rec_paths == NULL || group_recordings(opts, rec_paths, err) < 0) {
        if (rec_paths == NULL) {
            cq_err_set(err, CQ_ENOMEM, 0, NULL, "market: out of memory");
        }
        free(rec_paths);
        cq_sim__market_free(m);
        return NULL;
    }
    for (size_t i = 0; i < m->n_syms; i++) {
        if (sym_init(&m->syms[i], &opts->symbols[i], i, &o, data_is_dir,
                     rec_paths[i][0] != '\0' ? rec_paths[i] : NULL, err) < 0) {
            free(rec_paths);
            cq_sim__market_free(m);
            return NULL;
        }
    }
    free(rec_paths);
    return m;
}

void cq_sim__market_free(struct cq_sim__market *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->n_syms; i++) {
        free(m->syms[i].rows);
        free(m->syms[i].bars);
        cq_sim__recording_free(m->syms[i].rec);
        free(m->syms[i].rb);
        free(m->syms[i].ra);
    }
    free(m->syms);
    free(m);
}

void cq_sim__market_set_listener(struct cq_sim__market *m, const struct cq_sim__market_listener *l)
{
    if (l != NULL) {
        m->listener = *l;
    } else {
        memset(&m->listener, 0, sizeof(m->listener));
    }
}

/* ---- events --------------------------------------------------------------- */

enum ev_kind { EV_TRADE, EV_KLINE, EV_CLOSE, EV_REC };

static struct bar *cur_bar(struct sym *s)
{
    return &s->bars[s->n_bars - 1];
}

static bool sym_next_event(const struct sym *s, int64_t *t_out, enum ev_kind *kind_out)
{
    if (!s->active) {
        return false;
    }
    const struct bar *b = &s->bars[s->n_bars - 1];
    int64_t t = b->open_ms + SIM_MINUTE_MS - 1;
    enum ev_kind kind = EV_CLOSE;
    if (s->dirty) {
        int64_t since = s->dirty_since_ms - b->open_ms;
        int64_t slot = b->open_ms + (since + KLINE_PUSH_MS - 1) / KLINE_PUSH_MS * KLINE_PUSH_MS;
        if (slot < t) {
            t = slot;
            kind = EV_KLINE;
        }
    }
    if (s->next_plan < s->n_plan && s->plan[s->next_plan].time_ms <= t) {
        t = s->plan[s->next_plan].time_ms;
        kind = EV_TRADE;
    }
    if (s->rec != NULL && rec_next_ms(s) <= t) {
        t = rec_next_ms(s);
        kind = EV_REC;
    }
    *t_out = t;
    *kind_out = kind;
    return true;
}

static void bar_to_kline(const struct sym *s, const struct bar *b, struct cq_sim__kline *k)
{
    k->open_ms = b->open_ms;
    k->close_ms = b->open_ms + SIM_MINUTE_MS - 1;
    k->open = price_dec(s, b->o);
    k->high = price_dec(s, b->h);
    k->low = price_dec(s, b->l);
    k->close = price_dec(s, b->c);
    k->volume = volume_dec(s, b->volume);
    k->quote_volume = dec_from_wide(b->quote_e8, 8);
    k->taker_buy_base = volume_dec(s, b->taker_buy_volume);
    k->taker_buy_quote = dec_from_wide(b->taker_buy_quote_e8, 8);
    k->first_trade_id = b->first_id;
    k->last_trade_id = b->last_id;
    k->trades = b->trades;
    k->closed = b->closed;
}

static size_t visible_bars(const struct sym *s, int64_t now_ms);

/* The volume-weighted average price of the trades in the 1m bars that
 * overlap the last `mins` minutes (so up to mins + 1 minutes of trades:
 * the bars are the finest record kept), at 8 decimals rounded half-even;
 * with no trade there, the last price. *close_ms: the last trade's time as
 * far as the bars tell (the newest traded bar's open, or now). */
static cq_dec avg_price_of(const struct sym *s, int64_t now_ms, int mins, int64_t *close_ms)
{
    size_t n = visible_bars(s, now_ms);
    int64_t from = now_ms - (int64_t)mins * 60000 - 60000;
    i128 vol = 0, quote = 0;
    int64_t last = -1;
    for (size_t i = n; i > 0 && s->bars[i - 1].open_ms > from; i--) {
        const struct bar *b = &s->bars[i - 1];
        if (b->trades > 0) {
            vol += b->volume;
            quote = sat_add(quote, b->quote_e8);
            last = last < 0 ? b->open_ms : last;
        }
    }
    if (close_ms != NULL) {
        *close_ms = last < 0 ? now_ms : last;
    }
    if (vol <= 0 || s->step.m <= 0) {
        return price_dec(s, s->last_price);
    }
    /* quote_e8 * 1e-8 / (vol * step): scale 8 stays if multiplied by
     * 10^step.scale over step.m */
    return dec_from_wide(div_half_even(quote * pow10_wide(s->step.scale), vol * s->step.m), 8);
}

static void book_view(const struct sym *s, int64_t now_ms, struct cq_sim__book_view *out)
{
    out->bids = s->bids;
    out->n_bids = s->n_bids;
    out->asks = s->asks;
    out->n_asks = s->n_asks;
    out->last_price = price_dec(s, s->last_price);
    out->avg_price =
        s->last_price > 0 ? avg_price_of(s, now_ms, AVG_PRICE_MINS, NULL) : CQ_DEC_ZERO;
}

/* One recorded event, in recorded order: a trade goes on the tape and into
 * the bar (on_trade); a book event changes the book (on_book) unless it is
 * older than the book already is. At the end the replay starts over. */
static size_t process_rec(struct cq_sim__market *m, int idx, int64_t t)
{
    struct sym *s = &m->syms[idx];
    const struct cq_sim__rec_event *e = &s->rec->events[s->rec_cursor++];
    const struct cq_sim__market_listener *l = &m->listener;
    s->rstats.events++;
    if (e->kind == SIM_REC_TRADE) {
        struct plan_trade pt;
        struct cq_sim__public_trade pub;
        pt.time_ms = t;
        pt.buyer_is_maker = e->u.trade.buyer_is_maker;
        if (to_units(e->u.trade.price, s->tick, s->price_max, &pt.price) &&
            to_units(e->u.trade.qty, s->step, s->volume_max, &pt.qty)) {
            uint64_t id = s->next_trade_id++;
            bar_add_trade(s, cur_bar(s), &pt, id);
            if (!s->dirty) {
                s->dirty = true;
                s->dirty_since_ms = t;
            }
            pub.trade_id = id;
            pub.price = price_dec(s, pt.price);
            pub.qty = qty_dec(s, pt.qty);
            pub.time_ms = t;
            pub.buyer_is_maker = pt.buyer_is_maker;
            if (l->on_trade != NULL) {
                l->on_trade(l->ctx, idx, &pub);
            }
        }
    } else {
        bool changed = e->kind == SIM_REC_BOOK_TICKER ? apply_ticker(s, e)
                       : e->kind == SIM_REC_DEPTH     ? apply_depth(s, e)
                                                  : (apply_snapshot(s, s->rec_cursor - 1), true);
        if (changed) {
            struct cq_sim__book_view view;
            rec_view(s, m->book_levels);
            book_view(s, m->now_ms, &view);
            if (l->on_book != NULL) {
                l->on_book(l->ctx, idx, &view, s->book_update_id, t);
            }
        }
    }
    if (s->rec_cursor == s->rec->n_events) {
        s->rstats.loops++;
        rec_start(s, m->book_levels, t + REC_LOOP_GAP_MS);
    }
    return 1; /* one recorded event, whether or not it changed the book */
}

static size_t process_event(struct cq_sim__market *m, int idx, int64_t t, enum ev_kind kind)
{
    struct sym *s = &m->syms[idx];
    struct bar *b = cur_bar(s);
    const struct cq_sim__market_listener *l = &m->listener;
    struct cq_sim__kline k;
    m->now_ms = t;
    switch (kind) {
    case EV_REC:
        return process_rec(m, idx, t);
    case EV_TRADE: {
        const struct plan_trade *pt = &s->plan[s->next_plan++];
        uint64_t id = s->next_trade_id++;
        struct cq_sim__public_trade pub;
        struct cq_sim__book_view view;
        bar_add_trade(s, b, pt, id);
        if (!s->dirty) {
            s->dirty = true;
            s->dirty_since_ms = pt->time_ms;
        }
        book_build(s, m->book_levels, pt->price, pt->buyer_is_maker);
        pub.trade_id = id;
        pub.price = price_dec(s, pt->price);
        pub.qty = qty_dec(s, pt->qty);
        pub.time_ms = pt->time_ms;
        pub.buyer_is_maker = pt->buyer_is_maker;
        if (l->on_trade != NULL) {
            l->on_trade(l->ctx, idx, &pub);
        }
        book_view(s, m->now_ms, &view);
        if (l->on_book != NULL) {
            l->on_book(l->ctx, idx, &view, s->book_update_id, pt->time_ms);
        }
        return 2;
    }
    case EV_KLINE:
        /* The next push is at the next 2 s mark, whatever trades. */
        s->dirty = true;
        s->dirty_since_ms = t + 1;
        bar_to_kline(s, b, &k);
        if (l->on_kline != NULL) {
            l->on_kline(l->ctx, idx, &k);
        }
        return 1;
    case EV_CLOSE:
    default:
        b->closed = true;
        s->dirty = false;
        bar_to_kline(s, b, &k);
        start_bar(s, b->open_ms + SIM_MINUTE_MS);
        if (l->on_kline != NULL) {
            l->on_kline(l->ctx, idx, &k);
        }
        return 1;
    }
}

static bool market_next(const struct cq_sim__market *m, int *idx_out, int64_t *t_out,
                        enum ev_kind *kind_out)
{
    bool found = false;
    for (size_t i = 0; i < m->n_syms; i++) {
        int64_t t;
        enum ev_kind kind;
        if (sym_next_event(&m->syms[i], &t, &kind) && (!found || t < *t_out)) {
            found = true;
            *idx_out = (int)i;
            *t_out = t;
            *kind_out = kind;
        }
    }
    return found;
}

size_t cq_sim__market_advance(struct cq_sim__market *m, int64_t to_ms)
{
    size_t events = 0;
    if (to_ms < m->now_ms) {
        return 0;
    }
    if (m->paused) {
        for (size_t i = 0; i < m->n_syms; i++) {
            struct sym *s = &m->syms[i];
            if (s->active && cur_bar(s)->open_ms + SIM_MINUTE_MS - 1 <= to_ms) {
                cur_bar(s)->closed = true;
                s->next_plan = s->n_plan;
                s->dirty = false;
                s->active = false;
                s->suspended = true;
            }
        }
        m->now_ms = to_ms;
        return 0;
    }
    for (;;) {
        int idx;
        int64_t t;
        enum ev_kind kind;
        if (!market_next(m, &idx, &t, &kind) || t > to_ms) {
            break;
        }
        events += process_event(m, idx, t, kind);
    }
    m->now_ms = to_ms;
    return events;
}

int64_t cq_sim__market_next_event_ms(const struct cq_sim__market *m)
{
    int idx;
    int64_t t;
    enum ev_kind kind;
    if (m->paused || !market_next(m, &idx, &t, &kind)) {
        return INT64_MAX;
    }
    return t;
}

int64_t cq_sim__market_now_ms(const struct cq_sim__market *m)
{
    return m->now_ms;
}

void cq_sim__market_set_paused(struct cq_sim__market *m, bool paused)
{
    if (paused == m->paused) {
        return;
    }
    m->paused = paused;
    if (paused) {
        m->paused_at_ms = m->now_ms;
        return;
    }
    /* resume at now: what would have happened up to now did not */
    int64_t resume = m->now_ms;
    for (size_t i = 0; i < m->n_syms; i++) {
        struct sym *s = &m->syms[i];
        if (s->rec != NULL) {
            /* a replay goes on where it stopped: shift it by the pause */
            int64_t restart = s->active ? resume : floor_minute(resume) + SIM_MINUTE_MS;
            s->rec_offset_us += (restart - m->paused_at_ms) * 1000;
        }
        if (s->active) {
            while (s->next_plan < s->n_plan && s->plan[s->next_plan].time_ms <= resume) {
                s->next_plan++;
            }
            if (s->dirty && s->dirty_since_ms <= resume) {
                s->dirty_since_ms = resume + 1;
            }
        } else if (s->suspended) {
            start_bar(s, floor_minute(resume) + SIM_MINUTE_MS);
        }
    }
}

/* ---- queries -------------------------------------------------------------- */

void cq_sim__market_book(const struct cq_sim__market *m, int symbol_idx,
                         struct cq_sim__book_view *out)
{
    memset(out, 0, sizeof(*out));
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return;
    }
    book_view(&m->syms[symbol_idx], m->now_ms, out);
}

uint64_t cq_sim__market_book_update_id(const struct cq_sim__market *m, int symbol_idx)
{
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return 0;
    }
    return m->syms[symbol_idx].book_update_id;
}

size_t cq_sim__market_trades(const struct cq_sim__market *m, int symbol_idx, uint64_t from_id,
                             int64_t start_ms, int64_t end_ms, size_t limit,
                             void (*fn)(void *ctx, const struct cq_sim__public_trade *t), void *ctx)
{
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms || limit == 0) {
        return 0;
    }
    const struct sym *s = &m->syms[symbol_idx];
    size_t first = 0;
    size_t n = s->tape_n;
    bool filtered = from_id != 0 || start_ms != 0 || end_ms != 0;
    if (!filtered) {
        first = n > limit ? n - limit : 0; /* the most recent `limit` */
    }
    size_t count = 0;
    for (size_t i = first; i < n && count < limit; i++) {
        const struct cq_sim__public_trade *t = &s->tape[(s->tape_start + i) % SIM_TAPE_MAX];
        if (t->time_ms > m->now_ms || (from_id != 0 && t->trade_id < from_id) ||
            (start_ms != 0 && t->time_ms < start_ms) || (end_ms != 0 && t->time_ms > end_ms)) {
            continue;
        }
        fn(ctx, t);
        count++;
    }
    return count;
}

cq_dec cq_sim__market_avg_price(const struct cq_sim__market *m, int symbol_idx, int64_t *close_ms)
{
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        *close_ms = m->now_ms;
        return CQ_DEC_ZERO;
    }
    return avg_price_of(&m->syms[symbol_idx], m->now_ms, AVG_PRICE_MINS, close_ms);
}

cq_dec cq_sim__market_last_price(const struct cq_sim__market *m, int symbol_idx)
{
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return CQ_DEC_ZERO;
    }
    const struct sym *s = &m->syms[symbol_idx];
    return price_dec(s, s->last_price);
}

/* Bars that exist at `now` (a scheduled bar may open later). */
static size_t visible_bars(const struct sym *s, int64_t now_ms)
{
    size_t n = s->n_bars;
    while (n > 0 && s->bars[n - 1].open_ms > now_ms) {
        n--;
    }
    return n;
}

/* First index in [0, n) whose open_ms >= t. */
static size_t lower_bound(const struct bar *bars, size_t n, int64_t t)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bars[mid].open_ms < t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Aggregate bars [i, n) that share i's bucket; returns the index after. */
static size_t aggregate(const struct sym *s, const struct interval *iv, size_t i, size_t n,
                        int64_t now_ms, struct cq_sim__kline *k)
{
    int64_t open_ms = bucket_open(iv, s->bars[i].open_ms);
    int64_t close_ms = bucket_close(iv, open_ms);
    const struct bar *first = &s->bars[i];
    int64_t hi = first->h;
    int64_t lo = first->l;
    i128 vol = 0, tb_vol = 0, quote = 0, tb_quote = 0;
    uint64_t first_id = 0, last_id = 0;
    uint64_t trades = 0;
    size_t j = i;
    for (; j < n && s->bars[j].open_ms <= close_ms; j++) {
        const struct bar *b = &s->bars[j];
        hi = b->h > hi ? b->h : hi;
        lo = b->l < lo ? b->l : lo;
        vol += b->volume;
        tb_vol += b->taker_buy_volume;
        quote = sat_add(quote, b->quote_e8);
        tb_quote = sat_add(tb_quote, b->taker_buy_quote_e8);
        if (b->trades > 0) {
            if (first_id == 0) {
                first_id = b->first_id;
            }
            last_id = b->last_id;
        }
        trades += b->trades;
    }
    const struct bar *last = &s->bars[j - 1];
    k->open_ms = open_ms;
    k->close_ms = close_ms;
    k->open = price_dec(s, first->o);
    k->high = price_dec(s, hi);
    k->low = price_dec(s, lo);
    k->close = price_dec(s, last->c);
    k->volume = volume_dec(s, vol);
    k->quote_volume = dec_from_wide(quote, 8);
    k->taker_buy_base = volume_dec(s, tb_vol);
    k->taker_buy_quote = dec_from_wide(tb_quote, 8);
    k->first_trade_id = first_id;
    k->last_trade_id = last_id;
    k->trades = trades > UINT32_MAX ? UINT32_MAX : (uint32_t)trades;
    k->closed = last->closed && close_ms <= now_ms;
    return j;
}

int cq_sim__market_klines(const struct cq_sim__market *m, int symbol_idx, const char *interval,
                          int64_t start_ms, int64_t end_ms, size_t limit,
                          void (*fn)(void *ctx, const struct cq_sim__kline *k), void *ctx)
{
    const struct interval *iv = interval_find(interval);
    struct cq_sim__kline k;
    int count = 0;
    if (iv == NULL || symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return -CQ_EINVAL;
    }
    const struct sym *s = &m->syms[symbol_idx];
    size_t n = visible_bars(s, m->now_ms);
    if (limit == 0) {
        limit = KLINES_LIMIT_DEFAULT;
    }
    if (limit > INT32_MAX) {
        limit = INT32_MAX;
    }
    if (start_ms > 0) {
        /* buckets opening in [start, end], oldest first */
        size_t i = lower_bound(s->bars, n, start_ms);
        while (i < n && (size_t)count < limit) {
            int64_t open_ms = bucket_open(iv, s->bars[i].open_ms);
            if (end_ms > 0 && open_ms > end_ms) {
                break;
            }
            size_t next = aggregate(s, iv, i, n, m->now_ms, &k);
            if (open_ms >= start_ms) {
                if (fn != NULL) {
                    fn(ctx, &k);
                }
                count++;
            }
            i = next;
        }
        return count;
    }
    /* newest `limit` buckets opening at or before end */
    size_t hi = n;
    if (end_ms > 0) {
        hi = lower_bound(s->bars, n, end_ms + 1);
        if (hi > 0) {
            int64_t close_ms = bucket_close(iv, bucket_open(iv, s->bars[hi - 1].open_ms));
            while (hi < n && s->bars[hi].open_ms <= close_ms) {
                hi++;
            }
        }
    }
    size_t i = hi;
    size_t buckets = 0;
    while (i > 0 && buckets < limit) {
        int64_t open_ms = bucket_open(iv, s->bars[i - 1].open_ms);
        while (i > 0 && s->bars[i - 1].open_ms >= open_ms) {
            i--;
        }
        buckets++;
    }
    while (i < hi) {
        i = aggregate(s, iv, i, hi, m->now_ms, &k);
        if (fn != NULL) {
            fn(ctx, &k);
        }
        count++;
    }
    return count;
}

void cq_sim__market_ticker24(const struct cq_sim__market *m, int symbol_idx,
                             struct cq_sim__ticker24 *out)
{
    memset(out, 0, sizeof(*out));
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return;
    }
    const struct sym *s = &m->syms[symbol_idx];
    size_t n = visible_bars(s, m->now_ms);
    size_t i = lower_bound(s->bars, n, m->now_ms - DAY_MS + 1);
    int64_t hi = s->last_price;
    int64_t lo = s->last_price;
    i128 vol = 0, quote = 0;
    out->open = price_dec(s, i < n ? s->bars[i].o : s->last_price);
    if (i < n) {
        hi = s->bars[i].h;
        lo = s->bars[i].l;
    }
    for (; i < n; i++) {
        const struct bar *b = &s->bars[i];
        hi = b->h > hi ? b->h : hi;
        lo = b->l < lo ? b->l : lo;
        vol += b->volume;
        quote = sat_add(quote, b->quote_e8);
        if (b->trades > 0) {
            if (out->first_id == 0) {
                out->first_id = b->first_id;
            }
            out->last_id = b->last_id;
        }
        out->count += b->trades;
    }
    out->high = price_dec(s, hi);
    out->low = price_dec(s, lo);
    out->last = price_dec(s, s->last_price);
    out->last_qty = qty_dec(s, s->last_qty);
    out->volume = volume_dec(s, vol);
    out->quote_volume = dec_from_wide(quote, 8);
    if (s->n_bids > 0) {
        out->bid = s->bids[0].price;
        out->bid_qty = s->bids[0].qty;
    }
    if (s->n_asks > 0) {
        out->ask = s->asks[0].price;
        out->ask_qty = s->asks[0].qty;
    }
    out->close_ms = m->now_ms;
    out->open_ms = m->now_ms - DAY_MS;
}

void cq_sim__market_replay_stats(const struct cq_sim__market *m, int symbol_idx,
                                 struct cq_sim__replay_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return;
    }
    *out = m->syms[symbol_idx].rstats;
}

/* Take qty from the displayed level at `price` of one side (see
 * cq_sim__market_print_trade). */
static void deplete(struct sym *s, size_t levels, bool asks, int64_t price, cq_dec qty)
{
    if (s->rec != NULL) {
        struct tq *lv = asks ? s->ra : s->rb;
        size_t n = asks ? s->n_ra : s->n_rb;
        size_t i = side_pos(lv, n, !asks, price);
        int64_t q;
        if (i < n && lv[i].p == price && to_units(qty, s->bunit, s->bunit_max, &q)) {
            side_set(s, !asks, price, lv[i].q > q ? lv[i].q - q : 0);
            rec_view(s, levels);
        }
        return;
    }
    struct cq_sim__level *lv = asks ? s->asks : s->bids;
    size_t *n = asks ? &s->n_asks : &s->n_bids;
    cq_dec p = price_dec(s, price);
    for (size_t i = 0; i < *n; i++) {
        if (cq_dec_cmp(lv[i].price, p) != 0) {
            continue;
        }
        cq_dec left;
        if (cq_dec_cmp(lv[i].qty, qty) > 0 && cq_dec_sub(lv[i].qty, qty, &left) == 0) {
            lv[i].qty = left;
        } else {
            memmove(&lv[i], &lv[i + 1], (*n - i - 1) * sizeof(*lv));
            (*n)--;
        }
        s->book_update_id++;
        return;
    }
}

int cq_sim__market_print_trade(struct cq_sim__market *m, int symbol_idx, cq_dec price, cq_dec qty,
                               bool buyer_is_maker, struct cq_sim__public_trade *out)
{
    if (symbol_idx < 0 || (size_t)symbol_idx >= m->n_syms) {
        return -CQ_EINVAL;
    }
    struct sym *s = &m->syms[symbol_idx];
    struct plan_trade pt;
    if (!to_units(price, s->tick, s->price_max, &pt.price) || pt.price <= 0 ||
        !to_units(qty, s->step, s->volume_max, &pt.qty) || pt.qty <= 0) {
        return -CQ_EINVAL;
    }
    pt.time_ms = m->now_ms;
    pt.buyer_is_maker = buyer_is_maker;
    uint64_t id = s->next_trade_id++;
    if (s->n_bars > 0 && s->active && cur_bar(s)->open_ms <= m->now_ms && !cur_bar(s)->closed) {
        bar_add_trade(s, cur_bar(s), &pt, id);
        if (!s->dirty) {
            s->dirty = true;
            s->dirty_since_ms = m->now_ms;
        }
    } else {
        /* no bar open now (a gap, a pause): on the tape only */
        struct bar scratch;
        memset(&scratch, 0, sizeof(scratch));
        bar_add_trade(s, &scratch, &pt, id);
    }
    deplete(s, m->book_levels, !buyer_is_maker, pt.price, qty);
    out->trade_id = id;
    out->price = price_dec(s, pt.price);
    out->qty = qty_dec(s, pt.qty);
    out->time_ms = m->now_ms;
    out->buyer_is_maker = buyer_is_maker;
    return 0;
}
