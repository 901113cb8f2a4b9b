"""report.py: turns build/bench/raw.tsv (written by scripts/bench/run) into
results.md (Markdown tables, with the targets of issues 5, 10 and 13 marked
met or MISSED) and ratios.dat + ratios.gp (a gnuplot script drawing
ratios.png, one panel per section that ran). Sections without data (as in
`run threads`, which runs the thread-count sweep alone) are left out.

    python3 report.py RAW OUTDIR
"""
import math
import statistics
import sys

# Targets of issue 5.
T_WALL = 1.03   # limits active: wall ratio to jemalloc
T_CG = 1.05     # limits active: callgrind instruction ratio
T_PROF = 1.10   # profiler at its default interval
T_TOKEN_US = 100.0
GLOBAL_GRANT_KIB = 64  # README: overshoot <= threads x 64 KiB of requests
# Targets of issue 13 (workload kinds), for memlimits with no limit and with
# limits set: wall time against the faster of glibc and jemalloc, peak RSS
# against jemalloc.
T_KIND_WALL = 1.05
T_KIND_RSS = 1.10
KIND_TARGETED = ("ml-none", "ml-high")
# Targets of issue 10 (thread-count sweep): ns per pair against jemalloc.
T_THR_NONE = 1.05
T_THR_GLOBAL = 1.10

LABEL = {
    "glibc": "glibc malloc",
    "jemalloc": "jemalloc (preload)",
    "ml-none": "memlimits, no limit",
    "ml-high": "memlimits, limits 1T",
    "ml-prof": "memlimits + profiler",
    "ml-global": "memlimits, MEMLIMITS_GLOBAL_MEMORY=1T",
}
NOPROF = "n/a (profiler not built)"


def met(ok):
    return "met" if ok else "**MISSED**"


def fnum(x, fmt="%.3f"):
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt % x


