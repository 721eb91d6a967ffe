"""What pairs.py and latency_pairs.py share: a cell of a ratio table, and which pairs of slices the hypervisor left
alone.

A slice's steal is the time the hypervisor ran something else while the benchmark's two CPUs (the proxy's and the
load's) wanted to run, from /proc/stat. Every request in flight waits it out, so a slice that lost some measures the
host as much as the proxy; the episodes last seconds and can take in two neighbouring slices of one pair. A pair is
quiet when every one of its slices lost at most QUIET_STEAL_PERCENT (environment, default 0.25) of the two CPUs'
time.
"""

import csv
import os
import statistics
import sys

QUIET_STEAL_PERCENT = float(os.environ.get("QUIET_STEAL_PERCENT", "0.25"))


def cell(values, digits=2):
    """Median (range)."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def read_steal(path: str) -> dict:
    """A steal file's (proxy, pair) -> steal ticks: a line per slice, tab-separated, the proxy first, the pair
    second, the steal ticks last (run.sh's pairs file and its latency pairs' steal file both have that shape)."""
    with open(path) as lines:
        return {(row[0], int(row[1])): float(row[-1]) for row in csv.reader(lines, delimiter="\t")}


def quiet_pairs(steal_ticks: dict, hz: float, seconds: float) -> set:
    """The pairs none of whose slices lost more than the threshold; `steal_ticks` maps (proxy, pair) to ticks."""
    limit = QUIET_STEAL_PERCENT / 100 * 2 * seconds * hz
    return {pair for _, pair in steal_ticks} - {pair for (_, pair), ticks in steal_ticks.items() if ticks > limit}


def print_tables(table, pairs: list, quiet: set | None) -> None:
    """`table(pairs)` over every pair, then over the quiet ones when some were left out."""
    table(pairs)
    if quiet is None or len(quiet) == len(pairs):
        return
    print()
    print(f"Quiet pairs only ({len(quiet)} of {len(pairs)}: no slice of the pair lost more than "
          f"{QUIET_STEAL_PERCENT:g} % of the two CPUs' time to the hypervisor):")
    if quiet:
        print()
        table(sorted(quiet))


if __name__ == "__main__":
    # `slices.py quiet HZ SECONDS FILE`: how many of the steal file's pairs are quiet, for run.sh, which stops
    # measuring pairs once enough of them were (QUIET_PAIRS).
    if len(sys.argv) != 5 or sys.argv[1] != "quiet":
        sys.exit("usage: slices.py quiet HZ SECONDS FILE")
    print(len(quiet_pairs(read_steal(sys.argv[4]), float(sys.argv[2]), float(sys.argv[3]))))
