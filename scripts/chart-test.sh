#!/usr/bin/env bash
# Verifies the Helm chart and the kustomize tree with the real tools:
#   offline:  helm lint --strict; helm template (default and ci/nondefault-values.yaml) | kubernetes-validate
#             --strict; the schema rejects a wrong type and a typo'd key; the chart's CRD and RBAC rules equal
#             config/'s; the rendered operator flags exist in `egress-operator run --help` (when a build exists);
#             the policy/v1 PDB appears only where policy/v1 is served
#   cluster:  helm install / upgrade / uninstall into the control plane of $KUBECONFIG, EgressHosts accepted and
#             rejected by the CRD schema, then `kubectl apply -k config/default` and clean-up
#
#   scripts/chart-test.sh                 # needs KUBECONFIG pointing at a running control plane
#   CHART_TEST_OFFLINE=1 scripts/chart-test.sh   # offline checks only
#
# The caller starts the control plane (scripts/control-plane.sh start; eval "$(scripts/control-plane.sh env)").
# Prints `chart: N passed, M failed` last and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

CHART=charts/egress-operator
RELEASE=egress-operator
NAMESPACE=${CHART_TEST_NAMESPACE:-egress-chart-test}
export PATH="$(scripts/install-tools.sh):$PATH"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export HELM_CACHE_HOME=$TMP/helm/cache HELM_CONFIG_HOME=$TMP/helm/config HELM_DATA_HOME=$TMP/helm/data

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
not_ok() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/      /' | tail -n 30; }
# check NAME COMMAND...: passes when the command succeeds.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}
# reject NAME PATTERN COMMAND...: passes when the command fails and its output matches PATTERN.
reject() {
    local name=$1 pattern=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        not_ok "$name (was accepted)" "$out"
    elif grep -qE -- "$pattern" <<<"$out"; then
        ok "$name"
        printf '      %s\n' "$(grep -E -- "$pattern" <<<"$out" | head -n 2 | tr '\n' ' ')"
    else
        not_ok "$name (failed without a message matching /$pattern/)" "$out"
    fi
}
py() { egress-python "$@"; }

echo "== offline"
check "helm lint --strict (default values)" helm lint --strict "$CHART"
check "helm lint --strict (ci/nondefault-values.yaml)" helm lint --strict "$CHART" -f "$CHART/ci/nondefault-values.yaml"

helm template "$RELEASE" "$CHART" -n egress-system >"$TMP/default.yaml" 2>"$TMP/err" || cat "$TMP/err"
helm template "$RELEASE" "$CHART" -n egress-system -f "$CHART/ci/nondefault-values.yaml" >"$TMP/nondefault.yaml" \
    2>"$TMP/err" || cat "$TMP/err"
check "kubernetes-validate --strict (default values)" kubernetes-validate --strict "$TMP/default.yaml"
# The ServiceMonitor has no built-in schema: kubernetes-validate only warns about it; it is checked below.
check "kubernetes-validate --strict (non-default values)" kubernetes-validate --strict "$TMP/nondefault.yaml"

reject "schema rejects a wrong type (replicaCount: \"two\")" "replicaCount" \
    helm template "$RELEASE" "$CHART" -f "$CHART/ci/bad-type.values.yaml"
reject "schema rejects a typo'd key (replicas)" "additional properties|replicas" \
    helm template "$RELEASE" "$CHART" -f "$CHART/ci/typo.values.yaml"
reject "schema rejects a wrong enum (--set coredns.mode=rewrite)" "coredns|mode" \
    helm template "$RELEASE" "$CHART" --set coredns.mode=rewrite
reject "an autoscaling maximum below the replicas is refused" "maxReplicas must be at least" \
    helm template "$RELEASE" "$CHART" --set proxy.autoscaling.enabled=true,proxy.replicas=12
reject "several replicas without leader election are refused" "needs replicaCount: 1" \
    helm template "$RELEASE" "$CHART" --set leaderElection.enabled=false
reject "a suffix outside the special-use domains is refused" "suffix" \
    helm template "$RELEASE" "$CHART" --set proxy.suffix=egress.example.com
reject "a suffix within the cluster domain is refused" "within the cluster domain corp.local" \
    helm template "$RELEASE" "$CHART" --set clusterDomain=corp.local,proxy.suffix=egress.corp.local
reject "a suffix within the default cluster domain is refused" "within the cluster domain cluster.local" \
    helm template "$RELEASE" "$CHART" --set proxy.suffix=egress.cluster.local
