#!/usr/bin/env python3
"""curve.py: the cost curve of README "Scale" -- how deja's figures grow
with the number of entries.

Reads the outputs of bench/scripts/scale.sh (one file per size and quant,
e.g. scale-int8-10000.txt scale-int8-100000.txt scale-int8-1000000.txt),
prints one table (markdown) and, with --plot OUT.svg, writes OUT.dat and
OUT.gp and runs gnuplot when it is installed (as deja-bench --plot does):
lookup latency, memory per entry and restart time against n, log scale.

usage: curve.py [--plot OUT.svg] scale-*.txt
"""
import math
import os
import re
import shutil
import subprocess
import sys


def parse(path):
    """The figures of one scale.sh output, by name."""
    text = open(path, encoding="utf-8").read()
    sections = re.split(r"^== \S+ ", text, flags=re.M)
    fig = {}
    m = re.search(r"start quant=(\S+) n=(\d+)", text)
    fig["quant"], fig["n"] = m.group(1), int(m.group(2))

    def first(pattern, body, conv=float):
        mm = re.search(pattern, body, flags=re.M)
        return conv(mm.group(1)) if mm else None

    for sec in sections:
        head = sec.split("\n", 1)[0]
        if head.startswith("load"):
            fig["stores_s"] = first(r"= (\d+) stores/s", sec)
            fig["load_s"] = first(r"stores\s+\d+ in ([\d.]+) s", sec)
            fig["catchup_s"] = first(r"caught up ([\d.]+) s after", sec)
            fig["qps16"] = first(r"= (\d+) lookups/s", sec)
            fig["p50_16"] = first(r"latency us\s+p50 ([\d.]+)", sec)
            fig["p99_16"] = first(r"latency us.*p99 ([\d.]+)", sec)
            fig["p999_16"] = first(r"latency us.*p99\.9 ([\d.]+)", sec)
            fig["hit_pct"] = first(r"\(([\d.]+)% of it\)", sec)
            fig["false_hits"] = first(r"false_hits (\d+)", sec, int)
            fig["anon_per_entry"] = first(r"per entry anon (\d+) B", sec)
            fig["rss_kb"] = first(r"VmRSS (\d+) kB", sec)
            fig["disk"] = first(r"disk_bytes (\d+)", sec)
        elif head.startswith("1 connection"):
            fig["qps1"] = first(r"= (\d+) lookups/s", sec)
            fig["p50_1"] = first(r"latency us\s+p50 ([\d.]+)", sec)
            fig["p99_1"] = first(r"latency us.*p99 ([\d.]+)", sec)
            fig["p999_1"] = first(r"latency us.*p99\.9 ([\d.]+)", sec)
        elif head.startswith("clean restart"):
            fig["restart_snap_s"] = first(r"ready after ([\d.]+) s", sec)
        elif head.startswith("kill -9 restart"):
            fig["restart_nosnap_s"] = first(r"ready after ([\d.]+) s", sec)
            fig["rebuild_s"] = first(r"graph rebuilt ([\d.]+) s", sec)
            fig["p99_rebuild"] = first(r"latency us.*p99 ([\d.]+)", sec)
            fig["store_p99_rebuild_ms"] = first(r"during the rebuild: p50 [\d.]+ ms p99 ([\d.]+) ms",
                                             sec)
    return fig


COLUMNS = [
    ("n", "entries", "{:,}"),
    ("quant", "quant", "{}"),
    ("load_s", "load s", "{:.0f}"),
    ("catchup_s", "graph +s", "{:.0f}"),
    ("anon_per_entry", "RssAnon B/entry", "{:,.0f}"),
    ("disk", "disk MB", None),
    ("qps16", "lookups/s 16c", "{:,.0f}"),
    ("p99_16", "p99 us 16c", "{:,.0f}"),
    ("qps1", "lookups/s 1c", "{:,.0f}"),
    ("p50_1", "p50 us 1c", "{:,.0f}"),
    ("p99_1", "p99 us 1c", "{:,.0f}"),
    ("p999_1", "p99.9 us 1c", "{:,.0f}"),
    ("hit_pct", "hits % oracle", "{:.2f}"),
    ("false_hits", "false hits", "{}"),
    ("restart_snap_s", "restart snap s", "{:.1f}"),
    ("restart_nosnap_s", "restart no snap s", "{:.1f}"),
    ("rebuild_s", "graph rebuilt s", "{:.0f}"),
]


