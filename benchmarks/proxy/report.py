"""The report of benchmarks/proxy/run.sh: medians per proxy over the rounds, and ratios taken within each round.

A ratio compares two proxies measured minutes apart at most, under the same outside load; the median of those
ratios, with their range, is steadier than a ratio of two medians taken at different times.
"""
import csv
import statistics
import sys

COLUMNS = ["name", "round", "rps", "sat_p50", "sat_p99", "fixed_rps", "p50", "p90", "p99", "cpu", "rss", "new_conns",
           "errors"]

rows = [dict(zip(COLUMNS, row)) for row in csv.reader(open(sys.argv[1]), delimiter="\t")]
for row in rows:
    for key in COLUMNS[1:]:
        row[key] = float(row[key])
names = list(dict.fromkeys(row["name"] for row in rows))
rounds = sorted({int(row["round"]) for row in rows})
by = {(row["name"], int(row["round"])): row for row in rows}


def median(name, key):
    return statistics.median(by[(name, r)][key] for r in rounds if (name, r) in by)


print()
print("Medians over the rounds; new upstream connections in the first round (warm-up) / in the later rounds.")
print()
print("| proxy | req/s (saturation) | p50 ms | p99 ms | req/s (fixed) | p50 ms | p90 ms | p99 ms | CPU µs/req | "
      "RSS MiB | new upstream conns | non-2xx |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in names:
    first = by[(name, rounds[0])]["new_conns"]
    later = sum(by[(name, r)]["new_conns"] for r in rounds[1:] if (name, r) in by)
    errors = sum(by[(name, r)]["errors"] for r in rounds if (name, r) in by)
    print(f"| {name} | {median(name, 'rps'):.0f} | {median(name, 'sat_p50'):.3f} | {median(name, 'sat_p99'):.3f} | "
          f"{median(name, 'fixed_rps'):.0f} | {median(name, 'p50'):.3f} | {median(name, 'p90'):.3f} | "
          f"{median(name, 'p99'):.3f} | {median(name, 'cpu'):.1f} | {median(name, 'rss'):.0f} | "
          f"{first:.0f} / {later:.0f} | {errors:.0f} |")


def ratios(peer, key, invert=False):
    values = []
    for r in rounds:
        if ("egress-proxy", r) in by and (peer, r) in by:
            ours, theirs = by[("egress-proxy", r)][key], by[(peer, r)][key]
            values.append(ours / theirs if theirs else float("nan"))
    return values


def cell(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


peers = [name for name in names if name in ("nginx", "haproxy")]
# The floors and a baseline build (BASELINE_BIN) are not peers: they show what egress-proxy's cost is made of.
floors = [name for name in names if name.startswith("floor-") or name == "egress-baseline"]
print()
print("egress-proxy relative to each peer, ratio within each round: median (range). Throughput: >1 is better; "
      "latency, CPU, RSS: <1 is better.")
print()
print("| peer | throughput | fixed-rate p50 | fixed-rate p99 | CPU per request | RSS |")
print("|---|---|---|---|---|---|")
for peer in peers:
    print(f"| {peer} | {cell(ratios(peer, 'rps'))} | {cell(ratios(peer, 'p50'))} | {cell(ratios(peer, 'p99'))} | "
          f"{cell(ratios(peer, 'cpu'))} | {cell(ratios(peer, 'rss'))} |")
if floors:
    print()
    print("| floor or baseline | egress-proxy throughput | egress-proxy CPU per request |")
    print("|---|---|---|")
    for floor in floors:
        print(f"| {floor} | {cell(ratios(floor, 'rps'))} | {cell(ratios(floor, 'cpu'))} |")
print()
print("Each round (req/s at saturation, CPU µs per request):")
print()
print("| round | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for r in rounds:
    cells = [f"{by[(n, r)]['rps']:.0f}, {by[(n, r)]['cpu']:.1f}" if (n, r) in by else "" for n in names]
    print(f"| {r} | " + " | ".join(cells) + " |")