check "one replica gets no PodDisruptionBudget that would block drains" bash -c \
    "! helm template '$RELEASE' '$CHART' --set replicaCount=1 | grep -q 'kind: PodDisruptionBudget'"
check "podAnnotations: null leaves the proxy unmeshed" bash -c \
    "helm template '$RELEASE' '$CHART' --set proxy.podAnnotations=null | grep -q -- '--proxy-pod-annotation=none'"

check "chart CRD is byte-identical to config/crd" cmp "$CHART/crds/egresshosts.egress.dev.yaml" \
    config/crd/egresshosts.egress.dev.yaml

# The rendered Roles carry exactly the rules of config/rbac (both come from Sources/Manifests/RBAC.swift).
check "rendered RBAC rules equal config/rbac's" py - "$TMP/default.yaml" config/rbac/rbac.yaml <<'PY'
import sys, yaml
def rules(path):
    out = {}
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            out[(doc["kind"], doc["metadata"]["name"].endswith("-coredns"), doc["metadata"].get("namespace"))] = doc["rules"]
    return out
chart, config = rules(sys.argv[1]), rules(sys.argv[2])
if chart != config:
    sys.exit(f"chart: {chart}\nconfig: {config}")
PY

check "non-default values reach the objects" py - "$TMP/nondefault.yaml" <<'PY'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
dep = docs[("Deployment", "egress")]
spec = dep["spec"]["template"]["spec"]
c = spec["containers"][0]
args = c["args"]
want = ["run", "--namespace=egress-system", "--leader-elect", "--lease-duration-seconds=30", "--admin-port=9191",
        "--log-level=debug", "--log-format=text", "--coredns-mode=custom", "--coredns-namespace=dns-system",
        "--dns-rules=suffix", "--proxy-image=registry.example.com/platform/egress-proxy:0.1.0-rc1",
        "--proxy-replicas=4", "--proxy-max-replicas=12", "--proxy-target-cpu-utilization=60", "--suffix=egress.internal",
        "--proxy-pod-annotation=config.linkerd.io/proxy-cpu-request=50m", "--proxy-pod-annotation=linkerd.io/inject=enabled",
        "--proxy-tls-mount-path=/var/run/egress/tls", "--proxy-port=18080", "--proxy-cpu-request=250m",
        "--proxy-memory-request=128Mi", "--proxy-memory-limit=512Mi", "--proxy-max-connections=20000",
        "--no-proxy-access-log", "--proxy-log-paths", "--no-confirm-proxy-load",
        "--proxy-client-namespace-label=egress.dev/client=true", "--cluster-domain=corp.local",
        "--coredns-configmap=coredns-main", "--coredns-custom-configmap=coredns-extra", "--lockdown",
        "--lockdown-cluster-cidr=10.96.0.0/12", "--lockdown-cluster-cidr=10.244.0.0/16", "--resync-seconds=600"]
