/*
 * indicators_cli.c — `coinquantd indicators`, the research tool a strategy
 * author runs to see what the engine sees: klines from a CSV file in the
 * ../shared/data format (plain or gzip) through an indicator set, one output
 * row per candle.
 *
 *   coinquantd indicators --data FILE.csv[.gz] --indicators SPEC [--format csv|json]
 *
 * Input, read strictly: an optional header line (exactly the documented
 * one), then rows of 9 comma-separated fields
 *   open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades
 * with integer times (0 .. CLI_TIME_MS_MAX), exact decimals (cq_dec_parse: no exponent, no '+',
 * no spaces), prices > 0, low <= open, close <= high, volume >= 0,
 * close_time_ms >= open_time_ms, open_time_ms strictly increasing, and the
 * last two fields empty or a decimal / a whole number. Lines end in "\n"
 * (a "\r" before it is tolerated) and are at most CLI_LINE_MAX bytes. Any
 * other line stops the run with "FILE:LINE: what is wrong" and exit 1; a
 * usage or spec error is exit 2.
 *
 * Output: a header "open_time,close,<columns>" then one row per candle
 * (csv, an empty cell during a column's warm-up), or one JSON object per
 * candle (json, null during warm-up). The close is printed exactly as
 * cq_dec_format gives it; indicator values in the shortest form that reads
 * back to the same double (%.15g, else %.16g, else %.17g).
 *
 * Runs on the calling thread of a one-shot command; no engine state.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cq/decimal.h"
#include "cq/indicators.h"

#define CLI_LINE_MAX 1024 /* bytes in one CSV line, newline excluded */
/* open_time_ms / close_time_ms: 0 .. the last millisecond of year 9999, the
 * latest time RFC 3339 can write. */
#define CLI_TIME_MS_MAX INT64_C(253402300799999)
#define CLI_TIME_MS_MAX_TEXT "9999-12-31T23:59:59.999Z"
#define CLI_COUNT_MAX INT64_C(999999999999999999) /* trades: 18 digits */
#define CLI_READ_CHUNK (1 << 16)                  /* bytes per gzread */
#define CLI_FIELDS 9
#define EXIT_IO 1
#define EXIT_USAGE 2

static const char klines_header[] =
    "open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades";

static const char *const field_names[CLI_FIELDS] = {"open_time_ms",  "open",         "high",
                                                    "low",           "close",        "volume",
                                                    "close_time_ms", "quote_volume", "trades"};

enum out_format {
    FORMAT_CSV,
    FORMAT_JSON,
};

static void usage(FILE *out)
{
    fputs("usage: coinquantd indicators --data FILE.csv[.gz] --indicators SPEC\n"
          "                             [--format csv|json]\n"
          "\n"
          "Reads klines in the ../shared/data CSV format (plain or gzip, header line\n"
          "optional):\n"
          "  open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades\n"
          "and prints one row per candle: open_time, close, then one column per\n"
          "indicator output, empty (csv) or null (json) during its warm-up.\n"
          "\n"
          "SPEC is a comma-separated list, periods 1 to 1000:\n"
          "  sma:N   ema:N   rsi:N   atr:N   vwap:N   bb:N:K   macd:FAST:SLOW:SIGNAL\n"
          "e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20\n"
          "Columns: ema_12, rsi_14, macd_12_26_9, macd_signal_12_26_9,\n"
          "macd_hist_12_26_9, atr_14, bb_mid_20_2, bb_up_20_2, bb_low_20_2, sma_50,\n"
          "vwap_20. EMA is seeded with the SMA of its first N closes; RSI and ATR use\n"
          "Wilder's smoothing; Bollinger uses the population standard deviation;\n"
          "VWAP is rolling over N candles (the last close when they have no volume).\n"
          "\n"
          "Exit codes: 0 ok, 1 unreadable or malformed data (FILE:LINE says where),\n"
          "2 usage or indicator spec error.\n",
          out);
}

static int usage_error(FILE *err_out, const char *what, const char *arg)
{
    fprintf(err_out, "coinquantd indicators: %s%s%s%s\n", what, arg != NULL ? " '" : "",
            arg != NULL ? arg : "", arg != NULL ? "'" : "");
    fputs("hint: run coinquantd indicators --help\n", err_out);
    return EXIT_USAGE;
}