def main():
    raw, out = sys.argv[1], sys.argv[2]
    meta, desc, configs = {}, {}, []
    wall = {}   # (workload, config) -> [(wall, rss_kib)]
    failed = {}  # (workload, config) -> [status]
    order = []
    cg = {}     # (workload, config) -> instructions per op, without libc mem*
    cg_all = {}  # (workload, config) -> all instructions per op
    cg_order = []
    acc = []    # (threads, limit, peak, live, blocks)
    acc_fail = {}
    counts = []
    token = None
    kdat = {}    # (workload, config) -> [(wall, rss_kib, cpu_s, faults)]
    kfailed = {}  # (workload, config) -> [status]
    korder = []
    thr = {}     # (point, config) -> [ns per pair]
    tfailed = {}  # (point, config) -> [status]
    torder = []  # [(point, idle, busy)]
    with open(raw) as f:
        for line in f:
            r = line.rstrip("\n").split("\t")
            kind = r[0]
            if kind == "meta":
                meta[r[1]] = r[2]
            elif kind == "desc":
                desc[r[1]] = r[2]
            elif kind == "config":
                configs.append(r[1])
            elif kind == "wall":
                wl, cfg, _rep, w, rss, st = r[1:7]
                if wl not in order:
                    order.append(wl)
                if st != "0":
                    failed.setdefault((wl, cfg), []).append(st)
                    continue
                wall.setdefault((wl, cfg), []).append((float(w), int(rss)))
            elif kind == "kind":
                wl, cfg, _rep, w, rss, st, usr, sy, mn, mj = \
                    (r[1:11] + ["nan"] * 10)[:10]
                if wl not in korder:
                    korder.append(wl)
                if st != "0":
                    kfailed.setdefault((wl, cfg), []).append(st)
                    continue
                kdat.setdefault((wl, cfg), []).append(
                    (float(w), int(rss), float(usr) + float(sy),
                     int(mn) + int(mj)))
            elif kind == "thr":
                pt, idle, busy, cfg, _rep, ns, _pairs, _secs, st = \
                    (r[1:10] + ["nan"] * 9)[:9]
                if (pt, idle, busy) not in torder:
                    torder.append((pt, idle, busy))
                if st != "0" or ns == "nan":
                    tfailed.setdefault((pt, cfg), []).append(st)
                    continue
                thr.setdefault((pt, cfg), []).append(float(ns))
            elif kind == "cg":
                wl, cfg, n, a, b, am, bm = (r[1:8] + ["nan"] * 7)[:7]
                if wl not in cg_order:
                    cg_order.append(wl)
                try:
                    x_all = (int(b) - int(a)) / int(n)
                    x = (int(b) - int(bm) - int(a) + int(am)) / int(n)
                except ValueError:
                    x_all = x = float("nan")
                cg_all.setdefault((wl, cfg), []).append(x_all)
                cg.setdefault((wl, cfg), []).append(x)
            elif kind == "acc":
                if len(r) >= 6:
                    acc.append(tuple(int(x) for x in r[1:6]))
                else:
                    acc_fail[r[1]] = acc_fail.get(r[1], 0) + 1
            elif kind == "count":
                counts.append(r[1:5] if len(r) >= 5 else r[1:] + ["?"] * (5 - len(r)))
            elif kind == "token":
                token = r[1:]

    # Repeated callgrind measurements: the median.
    for t in (cg, cg_all):
        for k, v in t.items():
            t[k] = statistics.median(v)

    profiler = meta.get("profiler") == "1"
    cols = ["glibc", "jemalloc", "ml-none", "ml-high", "ml-prof"]

    def med(wl, cfg, i):
        v = wall.get((wl, cfg))
        return statistics.median(x[i] for x in v) if v else None

    def ratio(wl, cfg, i=0):
        a, b = med(wl, cfg, i), med(wl, "jemalloc", i)
        return a / b if a is not None and b else None

    md = []
    md.append("# memlimits benchmark results\n")
    md.append("Reproduce with `make bench` (or `scripts/bench/run`; "
              "`BENCH_QUICK=1` for a quick look, `R=N` rounds); the "
              "thread-count sweep alone with `make bench-threads`.\n")
    if order or korder:
        md.append("- when: %s; mode: %s; rounds per workload: %s (interleaved, "
                  "rotated order)" % (meta.get("date"), meta.get("mode"),
                                      meta.get("rounds")))
    else:
        md.append("- when: %s; mode: %s" % (meta.get("date"), meta.get("mode")))
    if torder:
        md.append("- thread-count sweep: %s round(s) of %s ms per point and "
                  "configuration (interleaved, rotated order)"
                  % (meta.get("thr_rounds"), meta.get("thr_ms")))
    md.append("- machine: %s; load average at start %s, at end %s"
              % (meta.get("cpu"), meta.get("load_start"), meta.get("load_end")))
    md.append("- glibc %s; jemalloc %s (Debian libjemalloc2, LD_PRELOAD); "
              "memlimits build/libmemlimits.so" % (meta.get("glibc"),
                                                   meta.get("jemalloc")))
    md.append("- limits 1T: MEMLIMITS_GLOBAL_MEMORY, MEMLIMITS_ALLOCATIONS and "
              "MEMLIMITS_THREAD_ALLOCATIONS all set to 1T (active, never "
              "reached); memlimits + profiler: libmemlimits-prof.so with "
              "MEMLIMITS_PROFILE at the default interval, no limit")
    if not profiler:
        md.append("- profiler: MEMLIMITS_PROFILE is refused by this build "
                  "(exit 125): its column is " + NOPROF)
    md.append("")
    intro_end = len(md)

    # ---- targets summary, filled below: (issue, target, measured, mark) ----
    summary = []

    splice_at = len(md)
    panels = []  # the chart's, see write_chart, in the order of results.md
    cg_panels = []  # callgrind's comes after the sections of issues 13, 10
    if order:  # the workloads of issue 5 ran: their sections
        # ---- wall time ----
        md.append("## Wall time (median seconds, ratio to jemalloc)\n")
        md.append("| workload | " + " | ".join(LABEL[c] for c in cols)
                  + " | target: limits 1T <= %.2fx jemalloc |" % T_WALL)
        md.append("|---" * (len(cols) + 2) + "|")
        wall_ok = True
        for wl in order:
            cells = []
            for c in cols:
                if c == "ml-prof" and not profiler:
                    cells.append(NOPROF)
                    continue
                m = med(wl, c, 0)
                bad = failed.get((wl, c))
                if m is None:
                    cells.append("FAILED (exit %s)" % ",".join(bad or ["?"]))
                    continue
                cell = "%.3f s (%.3f)" % (m, ratio(wl, c))
                if bad:
                    cell += ", %d run(s) FAILED" % len(bad)
                cells.append(cell)
            rh = ratio(wl, "ml-high")
            ok = rh is not None and rh <= T_WALL and not failed.get((wl, "ml-high"))
            wall_ok &= ok
            md.append("| %s | %s | %s %s |" % (wl, " | ".join(cells), fnum(rh), met(ok)))
        md.append("")
        summary.append(("5", "limits active: median wall ratio to jemalloc <= %.2f on "
                        "every workload" % T_WALL,
                        "worst %s (%s)" % worst(order, lambda w: ratio(w, "ml-high")),
                        met(wall_ok)))

        md.append("## Peak RSS (median MiB, ratio to jemalloc)\n")
        md.append("| workload | " + " | ".join(LABEL[c] for c in cols) + " |")
        md.append("|---" * (len(cols) + 1) + "|")
        for wl in order:
            cells = []
            for c in cols:
                if c == "ml-prof" and not profiler:
                    cells.append(NOPROF)
                    continue
                m = med(wl, c, 1)
                cells.append("FAILED" if m is None else
                             "%.1f (%.2f)" % (m / 1024, ratio(wl, c, 1)))
            md.append("| %s | %s |" % (wl, " | ".join(cells)))
        md.append("")
        md.append("Workloads:\n")
        for wl in order:
            md.append("- **%s**: %s" % (wl, desc.get(wl, "")))
        md.append("")
        splice_at = len(md)

        # ---- two-thread workload against glibc ----
        g = med("xthread", "glibc", 0)
        worst_ml = max((med("xthread", c, 0) or math.inf)
                       for c in ["ml-none", "ml-high"]
                       + (["ml-prof"] if profiler else []))
        xt_ok = g is not None and worst_ml <= g
        summary.append(("5", "never slower than glibc on the two-thread workload",
                        "memlimits %s s (slowest configuration) vs glibc %s s"
                        % (fnum(worst_ml), fnum(g)), met(xt_ok)))

        # ---- profiler ----
        if profiler:
            pr = [ratio(w, "ml-prof") for w in order]
            pok = all(x is not None and x <= T_PROF for x in pr)
            summary.append(("5", "profiler at default interval: wall ratio <= %.2f"
                            % T_PROF, "worst %s (%s)"
                            % worst(order, lambda w: ratio(w, "ml-prof")), met(pok)))
        else:
            summary.append(("5", "profiler at default interval: wall ratio <= %.2f"
                            % T_PROF, NOPROF, "n/a"))

        # ---- callgrind ----
        md.append("## Callgrind instructions per operation (ratio to jemalloc)\n")
        md.append("Difference of two run lengths N and 2N divided by N, so start-up "
                  "and the initial fill cancel out. An operation is one object "
                  "(churn, xthread), one realloc, or one large block; xthread, whose "
                  "count varies a little with the threads' interleaving, is the "
                  "median of 3 measurements. Counted: every "
                  "instruction except those in libc's memcpy/memmove/memset (the "
                  "appends of the realloc workload, and the copies of a realloc that "
                  "moves, which depend on where earlier blocks happened to land, not "
                  "on the allocator's code path); the totals follow below.\n")
        cgcols = ["glibc", "jemalloc", "ml-none", "ml-high"]

        def cgr(wl, c, table=None):
            table = cg if table is None else table
            a, b = table.get((wl, c)), table.get((wl, "jemalloc"))
            if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
                return None
            return a / b

        def cgcell(table, wl, c):
            v = table.get((wl, c))
            return "nan" if v is None or math.isnan(v) else \
                "%.1f (%s)" % (v, fnum(cgr(wl, c, table)))
        md.append("| workload | " + " | ".join(LABEL[c] for c in cgcols)
                  + " | target: limits 1T <= %.2fx jemalloc |" % T_CG)
        md.append("|---" * (len(cgcols) + 2) + "|")
        cg_ok = bool(cg_order)
        for wl in cg_order:
            r = cgr(wl, "ml-high")
            ok = r is not None and r <= T_CG
            cg_ok &= ok
            md.append("| %s | %s | %s %s |" % (
                wl, " | ".join(cgcell(cg, wl, c) for c in cgcols), fnum(r), met(ok)))
        md.append("")
        md.append("All instructions, memcpy/memmove/memset included:\n")
        md.append("| workload | " + " | ".join(LABEL[c] for c in cgcols) + " |")
        md.append("|---" * (len(cgcols) + 1) + "|")
        for wl in cg_order:
            md.append("| %s | %s |" % (
                wl, " | ".join(cgcell(cg_all, wl, c) for c in cgcols)))
        md.append("")
        summary.append(("5", "limits active: callgrind instruction ratio <= %.2f on the "
                        "micro workloads" % T_CG,
                        "worst %s (%s)" % worst(cg_order, lambda w: cgr(w, "ml-high")),
                        met(cg_ok)))
        panels.append(dict(
            title="Wall time, median of interleaved runs (issue 5 workloads)",
            ylabel="wall time / jemalloc", items=order,
            cfgs=["glibc", "ml-none", "ml-high"] + (["ml-prof"] if profiler else []),
            fn=ratio, targets=[(T_WALL, "target %.2f (limits set)" % T_WALL)]))
        cg_panels.append(dict(
            title="Callgrind instructions per operation (micro workloads)",
            ylabel="instructions / jemalloc", items=cg_order,
            cfgs=["glibc", "ml-none", "ml-high"], fn=cgr,
            targets=[(T_CG, "target %.2f (limits set)" % T_CG)]))

        # ---- accuracy ----
        md.append("## Accuracy of the global limit (MEMLIMITS_GLOBAL_MEMORY=256M)\n")
        md.append("Threads allocate 4 KiB blocks as fast as they can until malloc "
                  "returns NULL, freeing nothing. *Heap at the end* is "
                  "ml_stats().live_bytes after all threads stopped: nothing was "
                  "freed, so it is the highest the heap ever was. *Engine's peak* is "
                  "ml_stats().peak_bytes, the highest heap the engine sampled. "
                  "Figures are KiB above the limit (negative: below). The README "
                  "bounds the overshoot by threads x %d KiB of requests (4 KiB "
                  "blocks have no size-class rounding).\n" % GLOBAL_GRANT_KIB)
        md.append("| threads | runs | heap at the end - limit, median / max (KiB) "
                  "| engine's peak - limit, median / max (KiB) | bound (KiB) "
                  "| within the bound |")
        md.append("|---|---|---|---|---|---|")
        acc_ok_all = True
        acc_sum = []
        for t in sorted(set(a[0] for a in acc) | set(int(k) for k in acc_fail)):
            rs = [a for a in acc if a[0] == t]
            live = [(a[3] - a[1]) / 1024 for a in rs]
            peak = [(a[2] - a[1]) / 1024 for a in rs]
            bound = t * GLOBAL_GRANT_KIB
            nfail = acc_fail.get(str(t), 0)
            ok = bool(rs) and max(live) <= bound and nfail == 0
            acc_ok_all &= ok
            if rs:
                md.append("| %d | %d%s | %.1f / %.1f | %.1f / %.1f | %d | %s |"
                          % (t, len(rs), " (+%d FAILED)" % nfail if nfail else "",
                             statistics.median(live), max(live),
                             statistics.median(peak), max(peak), bound, met(ok)))
                acc_sum.append("%d thread%s: max %+.1f KiB" % (t, "s" if t > 1 else "",
                                                                max(live)))
            else:
                md.append("| %d | %d FAILED | | | %d | %s |" % (t, nfail, bound, met(False)))
        md.append("")
        summary.append(("5", "global limit overshoot within the README's bound "
                        "(threads x %d KiB)" % GLOBAL_GRANT_KIB,
                        "; ".join(acc_sum) or "no data", met(acc_ok_all)))

        # ---- counts ----
        md.append("## Exactness of allocation counts\n")
        md.append("A deterministic task under ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT) "
                  "adds up the bytes it requests as the documentation defines them "
                  "(malloc, calloc sizes; aligned_alloc, posix_memalign: with an "
                  "alignment above 16 the block's usable size; realloc: what the "
                  "usable size grew by, at most the size asked for); the engine's "
                  "*allocated_bytes must be equal.\n")
        md.append("| case | known total (bytes) | reported (bytes) | status | equal |")
        md.append("|---|---|---|---|---|")
        cnt_ok = bool(counts)
        for c in counts:
            ok = c[1] == c[2] and c[3] == "ok"
            cnt_ok &= ok
            md.append("| %s | %s | %s | %s | %s |" % (c[0], c[1], c[2], c[3], met(ok)))
        if not counts:
            md.append("| (the program failed: see build/bench/runs.log) | | | | %s |"
                      % met(False))
        md.append("")
        summary.append(("5", "allocation counts exact", "%d case(s)" % len(counts),
                        met(cnt_ok)))

        # ---- token ----
        md.append("## Token cancellation latency\n")
        md.append("A task under ml_limit_with_token allocates and frees 64-byte "
                  "blocks; another thread reads CLOCK_MONOTONIC and sets the token "
                  "0-200 us after the task started; latency is until "
                  "ml_limit_with_token returned. The two threads are pinned to two "
                  "different CPUs (%s). *Preempted*: trials in which the task's "
                  "thread was involuntarily descheduled (a busy machine, not the "
                  "engine); the last two figures leave them out.\n"
                  % ("done" if token and len(token) >= 9 and token[8] == "yes"
                     else "not done: fewer than 2 CPUs allowed"))
        md.append("| trials | median (us) | p99 (us) | max (us) | wrong status "
                  "| preempted | median, not preempted | p99, not preempted "
                  "| target: p99 < %g us |" % T_TOKEN_US)
        md.append("|---" * 9 + "|")
        tok_ok = False
        if token and len(token) >= 8:
            n, m, p99, mx, bad, pre, m2, p2 = token[:8]
            tok_ok = float(p99) < T_TOKEN_US and bad == "0"
            md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                      % (n, m, p99, mx, bad, pre, m2, p2, met(tok_ok)))
            tok_val = "p99 %s us (median %s us; without the %s preempted trials: "\
                      "p99 %s us)" % (p99, m, pre, p2)
        else:
            md.append("| FAILED (see build/bench/runs.log) | | | | | | | | %s |"
                      % met(False))
            tok_val = "failed"
        md.append("")
        summary.append(("5", "token cancellation p99 < %g us" % T_TOKEN_US, tok_val,
                        met(tok_ok)))

    # ---- the sections of issues 13 and 10, after issue 5's wall and RSS ----
    extra = []
    if korder:
        lines, p = kinds_section(korder, kdat, kfailed, desc, profiler, summary)
        extra += lines
        panels += p
    if torder:
        lines, p = threads_section(torder, thr, tfailed, meta, summary)
        extra += lines
        panels += p
    md[splice_at:splice_at] = extra

    head = ["## Targets\n",
            "| issue | target | measured | |", "|---|---|---|---|"]
    head += ["| %s | %s | %s | %s |" % s for s in summary]
    head.append("")
    head.append("Timing on a shared or loaded machine is noisy: compare the load "
                "averages above, and rerun with more rounds (`R=9`, "
                "`THR_ROUNDS=5` for the thread sweep) before "
                "reading much into a few percent.\n")
    md[intro_end:intro_end] = head
    with open(out + "/results.md", "w") as f:
        f.write("\n".join(md).rstrip() + "\n")

    write_chart(out, panels + cg_panels)


