"""Paired slices of benchmarks/proxy/run.sh (PAIRS=N): egress-proxy's CPU per request against each peer's, slice by
slice.

Each line of the input is one slice: proxy, pair number, requests, user ticks, system ticks. A ratio is taken between
egress-proxy's slice and the peer's slice of the same pair, measured seconds apart; the machine's speed, which moves
both, changes less often than that.
"""
import csv
import statistics
import sys

hz = float(sys.argv[1])
slices = {}
for name, pair, requests, user, system in csv.reader(open(sys.argv[2]), delimiter="\t"):
    requests = float(requests)
    slices[(name, int(pair))] = (float(user) / hz * 1e6 / requests, float(system) / hz * 1e6 / requests, requests)
names = list(dict.fromkeys(name for name, _ in slices))
pairs = sorted({pair for _, pair in slices})


def cell(values, digits=2):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


print("| proxy | CPU µs/req | user µs/req | system µs/req | egress-proxy's CPU per request relative to it |")
print("|---|---|---|---|---|")
for name in names:
    mine = [slices[(name, p)] for p in pairs if (name, p) in slices]
    ratios = [
        sum(slices[("egress-proxy", p)][:2]) / sum(slices[(name, p)][:2])
        for p in pairs
        if (name, p) in slices and ("egress-proxy", p) in slices
    ]
    relative = "" if name == "egress-proxy" else cell(ratios)
    print(f"| {name} | {cell([u + s for u, s, _ in mine], 1)} | {cell([u for u, _, _ in mine], 1)} | "
          f"{cell([s for _, s, _ in mine], 1)} | {relative} |")
