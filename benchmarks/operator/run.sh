#!/usr/bin/env bash
# Operator scale benchmark: a release build of egress-operator against a real kube-apiserver + etcd on loopback.
#   benchmarks/operator/run.sh [SIZES]     e.g. benchmarks/operator/run.sh 100,1000,5000
#   EGRESS_BENCH_DNS_RULES=suffix benchmarks/operator/run.sh     the DNS mode for large sets (one suffix rule)
#   EGRESS_OPERATOR_BIN=path/to/egress-operator benchmarks/operator/run.sh     measure another build the same way
#   EGRESS_BENCH_PERF=/tmp/op.perf benchmarks/operator/run.sh     `perf record` the operator while changes are timed
#   EGRESS_BENCH_ETCD_TMPFS=1 benchmarks/operator/run.sh     etcd's data on tmpfs (/dev/shm): no disk fsync stalls
# Each sample of one change reports the operator's pass time during it and etcd's disk syncs slower than 64 ms.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${1:-100,1000,5000}
export EGRESS_CONTROL_PLANE_DIR=/tmp/egress-bench-cp EGRESS_APISERVER_PORT=36443
export EGRESS_ETCD_PORT=32379 EGRESS_ETCD_PEER_PORT=32380
if [ "${EGRESS_BENCH_ETCD_TMPFS:-0}" = 1 ]; then export EGRESS_ETCD_DATA_DIR=/dev/shm/egress-bench-etcd; fi
ADMIN_PORT=39090
scripts/control-plane.sh install
export PATH="$(scripts/install-tools.sh):$PATH"
CONFIGURATION=${EGRESS_BENCH_CONFIGURATION:-release}
echo "building egress-operator ($CONFIGURATION)" >&2
# Static Swift runtime, as shipped (scripts/swift-build-release.sh): RSS then counts only the pages the operator
# touches, not whole shared libraries (Foundation and its ICU data alone are tens of MB).
build=(swift build -c "$CONFIGURATION" --static-swift-stdlib)
if [ "$CONFIGURATION" = release ]; then build=(scripts/swift-build-release.sh); fi
"${build[@]}" --product egress-operator 2>&1 | tail -n 1
BIN=$("${build[@]}" --show-bin-path)
scripts/control-plane.sh start
eval "$(scripts/control-plane.sh env)"
pid=
trap '[ -n "$pid" ] && kill $pid; scripts/control-plane.sh stop >/dev/null 2>&1 || true' EXIT
kubectl apply -f config/crd/egresshosts.egress.dev.yaml >/dev/null
kubectl wait --for=condition=Established crd/egresshosts.egress.dev --timeout=60s >/dev/null
kubectl create namespace egress-system >/dev/null
kubectl -n kube-system create configmap coredns \
    --from-file=Corefile=Tests/ManifestsTests/Golden/corefile/kubeadm.input.txt >/dev/null
DNS_RULES=${EGRESS_BENCH_DNS_RULES:-per-host}
OPERATOR=${EGRESS_OPERATOR_BIN:-$BIN/egress-operator}
# No proxy pods run here to confirm what they loaded: Ready follows the ConfigMap and DNS writes.
"$OPERATOR" run --admin-port $ADMIN_PORT --log-level warning --dns-rules "$DNS_RULES" --no-confirm-proxy-load \
    >/tmp/egress-bench-operator.log 2>&1 &
pid=$!
until kubectl -n egress-system get deployment egress-proxy >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { echo "egress-operator exited:" >&2; tail -n 5 /tmp/egress-bench-operator.log >&2; exit 1; }
    sleep 0.2
done
# No kubelet here: report the proxy available so DNS gets programmed.
kubectl -n egress-system patch deployment egress-proxy --subresource=status --type=merge \
    -p '{"status":{"replicas":2,"readyReplicas":2,"availableReplicas":2,"updatedReplicas":2}}' >/dev/null
python3 benchmarks/operator/bench.py --kubeconfig "$KUBECONFIG" --operator-pid $pid \
    --operator-metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --sizes "$SIZES" --dns-rules "$DNS_RULES" \
    --etcd-metrics "http://127.0.0.1:$EGRESS_ETCD_PORT/metrics" \
    ${EGRESS_BENCH_PERF:+--perf-changes "$EGRESS_BENCH_PERF"}