/* ---- line reader over gzip or plain files (gzread reads both) ------------- */

struct line_reader {
    gzFile gz;
    const char *path; /* borrowed */
    char *buf;        /* owned: CLI_READ_CHUNK + CLI_LINE_MAX + 2 */
    size_t cap, start, end;
    bool eof;
};

enum {
    LINE_OK = 1,
    LINE_EOF = 0,
    LINE_TOO_LONG = -1,
    LINE_IO = -2,
};

/* Next line, NUL-terminated in the reader's buffer (valid until the next
 * call), its newline removed. */
static int next_line(struct line_reader *r, char **line, size_t *len, const char **io_error)
{
    for (;;) {
        char *base = r->buf + r->start;
        size_t avail = r->end - r->start;
        char *nl = memchr(base, '\n', avail);
        if (nl != NULL) {
            *nl = '\0';
            *line = base;
            *len = (size_t)(nl - base);
            r->start += *len + 1;
            return *len > CLI_LINE_MAX ? LINE_TOO_LONG : LINE_OK;
        }
        if (avail > CLI_LINE_MAX + 1) {
            return LINE_TOO_LONG;
        }
        if (r->eof) {
            if (avail == 0) {
                return LINE_EOF;
            }
            base[avail] = '\0'; /* the buffer keeps a spare byte */
            *line = base;
            *len = avail;
            r->start = r->end;
            return LINE_OK;
        }
        memmove(r->buf, base, avail);
        r->start = 0;
        r->end = avail;
        int n = gzread(r->gz, r->buf + r->end, (unsigned)(r->cap - 1 - r->end));
        if (n < 0) {
            int zerr = 0;
            *io_error = gzerror(r->gz, &zerr);
            return LINE_IO;
        }
        if (n == 0) {
            int zerr = Z_OK;
            const char *msg = gzerror(r->gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END) {
                *io_error = msg; /* e.g. a truncated .gz */
                return LINE_IO;
            }
            r->eof = true;
        }
        r->end += (size_t)n;
    }
}

/* ---- one CSV row ------------------------------------------------------------ */

struct row {
    int64_t open_time_ms;
    cq_dec close;
    struct cq_ind_bar bar;
};

enum uint_parse { UINT_OK, UINT_NOT_A_NUMBER, UINT_OUT_OF_RANGE };

/* A whole number 0 .. max (max < 10^18), digits only, no sign. Digits
 * beyond 18, or a value above max, are out of range, not "not a number". */
static enum uint_parse parse_uint(const char *s, size_t len, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (len == 0) {
        return UINT_NOT_A_NUMBER;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return UINT_NOT_A_NUMBER;
        }
    }
    if (len > 18) {
        return UINT_OUT_OF_RANGE;
    }
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) {
        return UINT_OUT_OF_RANGE;
    }
    *out = v;
    return UINT_OK;
}

/* "open_time_ms 'x' is not a whole number of milliseconds" or "... is out
 * of range: ..."; false when not UINT_OK. */
static bool time_field_ok(enum uint_parse pr, const char *name, const char *text, size_t len,
                          char *msg, size_t msg_len)
{
    int shown = (int)(len > 40 ? 40 : len);
    if (pr == UINT_NOT_A_NUMBER) {
        snprintf(msg, msg_len, "%s '%.*s' is not a whole number of milliseconds", name, shown,
                 text);
        return false;
    }
    if (pr == UINT_OUT_OF_RANGE) {
        snprintf(msg, msg_len,
                 "%s '%.*s' is out of range: milliseconds since 1970 from 0 to %" PRId64
                 " (" CLI_TIME_MS_MAX_TEXT ")",
                 name, shown, text, CLI_TIME_MS_MAX);
        return false;
    }
    return true;
}

/* Parse one data line into *row; on error write why into msg. msg is one
 * sentence for a person (CQ_ERR_MESSAGE_MAX bytes from the caller): most
 * fields are quoted cut to 40 bytes; where a longer quote (a line is at
 * most CLI_LINE_MAX) would not fit, the sentence is cut, never the data. */