assert args == want, f"args {args}"
assert dep["spec"]["replicas"] == 3
assert c["image"].endswith("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), c["image"]
assert c["imagePullPolicy"] == "Always"
assert spec["serviceAccountName"] == "egress-sa" and ("ServiceAccount", "egress-sa") in docs
assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"} and spec["tolerations"] and spec["affinity"]
assert {e["name"] for e in c["env"]} == {"POD_NAME", "POD_NAMESPACE"}
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert c["securityContext"]["readOnlyRootFilesystem"] and spec["securityContext"]["runAsNonRoot"]
assert docs[("Role", "egress-coredns")]["metadata"]["namespace"] == "dns-system"
assert any(r.get("resourceNames") == ["coredns-main", "coredns-extra"] for r in docs[("Role", "egress-coredns")]["rules"])
assert docs[("PodDisruptionBudget", "egress")]["spec"]["minAvailable"] == 2
sm = docs[("ServiceMonitor", "egress")]
assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
cm = docs[("ConfigMap", "egress-dashboard")]
assert cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
import json; dash = json.loads(cm["data"]["egress.json"]); assert dash["uid"] == "egress-proxy"
assert ("NetworkPolicy", "egress") in docs
PY

check "default values: 2 replicas, leader election, linkerd injection, no ServiceMonitor or alerts" py - "$TMP/default.yaml" <<'PY'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
dep = docs[("Deployment", "egress-operator")]
args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
assert dep["spec"]["replicas"] == 2
assert "--leader-elect" in args and "--proxy-pod-annotation=linkerd.io/inject=enabled" in args, args
assert "--proxy-image=ghcr.io/egress-dev/egress-proxy:0.1.0" in args
assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/egress-dev/egress-operator:0.1.0"
assert not any(k in ("ServiceMonitor", "PrometheusRule") for k, _ in docs), "monitoring objects are off by default"
assert not any("--proxy-max-replicas" in a for a in args), "autoscaling is off by default"
assert ("PodDisruptionBudget", "egress-operator") in docs
assert ("Service", "egress-operator-metrics") in docs
PY

check "no PodDisruptionBudget where policy/v1 is not served (--kube-version 1.20.2)" bash -c \
    "helm template $RELEASE $CHART --kube-version 1.20.2 --api-versions policy/v1beta1 | grep -q 'kind: Deployment' &&
     ! helm template $RELEASE $CHART --kube-version 1.20.2 --api-versions policy/v1beta1 | grep -q PodDisruptionBudget"

check "ServiceMonitor matches the monitoring.coreos.com/v1 shape" py - "$TMP/nondefault.yaml" <<'PY'
import sys, yaml
sm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ServiceMonitor")
assert set(sm["spec"]) == {"namespaceSelector", "selector", "endpoints"}
for e in sm["spec"]["endpoints"]:
    assert set(e) <= {"port", "path", "interval", "scrapeTimeout"} and e["port"] == "admin"
PY

check "PrometheusRule carries alerts/egress.rules.yaml as its spec" py - "$TMP/nondefault.yaml" \
    "$CHART/alerts/egress.rules.yaml" <<'PY'
import sys, yaml
rule = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule")
assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
assert rule["spec"] == yaml.safe_load(open(sys.argv[2])), "the rendered rules differ from the file"
PY
check "alert rules: promtool check rules" promtool check rules "$CHART/alerts/egress.rules.yaml"
check "alert rules: promtool unit tests (Tests/alerts)" promtool test rules Tests/alerts/egress.rules.test.yaml

operator=$(ls .build/release/egress-operator .build/debug/egress-operator 2>/dev/null | head -n 1)
if [ -n "$operator" ]; then
    "$operator" run --help >"$TMP/run-help.txt" 2>&1
    check "every rendered flag exists in \`egress-operator run --help\` ($operator)" py - "$TMP/nondefault.yaml" \
        "$TMP/default.yaml" "$TMP/run-help.txt" <<'PY'
import re, sys, yaml
help_text = open(sys.argv[3]).read()
known = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
for path in sys.argv[1:3]:
    for d in yaml.safe_load_all(open(path)):
        if d and d["kind"] == "Deployment":
            for arg in d["spec"]["template"]["spec"]["containers"][0]["args"][1:]:
                flag = arg.split("=", 1)[0]
                assert flag in known, f"{flag} is not a flag of egress-operator run"
PY
else
    echo "skip  rendered flags vs \`egress-operator run --help\` (no build under .build/)"
fi

if [ -n "${CHART_TEST_OFFLINE:-}" ]; then
    echo "skip  cluster checks (CHART_TEST_OFFLINE set)"
elif ! kubectl version >/dev/null 2>&1; then
    not_ok "cluster reachable (KUBECONFIG=${KUBECONFIG:-unset}); start scripts/control-plane.sh or set CHART_TEST_OFFLINE=1"
else
    echo "== cluster ($(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'))"
    # Leftovers of an interrupted run.
    helm uninstall "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1 || true
    kubectl delete eh chart-test-github chart-test-bad --ignore-not-found >/dev/null 2>&1 || true

    check "helm install" helm install "$RELEASE" "$CHART" -n "$NAMESPACE" --create-namespace
    check "every chart object exists" kubectl get -n "$NAMESPACE" \
        deployment/egress-operator serviceaccount/egress-operator service/egress-operator-metrics \
        role/egress-operator rolebinding/egress-operator \
        clusterrole/egress-operator clusterrolebinding/egress-operator
    check "CoreDNS Role and RoleBinding exist in kube-system" kubectl get -n kube-system \
        role/egress-operator-coredns rolebinding/egress-operator-coredns
    if kubectl api-versions | grep -qx policy/v1; then
        check "the operator PodDisruptionBudget exists (policy/v1 served)" kubectl -n "$NAMESPACE" get pdb/egress-operator
    else
        check "no PodDisruptionBudget in the release (this cluster does not serve policy/v1)" bash -c \
            "! helm get manifest $RELEASE -n $NAMESPACE | grep -q PodDisruptionBudget"
    fi
    check "the CRD is established" kubectl wait --for condition=established --timeout=30s crd/egresshosts.egress.dev
    check "the CRD is served (kubectl get eh)" kubectl get eh
    check "the ServiceAccount may patch EgressHost status, take Leases, edit CoreDNS, not read other Secrets" bash -c "
        kubectl auth can-i patch egresshosts.egress.dev --subresource=status --as system:serviceaccount:$NAMESPACE:egress-operator 2>/dev/null | grep -qx yes &&
        kubectl auth can-i create leases -n $NAMESPACE --as system:serviceaccount:$NAMESPACE:egress-operator | grep -qx yes &&
        kubectl auth can-i update configmaps/coredns -n kube-system --as system:serviceaccount:$NAMESPACE:egress-operator | grep -qx yes &&
        kubectl auth can-i get secrets -n default --as system:serviceaccount:$NAMESPACE:egress-operator | grep -qx no"
    check "an EgressHost is accepted (and defaulted: port 443)" bash -c "
        printf '%s\n' 'apiVersion: egress.dev/v1alpha1' 'kind: EgressHost' 'metadata: {name: chart-test-github}' \
            'spec: {host: api.github.com}' | kubectl apply -f - &&
        test \"\$(kubectl get eh chart-test-github -o jsonpath='{.spec.port}')\" = 443"
    reject "a bad EgressHost is rejected by the CRD schema" "spec.host" bash -c "
        printf '%s\n' 'apiVersion: egress.dev/v1alpha1' 'kind: EgressHost' 'metadata: {name: chart-test-bad}' \
            'spec: {host: \"https://api.github.com/\"}' | kubectl apply -f -"

    check "helm upgrade (replicaCount=3, logLevel=debug, coredns.mode=corefile)" helm upgrade "$RELEASE" "$CHART" \
        -n "$NAMESPACE" --reuse-values --set replicaCount=3 --set logLevel=debug --set coredns.mode=corefile
    check "the upgrade changed the Deployment" bash -c "
        test \"\$(kubectl -n $NAMESPACE get deploy egress-operator -o jsonpath='{.spec.replicas}')\" = 3 &&
        kubectl -n $NAMESPACE get deploy egress-operator -o jsonpath='{.spec.template.spec.containers[0].args}' |
            grep -q -- '--log-level=debug' &&
        kubectl -n $NAMESPACE get deploy egress-operator -o jsonpath='{.spec.template.spec.containers[0].args}' |
            grep -q -- '--coredns-mode=corefile'"
    reject "helm upgrade with a typo'd value is refused" "additional properties|replicas" \
        helm upgrade "$RELEASE" "$CHART" -n "$NAMESPACE" --reuse-values --set replicas=3

    check "helm uninstall" helm uninstall "$RELEASE" -n "$NAMESPACE"
    check "uninstall removed the operator objects" bash -c "
        ! kubectl -n $NAMESPACE get deploy/egress-operator 2>/dev/null &&
        ! kubectl get clusterrole/egress-operator 2>/dev/null &&
        ! kubectl -n kube-system get role/egress-operator-coredns 2>/dev/null"
    check "uninstall kept the CRD and the EgressHosts (Helm never deletes crds/)" kubectl get \
        crd/egresshosts.egress.dev eh/chart-test-github
    kubectl delete eh chart-test-github --ignore-not-found >/dev/null 2>&1

    echo "== kustomize (config/default)"
    check "kubectl kustomize config/default renders" bash -c "kubectl kustomize config/default >$TMP/kustomize.yaml"
    check "kubectl kustomize output validates (kubernetes-validate --strict)" kubernetes-validate --strict "$TMP/kustomize.yaml"
    check "kubectl apply -k config/default" kubectl apply -k config/default
    check "config/default objects exist" kubectl get -n egress-system deployment/egress-operator \
        serviceaccount/egress-operator service/egress-operator-metrics role/egress-operator \
        clusterrole/egress-operator crd/egresshosts.egress.dev
    check "kubectl apply -k config/samples" kubectl apply -k config/samples
    # Clean up everything but the Namespace: without a controller-manager a deleted Namespace never finishes
    # terminating, and a later run would then be unable to create objects in it.
    kubectl delete -k config/samples --ignore-not-found >/dev/null 2>&1
    check "clean-up (kubectl delete of everything but the Namespace)" bash -c "
        egress-python -c 'import sys, yaml; yaml.safe_dump_all([d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d[\"kind\"] != \"Namespace\"], sys.stdout)' \
            $TMP/kustomize.yaml | kubectl delete --ignore-not-found -f -"
fi

echo "chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
