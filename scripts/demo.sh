#!/usr/bin/env bash
# The local demo (README "Run the demo"): the whole egress path on one machine, nothing faked.
#
#  1. a real kube-apiserver + etcd on loopback (scripts/control-plane.sh), the EgressHost CRD, a stock
#     kubeadm-style CoreDNS ConfigMap;
#  2. egress-operator running against it, reconciling the sample EgressHosts plus one for a local
#     "third-party API" (an HTTPS server with a certificate from a CA made here);
#  3. egress-proxy running locally, fed by the operator's allow-list ConfigMap and TLS Secret, which this script
#     copies to files every second exactly as the kubelet projects them into proxy pods (there is no kubelet here);
#     for the same reason this script stands a Pod object in for the local proxy and reports the proxy Deployment
#     available once the local proxy is ready;
#  4. a plaintext call through the proxy succeeding with verified TLS upstream, a non-allowed host refused, the
#     Corefile the operator wrote, and `kubectl get eh` with Ready conditions, all read from the API server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=${EGRESS_DEMO_DIR:-/tmp/egress-demo}
PROXY_PORT=${EGRESS_DEMO_PROXY_PORT:-28080}
PROXY_ADMIN_PORT=${EGRESS_DEMO_PROXY_ADMIN_PORT:-29091}
OPERATOR_ADMIN_PORT=${EGRESS_DEMO_OPERATOR_ADMIN_PORT:-29090}
UPSTREAM_PORT=${EGRESS_DEMO_UPSTREAM_PORT:-28443}
export EGRESS_CONTROL_PLANE_DIR=$DEMO/control-plane EGRESS_APISERVER_PORT=${EGRESS_DEMO_APISERVER_PORT:-26443}
export EGRESS_ETCD_PORT=${EGRESS_DEMO_ETCD_PORT:-22379} EGRESS_ETCD_PEER_PORT=${EGRESS_DEMO_ETCD_PEER_PORT:-22380}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    scripts/control-plane.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "installing what the demo needs (first run on a machine: builds kube-apiserver, 10-20 minutes)"
scripts/control-plane.sh install
export PATH="$(scripts/install-tools.sh):$PATH"

step "building egress-operator and egress-proxy"
swift build --product egress-operator 2>&1 | tail -n 1
swift build --product egress-proxy 2>&1 | tail -n 1
BIN=$(swift build --show-bin-path)

