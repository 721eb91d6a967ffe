"""Paired slices of benchmarks/proxy/run.sh (PAIRS=N): egress-proxy's throughput and CPU per request against each
peer's, slice by slice; then the same over the quiet pairs only (slices.py).

Usage: pairs.py HZ SECONDS FILE. Each line of FILE is one slice: proxy, pair number, requests, user ticks, system
ticks, steal ticks. A ratio is taken between egress-proxy's slice and the peer's slice of the same pair, measured
seconds apart; the machine's speed, which moves both, changes less often than that.
"""
import csv
import statistics
import sys

from slices import cell, print_tables, quiet_pairs, read_steal

hz = float(sys.argv[1])
seconds = float(sys.argv[2])
slices = {}
for name, pair, requests, user, system, _ in csv.reader(open(sys.argv[3]), delimiter="\t"):
    requests = float(requests)
    slices[(name, int(pair))] = (float(user) / hz * 1e6 / requests, float(system) / hz * 1e6 / requests, requests)
names = list(dict.fromkeys(name for name, _ in slices))


def cpu(slice):
    return slice[0] + slice[1]


def throughput(slice):
    return slice[2] / seconds


def table(pairs):
    def ratios(name, of):
        """egress-proxy's `of(slice)` over the peer's, one ratio per pair both were measured in."""
        return [
            of(slices[("egress-proxy", p)]) / of(slices[(name, p)])
            for p in pairs
            if (name, p) in slices and ("egress-proxy", p) in slices
        ]

    print("| proxy | req/s | CPU µs/req | user µs/req | system µs/req | egress-proxy's throughput relative to it "
          "(>1 is better) | slices with egress-proxy's throughput at or above it | egress-proxy's CPU per request "
          "relative to it (<1 is better) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        mine = [slices[(name, p)] for p in pairs if (name, p) in slices]
        rates = [] if name == "egress-proxy" else ratios(name, throughput)
        relative_rate = f"{cell(rates)} | {sum(r >= 1 for r in rates)} of {len(rates)}" if rates else " | "
        relative_cpu = "" if name == "egress-proxy" else cell(ratios(name, cpu))
        print(f"| {name} | {statistics.median(throughput(s) for s in mine):.0f} | "
              f"{cell([cpu(s) for s in mine], 1)} | {cell([u for u, _, _ in mine], 1)} | "
              f"{cell([s for _, s, _ in mine], 1)} | {relative_rate} | {relative_cpu} |")


print_tables(table, sorted({pair for _, pair in slices}), quiet_pairs(read_steal(sys.argv[3]), hz, seconds))
