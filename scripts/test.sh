#!/usr/bin/env bash
# The project's test command (README "Run the tests"). On a fresh machine it installs what the tests need,
# starts the local control plane (real kube-apiserver + etcd on loopback), and runs every check:
#   1. build, warning-free in our own code
#   2. generated config/ has not drifted from the Swift sources
#   3. manifests validate offline (kubernetes-validate --strict, CRD schema vs samples and bad fixtures)
#   4. swift test: pure tests, proxy tests over real TLS, KubeAPI/operator tests against the control plane
#   5. the Helm chart and config/default against the same control plane (scripts/chart-test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "installing test dependencies (idempotent)"
scripts/control-plane.sh install
export PATH="$(scripts/install-tools.sh):$PATH"

log "starting the local control plane"
scripts/control-plane.sh start
trap 'scripts/control-plane.sh stop || true' EXIT
eval "$(scripts/control-plane.sh env)"

log "building (warnings in our sources fail the build)"
build_log=$(mktemp)
if ! swift build --build-tests >"$build_log" 2>&1; then
    grep -vE '^\[[0-9]+/[0-9]+\]' "$build_log"; echo "build failed"; exit 1
fi
tail -n 1 "$build_log"
if grep -E "^$PWD/(Sources|Tests)/.*(warning|error):" "$build_log"; then
    echo "our sources have compiler warnings (listed above)"; exit 1
fi

log "checking that config/ and the chart's generated files match the generators"
swift run --skip-build egress-operator manifests --output config --chart charts/egress-operator --check

log "validating manifests offline"
egress-python scripts/validate-manifests.py

log "swift test"
timeout 2400 swift test --skip-build

log "Helm chart and kustomize: lint, schema, template | kubernetes-validate, install/upgrade/uninstall"
scripts/chart-test.sh
