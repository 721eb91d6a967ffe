#!/usr/bin/env bash
# A real kube-apiserver + etcd on loopback, for tests, the demo and development.
#
#   scripts/control-plane.sh install   # etcd, kube-apiserver (built once per machine), kubectl, helm
#   scripts/control-plane.sh start     # start on 127.0.0.1:6443 and write a kubeconfig
#   scripts/control-plane.sh stop      # stop exactly what start started, remove its data
#   scripts/control-plane.sh env       # print `export KUBECONFIG=...`
#   scripts/control-plane.sh status
#   scripts/control-plane.sh restart-apiserver   # stop/start only kube-apiserver (etcd and its data stay)
#   scripts/control-plane.sh logs      # last lines of the etcd and kube-apiserver logs (LINES_TO_SHOW=40)
#   scripts/control-plane.sh compact   # compact etcd's history up to now, as kube-apiserver does every 5 minutes
#
# Environment: EGRESS_CONTROL_PLANE_DIR (state dir, default /tmp/egress-control-plane), EGRESS_APISERVER_PORT
# (6443), EGRESS_ETCD_PORT (2379), EGRESS_ETCD_PEER_PORT (2380), EGRESS_READY_TIMEOUT (seconds, 120),
# EGRESS_ETCD_DATA_DIR (default $STATE_DIR/etcd-data; e.g. a directory on tmpfs, so that a benchmark does not
# measure a shared disk's fsync stalls).
# `start` also writes $STATE_DIR/kubeconfig-nobody (user `nobody`, no groups: for forbidden tests) and
# $STATE_DIR/kubeconfig-cert (an admin authenticated by client certificate).
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
ETCD_PEER_PORT=${EGRESS_ETCD_PEER_PORT:-2380}
ETCD_DATA=${EGRESS_ETCD_DATA_DIR:-$STATE_DIR/etcd-data}

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
    # kubectl and helm (recent versions; the apiserver build yields no kubectl).
    "$(dirname "$0")/install-tools.sh" >/dev/null
}

# ---------------------------------------------------------------------------------------------------------------
# Running it. Everything lives in $STATE_DIR; pid files record exactly what `start` started, so `stop` ends only
# those processes (checked against /proc/PID/cmdline, so a recycled pid is never killed).

ETCD_PID=$STATE_DIR/etcd.pid
APISERVER_PID=$STATE_DIR/kube-apiserver.pid
PKI=$STATE_DIR/pki
KUBECONFIG_FILE=$STATE_DIR/kubeconfig
READY_TIMEOUT=${EGRESS_READY_TIMEOUT:-120}