static bool parse_row(char *line, size_t len, int64_t prev_open_time, bool have_prev,
                      struct row *row, char *msg, size_t msg_len)
{
    const char *field[CLI_FIELDS];
    size_t flen[CLI_FIELDS];
    size_t n = 0;
    const char *p = line;
    const char *end = line + len;
    cq_dec dec[6];
    int64_t close_time_ms;
    int64_t tmp;

    if (memchr(line, '\0', len) != NULL) {
        snprintf(msg, msg_len, "contains a NUL byte");
        return false;
    }
    if (len == 0) {
        snprintf(msg, msg_len, "is empty; every line must be a kline row (%s)", klines_header);
        return false;
    }
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        if (n == CLI_FIELDS) {
            snprintf(msg, msg_len, "has more than %d fields; expected %s", CLI_FIELDS,
                     klines_header);
            return false;
        }
        field[n] = p;
        flen[n] = (size_t)(stop - p);
        n++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    if (n != CLI_FIELDS) {
        snprintf(msg, msg_len, "has %zu field%s; expected %d: %s", n, n == 1 ? "" : "s", CLI_FIELDS,
                 klines_header);
        return false;
    }
    if (!time_field_ok(parse_uint(field[0], flen[0], CLI_TIME_MS_MAX, &row->open_time_ms),
                       "open_time_ms", field[0], flen[0], msg, msg_len)) {
        return false;
    }
    for (size_t i = 1; i <= 5; i++) {
        int rc = cq_dec_parse(field[i], flen[i], &dec[i]);
        if (rc < 0) {
            snprintf(msg, msg_len, "%s '%.*s' is %s", field_names[i],
                     (int)(flen[i] > 40 ? 40 : flen[i]), field[i],
                     rc == -CQ_ETOOBIG ? "too long for a decimal (at most 18 significant digits)"
                                       : "not a decimal number (digits with an optional '.')");
            return false;
        }
        if (i <= 4 && cq_dec_sign(dec[i]) <= 0) {
            snprintf(msg, msg_len, "%s '%.*s' is not a positive price", field_names[i],
                     (int)flen[i], field[i]);
            return false;
        }
    }
    if (cq_dec_sign(dec[5]) < 0) {
        snprintf(msg, msg_len, "volume '%.*s' is negative", (int)flen[5], field[5]);
        return false;
    }
    if (cq_dec_cmp(dec[3], dec[2]) > 0 || cq_dec_cmp(dec[1], dec[2]) > 0 ||
        cq_dec_cmp(dec[4], dec[2]) > 0 || cq_dec_cmp(dec[1], dec[3]) < 0 ||
        cq_dec_cmp(dec[4], dec[3]) < 0) {
        snprintf(msg, msg_len,
                 "prices are inconsistent: need low <= open, close <= high (open %.*s, high "
                 "%.*s, low %.*s, close %.*s)",
                 (int)flen[1], field[1], (int)flen[2], field[2], (int)flen[3], field[3],
                 (int)flen[4], field[4]);
        return false;
    }
    if (!time_field_ok(parse_uint(field[6], flen[6], CLI_TIME_MS_MAX, &close_time_ms),
                       "close_time_ms", field[6], flen[6], msg, msg_len)) {
        return false;
    }
    if (close_time_ms < row->open_time_ms) {
        snprintf(msg, msg_len, "close_time_ms %" PRId64 " is before open_time_ms %" PRId64,
                 close_time_ms, row->open_time_ms);
        return false;
    }
    if (flen[7] != 0) {
        cq_dec qv;
        if (cq_dec_parse(field[7], flen[7], &qv) < 0 || cq_dec_sign(qv) < 0) {
            snprintf(msg, msg_len, "quote_volume '%.*s' is not empty or a decimal >= 0",
                     (int)(flen[7] > 40 ? 40 : flen[7]), field[7]);
            return false;
        }
    }
    enum uint_parse trades =
        flen[8] != 0 ? parse_uint(field[8], flen[8], CLI_COUNT_MAX, &tmp) : UINT_OK;
    if (trades != UINT_OK) {
        snprintf(msg, msg_len,
                 trades == UINT_OUT_OF_RANGE
                     ? "trades '%.*s' is out of range: empty or 0 to %" PRId64
                     : "trades '%.*s' is not empty or a whole number (0 to %" PRId64 ")",
                 (int)(flen[8] > 40 ? 40 : flen[8]), field[8], CLI_COUNT_MAX);
        return false;
    }
    if (have_prev && row->open_time_ms <= prev_open_time) {
        snprintf(msg, msg_len,
                 "open_time_ms %" PRId64 " does not follow the previous row's %" PRId64
                 " (rows must be in strictly increasing time order)",
                 row->open_time_ms, prev_open_time);
        return false;
    }
    row->close = dec[4];
    row->bar.open = cq_dec_to_double(dec[1]);
    row->bar.high = cq_dec_to_double(dec[2]);
    row->bar.low = cq_dec_to_double(dec[3]);
    row->bar.close = cq_dec_to_double(dec[4]);
    row->bar.volume = cq_dec_to_double(dec[5]);
    return true;
}