def worst(items, fn):
    vals = [(fn(w), w) for w in items]
    vals = [(v, w) for v, w in vals if v is not None]
    if not vals:
        return ("nan", "no data")
    v, w = max(vals)
    return ("%.3f" % v, w)


def write_chart(out, panels):
    """One panel of grouped bars per entry of panels (a dict: title, ylabel,
    items, cfgs, fn(item, cfg) -> ratio or None, targets [(value, label)],
    and optionally names {item: x-axis label}). Bars above CAP are cut at
    CAP; every bar is labelled with its value."""
    cap = 1.6
    colors = {"glibc": "#999999", "jemalloc": "#76b7b2", "ml-none": "#4e79a7",
              "ml-high": "#f28e2b", "ml-prof": "#59a14f", "ml-global": "#b07aa1"}
    tcolors = ["#e15759", "#9c0d0d"]
    if not panels:
        panels = [dict(title="no data", ylabel="", items=[], cfgs=[],
                       fn=lambda w, c: None, targets=[])]

    def bars(items, cfgs, fn):
        g = len(cfgs) + 1
        data = {}
        for j, c in enumerate(cfgs):
            rows = []
            for i, wl in enumerate(items):
                v = fn(wl, c)
                if v is None:
                    continue
                x = i * g + j + 1
                lab = "%.3f" % v if v < 2 else "%.2f" % v if v < 10 else "%.1f" % v
                if v > cap:
                    lab += "\u2191"  # an arrow: the bar is cut
                rows.append("%g %g %g %s" % (x, min(v, cap), min(v, cap), lab))
            data[c] = rows
        return data, max(len(items) * g, 1)

    gp = []
    gp.append("set encoding utf8")
    gp.append("set terminal pngcairo noenhanced size 1400,%d font 'DejaVu Sans,11'"
              % (500 * len(panels)))
    gp.append("set output '%s/ratios.png'" % out)
    gp.append("set multiplot layout %d,1 title 'memlimits benchmark: ratios "
              "(lower is better; bars above %g are cut, labels give the value)'"
              % (len(panels), cap))
    gp.append("set style fill solid 0.85 border -1")
    gp.append("set boxwidth 0.9")
    gp.append("set grid ytics")
    gp.append("set key outside bottom center horizontal")
    gp.append("set yrange [0:%g]" % (cap + 0.15))
    idx = 0
    with open(out + "/ratios.dat", "w", encoding="utf-8") as f:
        for pn, p in enumerate(panels):
            data, xmax = bars(p["items"], p["cfgs"], p["fn"])
            g = len(p["cfgs"]) + 1
            names = p.get("names", {})
            tics = ", ".join('"%s" %g' % (names.get(wl, wl), i * g + g / 2.0)
                             for i, wl in enumerate(p["items"]))
            parts = []
            for c in p["cfgs"]:
                f.write("# panel %d %s\n" % (pn, c))
                f.write("\n".join(data[c] or ["nan nan nan nan"]) + "\n\n\n")
                parts.append("'%s/ratios.dat' index %d using 1:2 with boxes "
                             "lc rgb '%s' title '%s'" % (out, idx, colors[c], LABEL[c]))
                parts.append("'' index %d using 1:3:4 with labels offset 0,0.7 "
                             "font ',9' notitle" % idx)
                idx += 1
            parts.append("1 with lines lc rgb 'black' dt 2 title 'reference = 1'")
            for k, (v, lab) in enumerate(p["targets"]):
                parts.append("%g with lines lc rgb '%s' dt 3 lw 2 title '%s'"
                             % (v, tcolors[k % len(tcolors)], lab))
            gp.append("set xrange [0:%g]" % xmax)
            gp.append(("set xtics (%s) scale 0" % tics) if tics else "unset xtics")
            gp.append("set ylabel '%s'" % p["ylabel"])
            gp.append("set title '%s'" % p["title"])
            gp.append("plot " + ", \\\n     ".join(parts) + "\n")
    gp.append("unset multiplot")
    with open(out + "/ratios.gp", "w") as f:
        f.write("\n".join(gp) + "\n")