# is_running PIDFILE NAME: the pid in PIDFILE is alive and its command line mentions NAME.
is_running() {
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

# is_alive PIDFILE: the pid in PIDFILE is alive. For a process this script has just started: until it has exec'ed,
# its command line is still this script's, so is_running would call a slow starter dead.
is_alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid PIDFILE NAME: TERM, wait up to 20 s, then KILL; removes the pid file.
stop_pid() {
    local pidfile=$1 name=$2 pid
    if ! is_running "$pidfile" "$name"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(cat "$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        is_running "$pidfile" "$name" || break
        sleep 0.5
    done
    if is_running "$pidfile" "$name"; then
        log "$name did not exit after 20 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

require() {
    local missing=0
    command -v etcd >/dev/null || { log "etcd is not installed"; missing=1; }
    command -v openssl >/dev/null || { log "openssl is not installed"; missing=1; }
    command -v curl >/dev/null || { log "curl is not installed"; missing=1; }
    [ -x "$APISERVER" ] || { log "kube-apiserver is not built yet ($APISERVER)"; missing=1; }
    if [ $missing -ne 0 ]; then
        log "run: $0 install"
        exit 1
    fi
}

# Fresh certificates and tokens for every `start` (kept across `restart-apiserver`).
make_pki() {
    rm -rf "$PKI"
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl genrsa -out ca.key 2048 2>/dev/null
        openssl req -x509 -new -key ca.key -subj "/CN=egress-operator-local-ca" -days 30 -out ca.crt 2>/dev/null
        # Serving certificate: Go ignores the CN, so the SANs are what matter.
        openssl genrsa -out apiserver.key 2048 2>/dev/null
        openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile apiserver.ext -out apiserver.crt 2>/dev/null
        # A client certificate for an admin (O=system:masters), to exercise client-certificate auth.
        openssl genrsa -out admin-client.key 2048 2>/dev/null
        openssl req -new -key admin-client.key -subj "/O=system:masters/CN=cert-admin" -out admin-client.csr 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in admin-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out admin-client.crt 2>/dev/null
        # Service-account signing key pair.
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        # Static tokens: an admin, and `nobody` (no groups, so RBAC forbids nearly everything).
        admin_token=$(openssl rand -hex 24)
        nobody_token=$(openssl rand -hex 24)
        printf '%s\n' "$admin_token" >admin.token
        printf '%s\n' "$nobody_token" >nobody.token
        printf '%s,admin,admin-uid,system:masters\n%s,nobody,nobody-uid\n' "$admin_token" "$nobody_token" >tokens.csv
        chmod 600 ./*.key ./*.token tokens.csv
    )
}

# write_kubeconfig FILE USER AUTH-LINES...
write_kubeconfig() {
    local file=$1 user=$2
    shift 2
    {
        echo "apiVersion: v1"
        echo "kind: Config"
        echo "clusters:"
        echo "- name: egress-local"
        echo "  cluster:"
        echo "    server: https://127.0.0.1:$PORT"
        echo "    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")"
        echo "users:"
        echo "- name: $user"
        echo "  user:"
        for line in "$@"; do echo "    $line"; done
        echo "contexts:"
        echo "- name: egress-local"
        echo "  context:"
        echo "    cluster: egress-local"
        echo "    user: $user"
        echo "    namespace: default"
        echo "current-context: egress-local"
    } >"$file.tmp"
    chmod 600 "$file.tmp"
    mv "$file.tmp" "$file"
}

write_kubeconfigs() {
    write_kubeconfig "$KUBECONFIG_FILE" admin "token: $(cat "$PKI/admin.token")"
    write_kubeconfig "$STATE_DIR/kubeconfig-nobody" nobody "token: $(cat "$PKI/nobody.token")"
    write_kubeconfig "$STATE_DIR/kubeconfig-cert" cert-admin \
        "client-certificate-data: $(base64 -w0 <"$PKI/admin-client.crt")" \
        "client-key-data: $(base64 -w0 <"$PKI/admin-client.key")"
}

start_etcd() {
    if is_running "$ETCD_PID" etcd; then return 0; fi
    rm -rf "$ETCD_DATA"
    log "starting etcd on 127.0.0.1:$ETCD_PORT (data in $ETCD_DATA)"
    setsid etcd --name egress-local --data-dir "$ETCD_DATA" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "egress-local=http://127.0.0.1:$ETCD_PEER_PORT" \
        </dev/null >"$STATE_DIR/etcd.log" 2>&1 &
    echo $! >"$ETCD_PID"
    local i
    for i in $(seq 1 60); do
        if curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
        if ! is_alive "$ETCD_PID"; then break; fi
        sleep 0.5
    done
    log "etcd did not become healthy; last log lines:"
    tail -n 20 "$STATE_DIR/etcd.log" >&2
    exit 1
}

start_apiserver() {
    if is_running "$APISERVER_PID" kube-apiserver; then return 0; fi
    log "starting kube-apiserver $KUBE_VERSION on https://127.0.0.1:$PORT"
    setsid "$APISERVER" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --secure-port="$PORT" --advertise-address=127.0.0.1 \
        --insecure-port=0 \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc \
        --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 \
        </dev/null >>"$STATE_DIR/kube-apiserver.log" 2>&1 &
    echo $! >"$APISERVER_PID"
    wait_ready
}

wait_ready() {
    local token start now
    token=$(cat "$PKI/admin.token")
    start=$(date +%s)
    printf '[control-plane] waiting for /readyz ' >&2
    while true; do
        if curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $token" \
            "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
            printf ' ready after %ss\n' "$(($(date +%s) - start))" >&2
            return 0
        fi
        now=$(date +%s)
        if ! is_alive "$APISERVER_PID" || [ $((now - start)) -ge "$READY_TIMEOUT" ]; then
            printf '\n' >&2
            if is_alive "$APISERVER_PID"; then
                log "kube-apiserver not ready after ${READY_TIMEOUT}s; last log lines:"
            else
                log "kube-apiserver exited; last log lines:"
            fi
            tail -n 30 "$STATE_DIR/kube-apiserver.log" >&2
            exit 1
        fi
        printf '.' >&2
        sleep 1
    done
}

cmd_start() {
    require
    if is_running "$ETCD_PID" etcd && is_running "$APISERVER_PID" kube-apiserver; then
        log "already running (etcd pid $(cat "$ETCD_PID"), kube-apiserver pid $(cat "$APISERVER_PID"))"
        cmd_env
        return 0
    fi
    mkdir -p "$STATE_DIR"
    if ! is_running "$ETCD_PID" etcd || [ ! -f "$PKI/tokens.csv" ]; then
        # A partial previous run: start clean.
        stop_pid "$APISERVER_PID" kube-apiserver
        stop_pid "$ETCD_PID" etcd
        rm -f "$STATE_DIR/kube-apiserver.log"
        make_pki
        write_kubeconfigs
    fi
    start_etcd
    start_apiserver
    log "kubeconfig: $KUBECONFIG_FILE (admin), $STATE_DIR/kubeconfig-nobody (no permissions)"
    cmd_env
}

cmd_stop() {
    stop_pid "$APISERVER_PID" kube-apiserver
    stop_pid "$ETCD_PID" etcd
    rm -rf "$ETCD_DATA" "$PKI" "$KUBECONFIG_FILE" "$STATE_DIR/kubeconfig-nobody" \
        "$STATE_DIR/kubeconfig-cert"
    log "stopped"
}

cmd_restart_apiserver() {
    require
    if ! is_running "$ETCD_PID" etcd; then
        log "not running; start it with: $0 start"
        exit 1
    fi
    stop_pid "$APISERVER_PID" kube-apiserver
    start_apiserver
}

# Every revision written before this call becomes unreadable, so a continue token or a watch from before it is
# answered 410 Expired. A key outside the API server's /registry prefix is written first: the newest revision any
# client has seen is then older than the compaction point.
cmd_compact() {
    if ! is_running "$ETCD_PID" etcd; then
        log "not running; start it with: $0 start"
        exit 1
    fi
    local api="http://127.0.0.1:$ETCD_PORT/v3" revision
    revision=$(curl -fsS -X POST "$api/kv/put" -d "{\"key\":\"$(printf egress-test/compaction | base64)\"}" |
        sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
    [ -n "$revision" ] || { log "etcd did not answer the write with a revision"; exit 1; }
    curl -fsS -X POST "$api/kv/compaction" -d "{\"revision\":\"$revision\",\"physical\":true}" >/dev/null
    log "etcd compacted through revision $revision"
}

cmd_env() {
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_status() {
    local rc=0
    if is_running "$ETCD_PID" etcd; then
        echo "etcd: running (pid $(cat "$ETCD_PID"), http://127.0.0.1:$ETCD_PORT)"
    else
        echo "etcd: not running"
        rc=1
    fi
    if is_running "$APISERVER_PID" kube-apiserver; then
        local ready=no
        if curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$PKI/admin.token")" \
            "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=yes; fi
        echo "kube-apiserver: running (pid $(cat "$APISERVER_PID"), https://127.0.0.1:$PORT, ready: $ready)"
        echo "kubeconfig: $KUBECONFIG_FILE"
    else
        echo "kube-apiserver: not running"
        rc=1
    fi
    return $rc
}

cmd_logs() {
    local f
    for f in etcd.log kube-apiserver.log; do
        if [ -f "$STATE_DIR/$f" ]; then
            echo "==> $STATE_DIR/$f <=="
            tail -n "${LINES_TO_SHOW:-40}" "$STATE_DIR/$f"
        fi
    done
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart-apiserver) cmd_restart_apiserver ;;
env) cmd_env ;;
compact) cmd_compact ;;
status) cmd_status ;;
logs) cmd_logs ;;
*)
    echo "usage: $0 install|start|stop|restart-apiserver|env|status|logs|compact" >&2
    exit 2
    ;;
esac
