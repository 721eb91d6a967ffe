#!/usr/bin/env bash
# A real kube-apiserver + etcd on loopback, for tests, the demo and development.
#
#   scripts/control-plane.sh install   # etcd, kube-apiserver (built once per machine), kubectl, helm
#   scripts/control-plane.sh start     # start on 127.0.0.1:6443 and write a kubeconfig
#   scripts/control-plane.sh stop      # stop exactly what start started, remove its data
#   scripts/control-plane.sh env       # print `export KUBECONFIG=...`
#   scripts/control-plane.sh status
#
# kube-apiserver is built from Debian's own `kubernetes` source package (v1.20.2), as recorded in
# ../shared/recipes/local-control-plane.md. No package registry host is named here: the deb-src entry is
# derived from the machine's own apt configuration.
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE_DIR=${EGRESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/egress-operator}
BIN_DIR=$CACHE_DIR/bin
APISERVER=$BIN_DIR/kube-apiserver-$KUBE_VERSION
STATE_DIR=${EGRESS_CONTROL_PLANE_DIR:-/tmp/egress-control-plane}
PORT=${EGRESS_APISERVER_PORT:-6443}
ETCD_PORT=${EGRESS_ETCD_PORT:-2379}
TOKEN=egress-admin-token

log() { printf '[control-plane] %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

enable_deb_src() {
    local src=/etc/apt/sources.list.d/egress-operator-src.sources
    [ -f "$src" ] && return 0
    local base=/etc/apt/sources.list.d/debian.sources
    if [ ! -f "$base" ]; then log "no $base to derive a deb-src entry from"; exit 1; fi
    log "enabling Debian source packages (derived from $base)"
    sed 's/^Types: deb$/Types: deb-src/' "$base" >"$src"
    apt-get update -qq >&2
    APT_UPDATED=1
}

build_apiserver() {
    [ -x "$APISERVER" ] && return 0
    apt_install golang-1.19-go rsync golang-github-modern-go-reflect2-dev dpkg-dev
    enable_deb_src
    local work=$CACHE_DIR/build
    rm -rf "$work"; mkdir -p "$work"
    log "downloading Debian's kubernetes source package"
    (cd "$work" && apt-get source --download-only kubernetes >&2)
    local tarball
    tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
    mkdir -p "$work/src"
    tar -xzf "$tarball" -C "$work/src" --strip-components=1
    # The vendored reflect2 v1.0.1 predates Go 1.18; Debian ships 1.0.2.
    rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"
    rm -f "$work/src/vendor/github.com/modern-go/reflect2/go.mod"
    log "building kube-apiserver $KUBE_VERSION (first time on this machine: 10-20 minutes)"
    (
        cd "$work/src"
        export PATH=/usr/lib/go-1.19/bin:$PATH GOFLAGS=-mod=vendor GOCACHE=$CACHE_DIR/gocache
        # Progress: make prints each generator and package step.
        make WHAT=cmd/kube-apiserver 2>&1 | sed -u 's/^/[kube-apiserver build] /' >&2
    )
    mkdir -p "$BIN_DIR"
    cp "$work/src/_output/local/bin/linux/amd64/kube-apiserver" "$APISERVER.tmp"
    mv "$APISERVER.tmp" "$APISERVER"
    rm -rf "$work"
    log "kube-apiserver cached at $APISERVER"
}

cmd_install() {
    apt_install etcd-server openssl curl
    build_apiserver
}

case "${1:-}" in
install) cmd_install ;;
*) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
esac