KIND_COLS = ["glibc", "jemalloc", "ml-none", "ml-high", "ml-prof"]


def kinds_section(korder, kdat, kfailed, desc, profiler, summary):
    """The workload kinds of issue 13: wall, CPU, peak RSS and page faults of
    every configuration side by side, the ratios the targets are about, and
    the rows that miss them marked. Returns (markdown lines, chart panels)
    and appends to summary."""
    cols = [c for c in KIND_COLS if c != "ml-prof" or profiler]

    def med(wl, cfg, i):
        v = kdat.get((wl, cfg))
        return statistics.median(x[i] for x in v) if v else None

    def wall_ratio(wl, cfg):
        """Wall time against the faster of glibc and jemalloc (None if
        either failed: the target is about both)."""
        a, g, j = med(wl, cfg, 0), med(wl, "glibc", 0), med(wl, "jemalloc", 0)
        return a / min(g, j) if a is not None and g and j else None

    def rss_ratio(wl, cfg):
        a, b = med(wl, cfg, 1), med(wl, "jemalloc", 1)
        return a / b if a is not None and b else None

    md = ["## Workload kinds (issue 13): time, CPU, memory\n"]
    md.append("Medians of the interleaved rounds. *CPU* is user + system time "
              "of all the program's threads, *faults* minor + major page "
              "faults, both from wait4's rusage, as is the peak RSS. *Wall / "
              "best* is the wall time over the faster of glibc and jemalloc "
              "on that workload; *RSS / jemalloc* the peak RSS over stock "
              "jemalloc's. Targets (issue 13), for memlimits with no limit and "
              "with limits set: wall / best <= %.2f and RSS / jemalloc <= %.2f; "
              "the profiler's rows are shown, not targeted.\n"
              % (T_KIND_WALL, T_KIND_RSS))
    md.append("| workload | configuration | wall (s) | CPU (s) | peak RSS (MiB) "
              "| page faults | wall / best | RSS / jemalloc | targets |")
    md.append("|---" * 9 + "|")
    worst_w, worst_r = [], []
    all_ok = {"wall": True, "rss": True}
    for wl in korder:
        for c in cols:
            bad = kfailed.get((wl, c))
            m = [med(wl, c, i) for i in range(4)]
            if m[0] is None:
                cells = ["FAILED (exit %s)" % ",".join(bad or ["?"])] + [""] * 5
                wr = rr = None
            else:
                wr, rr = wall_ratio(wl, c), rss_ratio(wl, c)
                cells = ["%.3f" % m[0], "%.3f" % m[2], "%.1f" % (m[1] / 1024),
                         "%d" % m[3], fnum(wr), fnum(rr, "%.2f")]
                if bad:
                    cells[0] += " (%d run(s) FAILED)" % len(bad)
            if c in KIND_TARGETED:
                miss = []
                if wr is None or wr > T_KIND_WALL or bad:
                    miss.append("wall")
                    all_ok["wall"] = False
                if rr is None or rr > T_KIND_RSS or bad:
                    miss.append("RSS")
                    all_ok["rss"] = False
                mark = "met" if not miss else "**MISSED** (%s)" % ", ".join(miss)
                worst_w.append((wr if wr is not None else math.inf, wl, c))
                worst_r.append((rr if rr is not None else math.inf, wl, c))
            else:
                mark = ""
            md.append("| %s | %s | %s | %s |"
                      % (wl, LABEL[c], " | ".join(cells), mark))
    md.append("")
    md.append("Workload kinds (our own programs, scripts/bench/*.c, *.cc):\n")
    for wl in korder:
        md.append("- **%s**: %s" % (wl, desc.get(wl, "")))
    md.append("")

    def worst_of(v):
        if not v:
            return "no data"
        x, wl, c = max(v)
        return "worst %s (%s, %s)" % ("FAILED" if x == math.inf else fnum(x),
                                     wl, LABEL[c])
    summary.append(("13", "memlimits (no limit, limits 1T): wall <= %.2fx "
                    "min(glibc, jemalloc) on every workload kind" % T_KIND_WALL,
                    worst_of(worst_w), met(all_ok["wall"] and bool(worst_w))))
    summary.append(("13", "memlimits (no limit, limits 1T): peak RSS <= %.2fx "
                    "jemalloc on every workload kind" % T_KIND_RSS,
                    worst_of(worst_r), met(all_ok["rss"] and bool(worst_r))))
    pcols = [c for c in cols if c != "jemalloc"]
    panels = [
        dict(title="Workload kinds (issue 13): wall time / min(glibc, jemalloc)",
             ylabel="wall / best of glibc, jemalloc", items=korder, cfgs=cols,
             fn=wall_ratio, targets=[(T_KIND_WALL, "target %.2f" % T_KIND_WALL)]),
        dict(title="Workload kinds (issue 13): peak RSS / jemalloc",
             ylabel="peak RSS / jemalloc", items=korder, cfgs=pcols,
             fn=rss_ratio, targets=[(T_KIND_RSS, "target %.2f" % T_KIND_RSS)]),
    ]
    return md, panels