/* ---- output ----------------------------------------------------------------- */

/* The shortest of %.15g, %.16g, %.17g that reads back to v. */
static void format_double(double v, char *buf, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) {
            return;
        }
    }
}

static void print_header(const struct cq_ind_set *set, enum out_format format, FILE *out)
{
    if (format != FORMAT_CSV) {
        return;
    }
    fputs("open_time,close", out);
    for (size_t c = 0; c < cq_ind_set_columns(set); c++) {
        fputc(',', out);
        fputs(cq_ind_set_column_name(set, c), out);
    }
    fputc('\n', out);
}

static void print_row(const struct cq_ind_set *set, const struct row *row, enum out_format format,
                      FILE *out)
{
    char close_text[CQ_DEC_STR_MAX];
    char num[40];

    cq_dec_format(row->close, close_text, sizeof(close_text));
    if (format == FORMAT_CSV) {
        fprintf(out, "%" PRId64 ",%s", row->open_time_ms, close_text);
    } else {
        fprintf(out, "{\"open_time\":%" PRId64 ",\"close\":%s", row->open_time_ms, close_text);
    }
    for (size_t c = 0; c < cq_ind_set_columns(set); c++) {
        double v;
        /* JSON has no NaN or infinity; validated input cannot produce them,
         * but a non-finite value is printed as "no value", never as text
         * that a reader would choke on */
        bool have = cq_ind_set_value(set, c, &v) && isfinite(v);
        if (have) {
            format_double(v, num, sizeof(num));
        }
        if (format == FORMAT_CSV) {
            fputc(',', out);
            if (have) {
                fputs(num, out);
            }
        } else {
            fprintf(out, ",\"%s\":%s", cq_ind_set_column_name(set, c), have ? num : "null");
        }
    }
    fputs(format == FORMAT_CSV ? "\n" : "}\n", out);
}

/* ---- the command --------------------------------------------------------------- */

struct cli_args {
    const char *data;
    const char *spec;
    const char *format;
};

/* 0, 1 for --help, or EXIT_USAGE after printing why. */
static int parse_args(int argc, char **argv, struct cli_args *a, FILE *out, FILE *err_out)
{
    static const char *const flags[] = {"--data", "--indicators", "--format"};
    const char **slots[] = {&a->data, &a->spec, &a->format};

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        size_t which = CQ_ARRAY_LEN(flags);

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(out);
            return 1;
        }
        for (size_t o = 0; o < CQ_ARRAY_LEN(flags); o++) {
            size_t flen = strlen(flags[o]);
            if (strcmp(arg, flags[o]) == 0) {
                if (i + 1 >= argc) {
                    return usage_error(err_out, "missing value after", arg);
                }
                which = o;
                value = argv[++i];
            } else if (strncmp(arg, flags[o], flen) == 0 && arg[flen] == '=') {
                which = o;
                value = arg + flen + 1;
            }
        }
        if (which == CQ_ARRAY_LEN(flags)) {
            return usage_error(err_out, "unexpected argument", arg);
        }
        if (*slots[which] != NULL) {
            return usage_error(err_out, "option given twice:", flags[which]);
        }
        *slots[which] = value;
    }
    if (a->data == NULL || a->data[0] == '\0') {
        return usage_error(err_out, "missing --data FILE.csv[.gz]", NULL);
    }
    if (a->spec == NULL) {
        return usage_error(err_out, "missing --indicators SPEC (e.g. ema:12,rsi:14)", NULL);
    }
    if (a->format != NULL && strcmp(a->format, "csv") != 0 && strcmp(a->format, "json") != 0) {
        return usage_error(err_out, "--format must be csv or json, not", a->format);
    }
    return 0;
}