def cell(fig, key, fmt):
    v = fig.get(key)
    if v is None:
        return "-"
    if key == "disk":
        return "{:,.0f}".format(v / 1e6)
    return fmt.format(v)


def table(figs):
    lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for f in figs:
        lines.append("| " + " | ".join(cell(f, k, fmt) for k, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def growth(figs, key):
    """The exponent b of key ~ n^b between the smallest and largest n."""
    pts = [(f["n"], f.get(key)) for f in figs if f.get(key)]
    if len(pts) < 2:
        return None
    (n0, v0), (n1, v1) = pts[0], pts[-1]
    return math.log(v1 / v0) / math.log(n1 / n0)


def plot(figs, svg):
    stem = svg[:-4] if svg.endswith(".svg") else svg
    dat, gp = stem + ".dat", stem + ".gp"
    quants = sorted({f["quant"] for f in figs})
    with open(dat, "w", encoding="utf-8") as d:
        for q in quants:
            d.write("# quant %s: n p50_1 p99_1 p99_16 anon_per_entry restart_snap "
                    "restart_nosnap\n" % q)
            for f in figs:
                if f["quant"] != q:
                    continue
                d.write("%d %s %s %s %s %s %s\n" % tuple(
                    [f["n"]] + [f.get(k) if f.get(k) is not None else "NaN" for k in
                                ("p50_1", "p99_1", "p99_16", "anon_per_entry",
                                 "restart_snap_s", "restart_nosnap_s")]))
            d.write("\n\n")
    panels = [("lookup latency (us)", [(2, "p50 1 conn"), (3, "p99 1 conn"),
                                       (4, "p99 16 conn")]),
              ("RssAnon per entry (bytes)", [(5, "per entry")]),
              ("restart until serving (s)", [(6, "with snapshot"),
                                             (7, "without snapshot")])]
    with open(gp, "w", encoding="utf-8") as g:
        g.write('set terminal svg size 1200,420 dynamic font "sans,11"\n')
        g.write('set output "%s"\n' % svg)
        g.write("set multiplot layout 1,3 title 'deja: cost against entries (1536-d)'\n")
        g.write("set logscale x\nset xlabel 'entries'\nset key top left\nset grid\n")
        for title, cols in panels:
            g.write("set title '%s'\n" % title)
            plots = []
            for i, q in enumerate(quants):
                for col, name in cols:
                    plots.append("'%s' index %d using 1:%d with linespoints title '%s %s'"
                                 % (os.path.basename(dat), i, col, q, name))
            g.write("plot " + ", ".join(plots) + "\n")
        g.write("unset multiplot\n")
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot", os.path.basename(gp)], check=True,
                       cwd=os.path.dirname(os.path.abspath(gp)))
        print("chart: %s" % svg)
    else:
        print("gnuplot not found (apt-get install gnuplot-nox); then: gnuplot %s" % gp)


def main(argv):
    svg = None
    if len(argv) > 2 and argv[1] == "--plot":
        svg, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) < 2:
        print(__doc__.strip().split("\n\n")[-1], file=sys.stderr)
        return 2
    figs = sorted((parse(p) for p in argv[1:]), key=lambda f: (f["quant"], f["n"]))
    print(table(figs))
    for q in sorted({f["quant"] for f in figs}):
        fq = [f for f in figs if f["quant"] == q]
        parts = []
        for key, name in (("p50_1", "p50 latency (1 conn)"), ("p99_16", "p99 (16 conn)"),
                          ("anon_per_entry", "memory per entry"),
                          ("restart_snap_s", "restart with snapshot"),
                          ("load_s", "load time")):
            b = growth(fq, key)
            if b is not None:
                parts.append("%s ~ n^%.2f" % (name, b))
        if parts:
            print("%s: %s" % (q, "; ".join(parts)))
    if svg:
        plot(figs, svg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
