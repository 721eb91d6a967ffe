"""Latency pairs of benchmarks/proxy/run.sh (LATENCY_PAIRS=N): each proxy's fixed-rate latencies pooled over all its
slices, and egress-proxy's p99 against each peer's, slice by neighbouring slice; then the same over the quiet pairs
only (slices.py), when a steal file is given.

Usage: latency_pairs.py DIR [HZ SECONDS STEAL]
  DIR holds NAME.PAIR.tsv files, one per slice, as wrk's done() wrote them: a latency in microseconds and how many
  requests took it, one line per distinct value.
  STEAL has a line per slice: proxy, pair number, steal ticks (HZ per second) during its SECONDS.

A p99 from one 10 s phase at about 1,000 req/s rests on some 100 requests; pooled over N slices it rests on N times
as many, and the slices, interleaved, share the machine's quiet and busy moments between the proxies.
"""

import collections
import pathlib
import sys

from slices import cell, print_tables, quiet_pairs, read_steal

PERCENTILES = (50, 90, 99, 99.9)


def percentile(histogram: collections.Counter, p: float) -> float:
    """The smallest latency at or below which p % of the requests fall, in milliseconds."""
    total = sum(histogram.values())
    wanted = total * p / 100
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= wanted:
            return value / 1000
    return 0.0


slices: dict[tuple[str, int], collections.Counter] = {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.tsv")):
    name, pair = path.stem.rsplit(".", 1)
    histogram: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        value, count = line.split("\t")
        histogram[int(value)] += int(count)
    slices[(name, int(pair))] = histogram

names = list(dict.fromkeys(name for name, _ in sorted(slices, key=lambda key: (key[0] != "egress-proxy", key[0]))))


def table(pairs):
    columns = " | ".join(f"p{p:g} ms" for p in PERCENTILES)
    print(f"| proxy | requests | {columns} | egress-proxy's p99 relative to it, by slice | slices with egress-proxy's "
          "p99 at or below it |")
    print("|---|---|" + "---|" * len(PERCENTILES) + "---|---|")
    for name in names:
        pooled: collections.Counter = collections.Counter()
        for pair in pairs:
            pooled.update(slices.get((name, pair), {}))
        values = " | ".join(f"{percentile(pooled, p):.3f}" for p in PERCENTILES)
        relative, at_or_below = "", ""
        if name != "egress-proxy":
            both = [p for p in pairs if (name, p) in slices and ("egress-proxy", p) in slices]
            ratios = [percentile(slices[("egress-proxy", p)], 99) / percentile(slices[(name, p)], 99) for p in both]
            if ratios:
                relative = cell(ratios)
                at_or_below = f"{sum(r <= 1 for r in ratios)} of {len(ratios)}"
        print(f"| {name} | {sum(pooled.values())} | {values} | {relative} | {at_or_below} |")


quiet = None
if len(sys.argv) > 4:
    quiet = quiet_pairs(read_steal(sys.argv[4]), float(sys.argv[2]), float(sys.argv[3]))
print_tables(table, sorted({pair for _, pair in slices}), quiet)
