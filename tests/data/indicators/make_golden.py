#!/usr/bin/env python3
"""Golden outputs for `coinquantd indicators` from an independent reference.

This is NOT a port of server/ares/indicators.c: every value is recomputed
from scratch for every bar, straight from the definitions in
include/cq/indicators.h, with exactly rounded sums (math.fsum):

  SMA(n)    fsum of the last n closes / n
  EMA(n)    closed form: (1-a)^(t-n+1) * SMA(first n) + sum a(1-a)^(t-j) x_j
  RSI(n)    Wilder = the same closed form with a = 1/n over gains and losses,
            seeded with their simple means; 100 - 100/(1 + G/L), 100 when
            L = 0, 50 when both are 0 (the header's formula, literally)
  MACD      EMA(f) - EMA(s); signal = closed-form EMA(g) of the line from
            the bar where EMA(s) is first defined; hist = line - signal
  ATR(n)    Wilder closed form over true ranges (the first TR is high-low)
  BB(n,k)   mean +- k * sqrt(fsum((x - mean)^2) / n)   (population sigma)
  VWAP(n)   fsum(typical * volume) / fsum(volume), typical = (h+l+c)/3;
            the close when the window's volume is 0

Numbers are written in the shortest of %.15g/%.16g/%.17g that reads back
exactly (as the CLI does); the C test compares them with a relative
tolerance (1e-9), so last-bit differences between the two computations
never matter but any real disagreement does.

Usage: make_golden.py KLINES.csv SPEC OUT.csv OUT.jsonl
"""
import math
import sys
from decimal import Decimal

SPEC_DEFAULT = "ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20"


def fmt(v):
    for prec in (15, 16, 17):
        s = "%.*g" % (prec, v)
        if float(s) == v:
            return s
    raise AssertionError(v)


def ema_closed(xs, n, t, alpha=None):
    """EMA(n) of xs at index t (None before index n-1)."""
    if t < n - 1:
        return None
    a = 2.0 / (n + 1) if alpha is None else alpha
    seed = math.fsum(xs[:n]) / n
    terms = [(1 - a) ** (t - (n - 1)) * seed]
    terms += [a * (1 - a) ** (t - j) * xs[j] for j in range(n, t + 1)]
    return math.fsum(terms)


def columns_for(item):
    parts = item.split(":")
    name = parts[0]
    if name == "macd":
        p = "_".join(parts[1:])
        return ["macd_" + p, "macd_signal_" + p, "macd_hist_" + p]
    if name == "bb":
        k = str(Decimal(parts[2]).normalize())
        p = parts[1] + "_" + k
        return ["bb_mid_" + p, "bb_up_" + p, "bb_low_" + p]
    return [name + "_" + parts[1]]


def compute(item, bars):
    """One list per output column, None during warm-up."""
    parts = item.split(":")
    name = parts[0]
    closes = [b["c"] for b in bars]
    N = len(bars)
    if name == "sma":
        n = int(parts[1])
        return [[math.fsum(closes[t - n + 1:t + 1]) / n if t >= n - 1 else None
                 for t in range(N)]]
    if name == "ema":
        n = int(parts[1])
        return [[ema_closed(closes, n, t) for t in range(N)]]
    if name == "rsi":
        n = int(parts[1])
        ch = [closes[i] - closes[i - 1] for i in range(1, N)]
        gains = [max(c, 0.0) for c in ch]
        losses = [max(-c, 0.0) for c in ch]
        out = []
        for t in range(N):
            if t < n:
                out.append(None)
                continue
            g = ema_closed(gains, n, t - 1, alpha=1.0 / n)
            l = ema_closed(losses, n, t - 1, alpha=1.0 / n)
            if l == 0:
                out.append(50.0 if g == 0 else 100.0)
            else:
                out.append(100.0 - 100.0 / (1.0 + g / l))
        return [out]
    if name == "macd":
        f, s, g = (int(x) for x in parts[1:])
        line = [None if t < s - 1 else ema_closed(closes, f, t) - ema_closed(closes, s, t)
                for t in range(N)]
        defined = [v for v in line if v is not None]
        sig, hist = [], []
        for t in range(N):
            v = None if t < s - 1 else ema_closed(defined, g, t - (s - 1))
            sig.append(v)
            hist.append(None if v is None else line[t] - v)
        return [line, sig, hist]
    if name == "atr":
        n = int(parts[1])
        tr = []
        for i, b in enumerate(bars):
            r = b["h"] - b["l"]
            if i > 0:
                pc = bars[i - 1]["c"]
                r = max(r, abs(b["h"] - pc), abs(b["l"] - pc))
            tr.append(r)
        return [[ema_closed(tr, n, t, alpha=1.0 / n) for t in range(N)]]
    if name == "bb":
        n = int(parts[1])
        k = float(Decimal(parts[2]))
        mid, up, low = [], [], []
        for t in range(N):
            if t < n - 1:
                mid.append(None), up.append(None), low.append(None)
                continue
            w = closes[t - n + 1:t + 1]
            m = math.fsum(w) / n
            sd = math.sqrt(math.fsum((x - m) ** 2 for x in w) / n)
            mid.append(m), up.append(m + k * sd), low.append(m - k * sd)
        return [mid, up, low]
    if name == "vwap":
        n = int(parts[1])
        out = []
        for t in range(N):
            if t < n - 1:
                out.append(None)
                continue
            w = bars[t - n + 1:t + 1]
            vol = math.fsum(b["v"] for b in w)
            if vol == 0:
                out.append(bars[t]["c"])
            else:
                out.append(math.fsum((b["h"] + b["l"] + b["c"]) / 3 * b["v"] for b in w) / vol)
        return [out]
    raise SystemExit("unknown indicator " + name)


def main():
    src, spec, out_csv, out_json = sys.argv[1:5]
    rows = []
    with open(src) as fh:
        for i, line in enumerate(fh):
            f = line.rstrip("\n").split(",")
            if i == 0 and f[0] == "open_time_ms":
                continue
            rows.append({"t": int(f[0]), "close_text": str(Decimal(f[4])),
                         "o": float(f[1]), "h": float(f[2]), "l": float(f[3]),
                         "c": float(f[4]), "v": float(f[5])})
    names, series = [], []
    for item in spec.split(","):
        names += columns_for(item)
        series += compute(item, rows)
    with open(out_csv, "w") as fh:
        fh.write("open_time,close," + ",".join(names) + "\n")
        for t, r in enumerate(rows):
            cells = ["" if s[t] is None else fmt(s[t]) for s in series]
            fh.write("%d,%s,%s\n" % (r["t"], r["close_text"], ",".join(cells)))
    with open(out_json, "w") as fh:
        for t, r in enumerate(rows):
            cells = ['"%s":%s' % (nm, "null" if s[t] is None else fmt(s[t]))
                     for nm, s in zip(names, series)]
            fh.write('{"open_time":%d,"close":%s,%s}\n' % (r["t"], r["close_text"], ",".join(cells)))


if __name__ == "__main__":
    main()