rm -rf "$DEMO/tls" "$DEMO/pki" "$DEMO"/*.log
mkdir -p "$DEMO/tls" "$DEMO/pki"

step "starting the local control plane"
scripts/control-plane.sh start
eval "$(scripts/control-plane.sh env)"
kubectl apply -f config/crd/egresshosts.egress.dev.yaml
kubectl wait --for=condition=Established crd/egresshosts.egress.dev --timeout=60s
kubectl create namespace egress-system
kubectl -n kube-system create configmap coredns \
    --from-file=Corefile=Tests/ManifestsTests/Golden/corefile/kubeadm.input.txt

step "starting a local HTTPS \"third-party API\" (api.example.test) with a demo CA"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=egress demo CA" \
    -keyout "$DEMO/pki/ca.key" -out "$DEMO/pki/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.example.test" \
    -keyout "$DEMO/pki/server.key" -out "$DEMO/pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.example.test\n' >"$DEMO/pki/san.ext"
openssl x509 -req -in "$DEMO/pki/server.csr" -CA "$DEMO/pki/ca.crt" -CAkey "$DEMO/pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$DEMO/pki/san.ext" -out "$DEMO/pki/server.crt" 2>/dev/null
python3 scripts/demo-upstream.py "$UPSTREAM_PORT" "$DEMO/pki/server.crt" "$DEMO/pki/server.key" \
    2>"$DEMO/upstream.log" &
pids+=($!)
kubectl -n egress-system create configmap demo-ca --from-file=ca.crt="$DEMO/pki/ca.crt"

step "starting egress-operator"
"$BIN/egress-operator" run --admin-port "$OPERATOR_ADMIN_PORT" --proxy-tls-mount-path "$DEMO/tls" \
    --log-format text >"$DEMO/operator.log" 2>&1 &
pids+=($!)

step "applying EgressHosts: the samples, and one for the local API"
kubectl apply -f config/samples/github-api.yaml -f config/samples/googleapis-wildcard.yaml \
    -f config/samples/stripe-fixed-addresses.yaml -f config/samples/partner-custom-ca.yaml
kubectl apply -f - <<YAML
apiVersion: egress.dev/v1alpha1
kind: EgressHost
metadata:
  name: demo-api
spec:
  host: api.example.test
  port: $UPSTREAM_PORT
  addresses: ["127.0.0.1"]
  allowPrivateAddresses: true   # the demo's upstream is on loopback; SSRF protection refuses it otherwise
  tls:
    caBundle: {kind: ConfigMap, name: demo-ca}
YAML

step "starting egress-proxy, fed by the operator's ConfigMap and Secret (projected as the kubelet would)"
until kubectl -n egress-system get configmap egress-proxy-allowlist >/dev/null 2>&1; do sleep 0.5; done
project() {
    while true; do
        kubectl -n egress-system get configmap egress-proxy-allowlist -o jsonpath='{.data.allowlist\.json}' \
            >"$DEMO/allowlist.json.tmp" 2>/dev/null && mv "$DEMO/allowlist.json.tmp" "$DEMO/allowlist.json"
        kubectl -n egress-system get secret egress-proxy-tls -o json 2>/dev/null | python3 -c '
import base64, json, os, sys
data = json.load(sys.stdin).get("data") or {}
for key, value in data.items():
    path = os.path.join(sys.argv[1], key)
    with open(path + ".tmp", "wb") as f:
        f.write(base64.b64decode(value))
    os.replace(path + ".tmp", path)
' "$DEMO/tls"
        sleep 1
    done
}
project &
pids+=($!)
until [ -s "$DEMO/allowlist.json" ]; do sleep 0.2; done
"$BIN/egress-proxy" --allowlist "$DEMO/allowlist.json" --port "$PROXY_PORT" --admin-port "$PROXY_ADMIN_PORT" \
    --host 127.0.0.1 --admin-host 127.0.0.1 >"$DEMO/proxy.log" 2>&1 &
pids+=($!)
until curl -fsS "http://127.0.0.1:$PROXY_ADMIN_PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
echo "egress-proxy is ready on 127.0.0.1:$PROXY_PORT"
# No kubelet runs here: a Pod object stands for the local proxy (the proxy pods' labels and admin port), reported
# ready at 127.0.0.1 so the operator can ask it what it has loaded (GET /allowlist), and the Deployment is reported
# available.
kubectl -n egress-system apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: egress-proxy-local
  labels:
    app.kubernetes.io/name: egress-proxy
    app.kubernetes.io/component: proxy
    app.kubernetes.io/part-of: egress-operator
spec:
  serviceAccountName: egress-proxy
  automountServiceAccountToken: false
  containers:
    - name: egress-proxy
      image: egress-proxy:local
      ports: [{name: admin, containerPort: $PROXY_ADMIN_PORT}]
YAML
kubectl -n egress-system patch pod egress-proxy-local --subresource=status --type=merge \
    -p '{"status":{"phase":"Running","podIP":"127.0.0.1","conditions":[{"type":"Ready","status":"True"}]}}' >/dev/null
kubectl -n egress-system patch deployment egress-proxy --subresource=status --type=merge \
    -p '{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}' >/dev/null

step "waiting for the EgressHosts to become Ready (the proxy has loaded them: nothing to wait for after this)"
kubectl wait --for=condition=Ready egresshost/demo-api egresshost/github-api --timeout=60s

step "kubectl get egresshosts"
kubectl get eh -o wide

step "plaintext call: curl -H 'Host: api.example.test.egress.local' http://127.0.0.1:$PROXY_PORT/v1/hello"
curl -sS -i --fail-with-body -H "Host: api.example.test.egress.local" "http://127.0.0.1:$PROXY_PORT/v1/hello"

step "a host that is not allowed is refused: curl -H 'Host: evil.example.net.egress.local' ..."
curl -sS -i -H "Host: evil.example.net.egress.local" "http://127.0.0.1:$PROXY_PORT/"

step "the Corefile the operator wrote (kube-system/coredns)"
kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}'

step "why partner-payments is not Ready (its CA ConfigMap and client Secret do not exist)"
kubectl get eh partner-payments -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

step "the proxy's metrics for the demo host"
curl -sS "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" | grep 'api.example.test' | head -n 8 || true

step "what the proxy reports it has loaded (GET /allowlist on its admin port, which the operator asks)"
curl -fsS "http://127.0.0.1:$PROXY_ADMIN_PORT/allowlist"
echo

step "done: logs are in $DEMO (operator.log, proxy.log, upstream.log)"