int cq_indicators_cli(int argc, char **argv, FILE *out, FILE *err_out)
{
    struct cli_args args = {NULL, NULL, NULL};
    struct cq_err err;
    struct cq_ind_set *set = NULL;
    struct line_reader r = {0};
    enum out_format format;
    unsigned long line_no = 0;
    int64_t prev_open_time = 0;
    bool have_prev = false;
    int code;

    code = parse_args(argc, argv, &args, out, err_out);
    if (code != 0) {
        return code == 1 ? 0 : code;
    }
    format = args.format != NULL && strcmp(args.format, "json") == 0 ? FORMAT_JSON : FORMAT_CSV;

    cq_err_clear(&err);
    set = cq_ind_set_new(args.spec, &err);
    if (set == NULL) {
        fprintf(err_out, "coinquantd indicators: --indicators: %s\n", err.message);
        if (err.hint[0] != '\0') {
            fprintf(err_out, "hint: %s\n", err.hint);
        }
        return err.code == CQ_ENOMEM ? EXIT_IO : EXIT_USAGE;
    }

    r.path = args.data;
    r.cap = CLI_READ_CHUNK + CLI_LINE_MAX + 2;
    r.buf = malloc(r.cap);
    errno = 0;
    r.gz = gzopen(args.data, "rb");
    if (r.buf == NULL || r.gz == NULL) {
        fprintf(err_out, "coinquantd indicators: cannot open %s: %s\n", args.data,
                r.buf == NULL ? "out of memory"
                : errno != 0  ? strerror(errno)
                              : "gzopen failed");
        code = EXIT_IO;
        goto out;
    }

    print_header(set, format, out);
    for (;;) {
        char *line;
        size_t len;
        const char *io_error = NULL;
        char msg[CQ_ERR_MESSAGE_MAX];
        struct row row;
        int got = next_line(&r, &line, &len, &io_error);

        if (got == LINE_EOF) {
            break;
        }
        line_no++;
        if (got == LINE_TOO_LONG) {
            fprintf(err_out, "coinquantd indicators: %s:%lu: line is longer than %d bytes\n",
                    args.data, line_no, CLI_LINE_MAX);
            code = EXIT_IO;
            goto out;
        }
        if (got == LINE_IO) {
            fprintf(err_out, "coinquantd indicators: %s:%lu: read failed: %s\n", args.data, line_no,
                    io_error != NULL ? io_error : "unknown error");
            code = EXIT_IO;
            goto out;
        }
        if (len > 0 && line[len - 1] == '\r') {
            line[--len] = '\0';
        }
        if (line_no == 1 && len > 0 && (line[0] < '0' || line[0] > '9')) {
            if (len == sizeof(klines_header) - 1 && memcmp(line, klines_header, len) == 0) {
                continue;
            }
            fprintf(err_out,
                    "coinquantd indicators: %s:1: unknown header; expected exactly %s (or no "
                    "header)\n",
                    args.data, klines_header);
            code = EXIT_IO;
            goto out;
        }
        if (!parse_row(line, len, prev_open_time, have_prev, &row, msg, sizeof(msg))) {
            fprintf(err_out, "coinquantd indicators: %s:%lu: %s\n", args.data, line_no, msg);
            code = EXIT_IO;
            goto out;
        }
        prev_open_time = row.open_time_ms;
        have_prev = true;
        cq_ind_set_update(set, &row.bar);
        print_row(set, &row, format, out);
    }
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(err_out, "coinquantd indicators: writing the output failed: %s\n", strerror(errno));
        code = EXIT_IO;
        goto out;
    }
    code = 0;

out:
    if (r.gz != NULL) {
        gzclose(r.gz);
    }
    free(r.buf);
    cq_ind_set_free(set);
    return code;
}