THR_COLS = ["jemalloc", "ml-none", "ml-global"]


def threads_section(torder, thr, tfailed, meta, summary):
    """The thread-count sweep of issue 10: ns per malloc+free pair at each
    point, the ratio to jemalloc, and the targets marked. Returns (markdown
    lines, chart panels) and appends to summary."""
    def med(pt, c):
        v = thr.get((pt, c))
        return statistics.median(v) if v else None

    def ratio(pt, c):
        a, b = med(pt, c), med(pt, "jemalloc")
        return a / b if a is not None and b else None

    md = ["## Thread-count sweep (issue 10): ns per malloc(4096)+free pair\n"]
    md.append("scripts/bench/threadsweep.c: IDLE threads (64 KiB stacks) each "
              "allocate a block, so that the allocator knows them, and block "
              "on a condition variable; then BUSY threads do malloc(4096)/free "
              "pairs for %s ms. Figure: the busy threads' wall time (earliest "
              "start to latest stop) divided by their total pairs, median of "
              "%s interleaved round(s); ratio to jemalloc in brackets. "
              "Targets (issue 10): <= %.2fx jemalloc with no limit, <= %.2fx "
              "under MEMLIMITS_GLOBAL_MEMORY=1T, at every point.\n"
              % (meta.get("thr_ms", "?"), meta.get("thr_rounds", "?"),
                 T_THR_NONE, T_THR_GLOBAL))
    md.append("| idle threads | busy threads | %s | %s | target <= %.2f | %s "
              "| target <= %.2f |" % (LABEL["jemalloc"], LABEL["ml-none"],
                                      T_THR_NONE, LABEL["ml-global"],
                                      T_THR_GLOBAL))
    md.append("|---" * 7 + "|")
    ok = {"ml-none": True, "ml-global": True}
    worst_v = {"ml-none": [], "ml-global": []}
    for pt, idle, busy in torder:
        cells = []
        for c in THR_COLS:
            m, bad = med(pt, c), tfailed.get((pt, c))
            if m is None:
                cell = "FAILED (exit %s)" % ",".join(bad or ["?"])
            elif c == "jemalloc":
                cell = "%.1f" % m
            else:
                cell = "%.1f (%s)" % (m, fnum(ratio(pt, c)))
            if m is not None and bad:
                cell += ", %d run(s) FAILED" % len(bad)
            cells.append(cell)
            if c != "jemalloc":
                t = T_THR_NONE if c == "ml-none" else T_THR_GLOBAL
                r = ratio(pt, c)
                good = r is not None and r <= t and not bad and \
                    not tfailed.get((pt, "jemalloc"))
                ok[c] &= good
                worst_v[c].append((r if r is not None else math.inf, pt, idle, busy))
                cells.append(met(good))
        md.append("| %s | %s | %s |" % (idle, busy, " | ".join(cells)))
    md.append("")

    def worst_of(v):
        if not v:
            return "no data"
        x, _pt, idle, busy = max(v)
        return "worst %s (%s idle, %s busy)" % (
            "FAILED" if x == math.inf else fnum(x), idle, busy)
    summary.append(("10", "thread sweep, no limit: ns per pair <= %.2fx "
                    "jemalloc at every point" % T_THR_NONE,
                    worst_of(worst_v["ml-none"]), met(ok["ml-none"])))
    summary.append(("10", "thread sweep, MEMLIMITS_GLOBAL_MEMORY=1T: ns per "
                    "pair <= %.2fx jemalloc at every point" % T_THR_GLOBAL,
                    worst_of(worst_v["ml-global"]), met(ok["ml-global"])))
    names = {pt: "%s idle, %s busy" % (idle, busy) for pt, idle, busy in torder}
    panels = [dict(
        title="Thread-count sweep (issue 10): ns per malloc(4096)+free pair / jemalloc",
        ylabel="ns per pair / jemalloc", items=[t[0] for t in torder],
        names=names, cfgs=["ml-none", "ml-global"], fn=ratio,
        targets=[(T_THR_NONE, "target %.2f (no limit)" % T_THR_NONE),
                 (T_THR_GLOBAL, "target %.2f (global limit)" % T_THR_GLOBAL)])]
    return md, panels

main()
