#!/usr/bin/env bash
# Allow-list scale: what a proxy reload costs with 100,000 hosts (read, decode + validate, index), with a release
# build of egress-proxy (`--check` loads the file exactly as a reload does, then exits).
#   benchmarks/allowlist/run.sh [HOSTS]     default 100000
# Microbenchmarks of the same steps (decode+validate, router build, lookups, a watcher reload), with percentiles and
# malloc counts, are a separate package here (ordo-one/benchmark): see README.md beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOSTS=${1:-100000}
FILE=$(mktemp --suffix=.json)
trap 'rm -f "$FILE"' EXIT
python3 - "$HOSTS" "$FILE" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
entries = []
for i in range(n):
    if i % 10 == 0:
        entries.append({"host": f"*.svc{i}.example{i % 97}.com"})
    elif i % 10 == 1:
        entries.append({"host": f"api{i}.example{i % 97}.com", "port": 8443, "timeouts": {"connectMillis": 2000}})
    else:
        entries.append({"host": f"api{i}.example{i % 97}.com"})
with open(path, "w") as f:
    f.write('{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[\n')
    f.write(",\n".join(json.dumps(e, separators=(",", ":")) for e in entries))
    f.write("\n]}\n")
PY
scripts/swift-build-release.sh --product egress-proxy 2>&1 | tail -n 1
BIN=$(scripts/swift-build-release.sh --show-bin-path)
for run in 1 2 3 4 5; do "$BIN/egress-proxy" --allowlist "$FILE" --check; done
