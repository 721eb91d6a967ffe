#!/usr/bin/env bash
# Benchmark: egress-proxy vs nginx vs HAProxy doing the same job on loopback:
#   plain HTTP from the client  ->  proxy  ->  verified TLS (SNI, trusted test CA) to one HTTPS upstream,
#   with an upstream keep-alive pool.
#
# Upstream: nginx serving a small static body over TLS (its own instance, pinned to its own core).
# Load: wrk (Debian's wrk 4.1). wrk2 is not packaged in Debian, so the fixed-rate phase uses wrk with a Lua
# `delay()` per request (each connection waits DELAY_MS between requests, on average): the offered rate is about
# FIXED_CONNECTIONS * 1000 / DELAY_MS req/s. The delay is drawn uniformly from DELAY_MS/2 to 3*DELAY_MS/2: with one
# fixed delay every connection's timer fires in the same millisecond (they all start together), so the proxy got
# the ten requests as one burst every 10 ms and the latencies measured the queue inside each burst (FIXED_JITTER=0
# brings that lock-step load back). Latencies are wrk's (not corrected for coordinated omission; at this low
# utilisation the difference is small, but say so when quoting them).
# CPU per request: utime+stime of the proxy's processes (/proc/PID/stat) over the saturation phase / requests.
# Each proxy gets one thread/process (egress-proxy --event-loops 1, nginx worker_processes 1, haproxy nbthread 1).
# Access logs: egress-proxy writes its JSON line per request, nginx its combined log (buffered); HAProxy logs nothing.
# RSS: sum of VmRSS of the proxy's processes after the saturation phase, and before and after a phase of connection
# churn (every request on a new connection) that follows the rounds (CHURN=0 skips it).
# New upstream connections: requests logged by the upstream with $connection_requests == 1 during the proxy's run.
#
# FLOOR=1 adds two rows measured the same way: benchmarks/proxy/floor's relay-floor, the same job on NIO and NIOSSL
# with no proxy logic, as a byte relay ("floor-bytes": what NIO's channels and NIOSSL cost) and with NIO's HTTP
# codecs ("floor-http"). They show how much of egress-proxy's cost is the libraries it is built on.
#
# Usage: benchmarks/proxy/run.sh            (builds egress-proxy in release mode if needed)
# Env: ROUNDS (default 3: each round measures every proxy in turn, the order rotating; the report gives medians and
#      per-round ratios),
#      DURATION (s, default 10), CONNECTIONS (default 32), FIXED_CONNECTIONS (10: about 1,000 req/s), DELAY_MS (10),
#      PROXY_CPU (default 0), LOAD_CPU (default 1: upstream and wrk), FLOOR (0; 1 builds and runs relay-floor),
#      CHURN (1; 0 skips the connection-churn phase), FIXED_JITTER (1; 0: every connection waits exactly DELAY_MS),
#      EGRESS_BIN (an egress-proxy binary to measure instead of this checkout's release build, e.g. an older one),
#      BASELINE_BIN (a second egress-proxy binary, measured in the same rounds and pairs as one more row,
#      "egress-baseline": A/B of two builds, e.g. EGRESS_BIN built against a patched library and this one),
#      INSTRUCTIONS (0; 1 adds a table of user-space instructions per request, each proxy run alone under callgrind:
#      what the CPU ratios measure, without the noise of a shared machine, then split by component, with the Swift
#      builds' reference counting calls by the module that made them; INSTRUCTION_SECONDS, default 5),
#      PROFILE (0; 1 adds a table of CPU time per request by component, kernel included, from perf; PROFILE_HZ),
#      PAIRS (0; N measures every proxy in turn in short slices N times and reports ratios of neighbouring slices;
#      PAIR_SECONDS, default 4),
#      LATENCY_PAIRS (0; N measures every proxy in turn at the fixed rate in slices of LATENCY_SECONDS, default 6, N
#      times, and reports percentiles of all their latencies pooled, and ratios of neighbouring slices),
#      QUIET_STEAL_PERCENT (0.25: both kinds of pairs are reported again over the pairs in which no slice lost more
#      than this share of the two CPUs' time to the hypervisor; see benchmarks/proxy/slices.py),
#      QUIET_PAIRS (0; N: each kind of pairs stops as soon as N of its pairs were quiet, PAIRS and LATENCY_PAIRS
#      becoming the most it runs: on a host that steals often, LATENCY_PAIRS=100 QUIET_PAIRS=15 gets 15 quiet pairs),
#      BODY_BYTES (unset: the upstream answers with a 61-byte body; N: with a static file of N bytes, for responses
#      the size of a typical API's, where TLS and copying weigh more than the per-request work).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
FIXED_CONNECTIONS="${FIXED_CONNECTIONS:-10}"
DELAY_MS="${DELAY_MS:-10}"
FIXED_JITTER="${FIXED_JITTER:-1}"
ROUNDS="${ROUNDS:-3}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UP_PORT=18443
EGRESS_PORT=18080
EGRESS_ADMIN=19090
NGINX_PORT=18081
HAPROXY_PORT=18082
FLOOR_PORT=18083 # and 18084
BASELINE_PORT=18085
BASELINE_ADMIN=19091
UP_HOST=upstream.bench.test
HOST_HEADER="$UP_HOST.egress.local"

need() { command -v "$1" >/dev/null 2>&1; }
# A fresh machine has no package lists yet: they are fetched once, before the first install.
apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! need nginx || ! need haproxy || ! need wrk || ! need openssl; then
    echo "installing nginx haproxy wrk openssl (apt)" >&2
    apt_install nginx haproxy wrk openssl
fi
NGINX="$(command -v nginx)"
HAPROXY="$(command -v haproxy)"

if [ -z "${EGRESS_BIN:-}" ]; then
    # Built as shipped (scripts/swift-build-release.sh: static Swift runtime, so RSS counts only the pages the proxy
    # touches; run-time exclusivity checks off). A no-op when the build is up to date.
    (cd "$ROOT" && scripts/swift-build-release.sh --product egress-proxy >&2)
fi
EGRESS="${EGRESS_BIN:-$ROOT/.build/release/egress-proxy}"

WORK="$(mktemp -d /tmp/egress-bench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# --- certificates: a CA and an upstream leaf for upstream.bench.test -------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$UP_HOST" \
    -keyout "$WORK/up.key" -out "$WORK/up.csr" 2>/dev/null
printf "subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" "$UP_HOST" >"$WORK/up.ext"
openssl x509 -req -in "$WORK/up.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
    -extfile "$WORK/up.ext" -out "$WORK/up.crt" 2>/dev/null

# --- upstream: nginx over TLS, a small static body (or BODY_BYTES of a file) -----------------------------------
mkdir -p "$WORK/up"
if [ -n "${BODY_BYTES:-}" ]; then
    [[ "$BODY_BYTES" =~ ^[1-9][0-9]*$ ]] || { echo "BODY_BYTES must be a positive number of bytes" >&2; exit 2; }
    mkdir -p "$WORK/up/www"
    head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x' >"$WORK/up/www/body"
    UP_LOCATION="location / { default_type application/json; root $WORK/up/www; try_files /body =500; }"
else
    UP_LOCATION='location / { default_type text/plain; return 200 "hello from the benchmark upstream, 64 bytes of body.........\n"; }'
fi
cat >"$WORK/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http {
    log_format conn '\$connection \$connection_requests \$status';
    access_log $WORK/up/access.log conn buffer=256k flush=1s;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up;
    uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
    server {
        listen 127.0.0.1:$UP_PORT ssl;
        ssl_certificate $WORK/up.crt;
        ssl_certificate_key $WORK/up.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        $UP_LOCATION
    }
}
EOF
taskset -c "$LOAD_CPU" "$NGINX" -c "$WORK/up/nginx.conf" -p "$WORK/up" &
PIDS+=($!)

# --- the three proxies --------------------------------------------------------------------------------------------
cat >"$WORK/allowlist.json" <<EOF
{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"$UP_HOST","port":$UP_PORT,
 "tls":{"caFile":"$WORK/ca.crt","insecureSkipVerify":false},"addresses":["127.0.0.1"],"allowPrivateAddresses":true,
 "timeouts":{"connectMillis":5000,"responseHeadersMillis":30000,"idleMillis":300000}}]}
EOF

mkdir -p "$WORK/ngx"
cat >"$WORK/ngx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log $WORK/ngx/access.log combined buffer=256k flush=1s;
    client_body_temp_path $WORK/ngx; proxy_temp_path $WORK/ngx; fastcgi_temp_path $WORK/ngx;
    uwsgi_temp_path $WORK/ngx; scgi_temp_path $WORK/ngx;
    upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; keepalive_timeout 300s; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass https://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $UP_HOST;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $WORK/ca.crt;
            proxy_ssl_server_name on;
            proxy_ssl_name $UP_HOST;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend up
backend up
    http-reuse always
    http-request set-header Host $UP_HOST
    server s1 127.0.0.1:$UP_PORT ssl verify required ca-file $WORK/ca.crt sni str($UP_HOST) verifyhost $UP_HOST
EOF

if [ "$FIXED_JITTER" = 1 ]; then
    cat >"$WORK/fixed.lua" <<EOF
math.randomseed(os.time())
local low, high = math.floor($DELAY_MS / 2), $DELAY_MS + math.ceil($DELAY_MS / 2)
function delay() return math.random(low, high) end
EOF
else
    cat >"$WORK/fixed.lua" <<EOF
local d = $DELAY_MS
function delay() return d end
EOF
fi

# The fixed-rate load again, writing every latency it recorded (microseconds and count, one line per distinct
# value) to $LATENCY_OUT: a 10 s phase holds about 100 requests above its p99, too few for a steady tail, so the
# latency pairs pool the histograms of many slices.
cat "$WORK/fixed.lua" - >"$WORK/fixed-dump.lua" <<'EOF'
done = function(summary, latency, requests)
    local out = assert(io.open(os.getenv("LATENCY_OUT"), "w"))
    local index = 1
    while true do
        -- Past the last distinct value wrk answers 0 (and, as the count, how many values it holds).
        local value, count = latency(index)
        if value == 0 then break end
        out:write(string.format("%d\t%d\n", value, count))
        index = index + 1
    end
    out:close()
end
EOF

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_port "$UP_PORT"

user_system_ticks() { # pids... -> "utime stime", summed
    local user=0 system=0 pid fields
    for pid in "$@"; do
        fields=$(sed 's/.*) //' "/proc/$pid/stat")
        user=$((user + $(echo "$fields" | awk '{print $12}')))
        system=$((system + $(echo "$fields" | awk '{print $13}')))
    done
    echo "$user $system"
}
cpu_ticks() { # utime+stime of the given pids
    local user system
    read -r user system <<<"$(user_system_ticks "$@")"
    echo $((user + system))
}
# Time the hypervisor ran something else while the benchmark's two CPUs wanted to run (the steal column of
# /proc/stat), in ticks: a slice that lost some stalls every request in flight, and its tail measures the host.
steal_ticks() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '$1 == a || $1 == b { s += $9 } END { print s + 0 }' /proc/stat
}
rss_kib() { local t=0; for pid in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status"))); done; echo "$t"; }
to_ms() { # wrk latency value like 1.23ms / 456.00us / 1.01s -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
pct() { grep -E "^ +$1%" "$2" | awk '{print $2}'; }
new_upstream_connections() { awk '$2 == 1' "$WORK/up/access.log" | wc -l; }

HZ=$(getconf CLK_TCK)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

bench() { # round name port pids...
    local round=$1 name=$2 port=$3
    shift 3
    local pids=("$@")
    wait_port "$port"
    if [ "$round" = 1 ]; then
        curl_check=$(printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HOST_HEADER" |
            timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; cat <&3" | head -1 | tr -d '\r')
        echo "[$name] check: $curl_check" >&2
    fi
    sleep 1.5 # let the upstream's buffered access log flush
    local up_before
    up_before=$(new_upstream_connections)
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" >/dev/null
    local cpu0
    cpu0=$(cpu_ticks "${pids[@]}")
    local out="$WORK/$name.$round"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST_HEADER" \
        "http://127.0.0.1:$port/" >"$out.sat.txt"
    local cpu1
    cpu1=$(cpu_ticks "${pids[@]}")
    local rss
    rss=$(rss_kib "${pids[@]}")
    taskset -c "$LOAD_CPU" wrk -t1 -c"$FIXED_CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/fixed.lua" \
        -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" >"$out.fixed.txt"
    sleep 1.5
    local up_after
    up_after=$(new_upstream_connections)
    local rps requests errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$out.sat.txt")
    requests=$(awk '/requests in/ {print $1}' "$out.sat.txt")
    errors=$(awk '/Non-2xx/ {print $NF}' "$out.sat.txt")
    errors=${errors:-0}
    local cpu_us
    cpu_us=$(awk -v c=$((cpu1 - cpu0)) -v hz="$HZ" -v r="$requests" 'BEGIN { printf "%.1f", c / hz * 1e6 / r }')
    local frps
    frps=$(awk '/Requests\/sec/ {print $2}' "$out.fixed.txt")
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$round" "$rps" \
        "$(to_ms "$(pct 50 "$out.sat.txt")")" "$(to_ms "$(pct 99 "$out.sat.txt")")" \
        "$frps" "$(to_ms "$(pct 50 "$out.fixed.txt")")" "$(to_ms "$(pct 90 "$out.fixed.txt")")" \
        "$(to_ms "$(pct 99 "$out.fixed.txt")")" "$cpu_us" "$((rss / 1024))" "$((up_after - up_before))" \
        "$errors" >>"$RESULTS"
}

# All proxies run for the whole benchmark (idle while another is measured), so that every round measures each of
# them in turn: on a shared machine the load from outside moves between minutes, and a ratio is only as good as
# the conditions its two sides shared.
NAMES=()
declare -A PORT_OF PIDS_OF

# egress-proxy's command line in every phase: BIN PORT ADMIN_PORT.
egress_command() { echo "$1" --allowlist "$WORK/allowlist.json" --host 127.0.0.1 --port "$2" --admin-host 127.0.0.1 \
    --admin-port "$3" --event-loops 1; }
# Starts an egress-proxy build as one of the measured proxies: NAME BIN PORT ADMIN_PORT.
start_egress() {
    # shellcheck disable=SC2046 # the command's words (no path here has spaces)
    taskset -c "$PROXY_CPU" $(egress_command "$2" "$3" "$4") >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$1")
    PORT_OF[$1]=$3
    PIDS_OF[$1]="$!"
}

start_egress egress-proxy "$EGRESS" "$EGRESS_PORT" "$EGRESS_ADMIN"

taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" &
NPID=$!
PIDS+=($NPID)
wait_port "$NGINX_PORT"
NAMES+=(nginx)
PORT_OF[nginx]=$NGINX_PORT
PIDS_OF[nginx]="$NPID $(pgrep -P "$NPID" | tr '\n' ' ')"

taskset -c "$PROXY_CPU" "$HAPROXY" -f "$WORK/haproxy.cfg" -db &
PIDS+=($!)
NAMES+=(haproxy)
PORT_OF[haproxy]=$HAPROXY_PORT
PIDS_OF[haproxy]="$!"

if [ -n "${BASELINE_BIN:-}" ]; then
    start_egress egress-baseline "$BASELINE_BIN" "$BASELINE_PORT" "$BASELINE_ADMIN"
fi

if [ "${FLOOR:-0}" = 1 ]; then
    FLOOR_BIN="$ROOT/benchmarks/proxy/floor/.build/release/relay-floor"
    # The same build flags as egress-proxy's, so the floor is what the libraries cost in the build that ships.
    (cd "$ROOT/benchmarks/proxy/floor" && "$ROOT/scripts/swift-build-release.sh" >&2)
    port=$FLOOR_PORT
    for mode in bytes http; do
        taskset -c "$PROXY_CPU" "$FLOOR_BIN" "$port" "$UP_PORT" "$WORK/ca.crt" "$UP_HOST" "$mode" \
            >"$WORK/floor-$mode.log" 2>&1 &
        PIDS+=($!)
        NAMES+=("floor-$mode")
        PORT_OF[floor-$mode]=$port
        PIDS_OF[floor-$mode]="$!"
        port=$((port + 1))
    done
fi

# The order rotates from round to round (round r starts with the r-th proxy), so that no proxy always runs first,
# right after the slowest one, or last: with as many rounds as proxies, each holds every position once.
for round in $(seq 1 "$ROUNDS"); do
    for offset in $(seq 0 $((${#NAMES[@]} - 1))); do
        name=${NAMES[$(((round - 1 + offset) % ${#NAMES[@]}))]}
        echo "[round $round/$ROUNDS] $name" >&2
        # shellcheck disable=SC2086 # a list of pids
        bench "$round" "$name" "${PORT_OF[$name]}" ${PIDS_OF[$name]}
    done
done

# --- connection churn (CHURN=1, the default) ------------------------------------------------------------------------
# Each proxy once more, every request on a new connection (wrk -c8, `Connection: close`) for DURATION seconds: what a
# proxy keeps per closed connection (a leak the keep-alive phases never show) shows as RSS growth.
CHURN_TSV="$WORK/churn.tsv"
: >"$CHURN_TSV"
if [ "${CHURN:-1}" = 1 ]; then
    for name in "${NAMES[@]}"; do
        echo "[churn] $name" >&2
        # shellcheck disable=SC2086 # a list of pids
        before=$(rss_kib ${PIDS_OF[$name]})
        taskset -c "$LOAD_CPU" wrk -t1 -c8 -d"${DURATION}s" -H "Connection: close" -H "Host: $HOST_HEADER" \
            "http://127.0.0.1:${PORT_OF[$name]}/" >"$WORK/$name.churn.txt"
        sleep 1
        # shellcheck disable=SC2086 # a list of pids
        after=$(rss_kib ${PIDS_OF[$name]})
        printf "%s\t%s\t%s\t%s\n" "$name" "$(awk '/requests in/ {print $1}' "$WORK/$name.churn.txt")" \
            "$((before / 1024))" "$((after / 1024))" >>"$CHURN_TSV"
    done
fi

# ORDER: the proxies in the order of pair $1, reversed every other pair, so that no proxy always follows the same one.
pair_order() {
    ORDER=("${NAMES[@]}")
    if [ $(($1 % 2)) = 0 ]; then
        ORDER=()
        for ((index = ${#NAMES[@]} - 1; index >= 0; index--)); do ORDER+=("${NAMES[$index]}"); done
    fi
}

# With QUIET_PAIRS=N, true once N of the pairs in steal file $1, of slices of $2 seconds, are quiet: counted by
# benchmarks/proxy/slices.py, whose rule the reports apply.
enough_quiet_pairs() {
    [ "${QUIET_PAIRS:-0}" -gt 0 ] || return 1
    local quiet
    quiet=$(python3 "$ROOT/benchmarks/proxy/slices.py" quiet "$HZ" "$2" "$1")
    echo "[quiet pairs] $quiet of $QUIET_PAIRS" >&2
    [ "$quiet" -ge "$QUIET_PAIRS" ]
}
# How many pairs the pairs or steal file $1 holds (the pair in its second column): QUIET_PAIRS may stop a series early.
pairs_in() { cut -f2 "$1" | sort -u | wc -l; }

# --- paired slices (PAIRS=N) ---------------------------------------------------------------------------------------
# The machine changes speed from one moment to the next: run alternately, nginx's saturation runs split between about
# 44k and 53k req/s just as egress-proxy's do, the difference all in system time, and a round's 10 s phases can fall on
# different speeds. PAIRS=N measures every proxy in turn in short slices (PAIR_SECONDS, default 4, each after 1 s of
# warm-up), N times, the order reversed every other time: neighbouring slices share the machine's speed far more
# often than a round's phases do. benchmarks/proxy/pairs.py reports the ratios of neighbouring slices (throughput and
# CPU per request), and each proxy's user and system time per request.
PAIRS_TSV="$WORK/pairs.tsv"
: >"$PAIRS_TSV"
if [ "${PAIRS:-0}" -gt 0 ]; then
    for pair in $(seq 1 "$PAIRS"); do
        pair_order "$pair"
        for name in "${ORDER[@]}"; do
            port=${PORT_OF[$name]}
            taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d1s -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" >/dev/null
            # shellcheck disable=SC2086 # a list of pids
            read -r user0 system0 <<<"$(user_system_ticks ${PIDS_OF[$name]})"
            steal0=$(steal_ticks)
            taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${PAIR_SECONDS:-4}s" -H "Host: $HOST_HEADER" \
                "http://127.0.0.1:$port/" >"$WORK/$name.pair.txt"
            steal1=$(steal_ticks)
            # shellcheck disable=SC2086 # a list of pids
            read -r user1 system1 <<<"$(user_system_ticks ${PIDS_OF[$name]})"
            requests=$(awk '/requests in/ {print $1}' "$WORK/$name.pair.txt")
            printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$pair" "$requests" "$((user1 - user0))" \
                "$((system1 - system0))" "$((steal1 - steal0))" >>"$PAIRS_TSV"
        done
        echo "[pairs] $pair/$PAIRS" >&2
        if enough_quiet_pairs "$PAIRS_TSV" "${PAIR_SECONDS:-4}"; then break; fi
    done
fi

# --- latency pairs (LATENCY_PAIRS=N) --------------------------------------------------------------------------------
# The fixed-rate phase again, every proxy in turn in slices of LATENCY_SECONDS, N times, the order reversed every
# other time. benchmarks/proxy/latency_pairs.py pools each proxy's latencies over all its slices (N times more
# requests above the p99 than one phase has) and compares the p99 of neighbouring slices. Both kinds of pairs record
# each slice's steal, which decides the quiet pairs (benchmarks/proxy/slices.py).
LATENCY_DIR="$WORK/latency"
LATENCY_STEAL_TSV="$WORK/latency-steal.tsv"
: >"$LATENCY_STEAL_TSV"
if [ "${LATENCY_PAIRS:-0}" -gt 0 ]; then
    mkdir -p "$LATENCY_DIR"
    for pair in $(seq 1 "$LATENCY_PAIRS"); do
        pair_order "$pair"
        for name in "${ORDER[@]}"; do
            steal0=$(steal_ticks)
            LATENCY_OUT="$LATENCY_DIR/$name.$pair.tsv" taskset -c "$LOAD_CPU" wrk -t1 -c"$FIXED_CONNECTIONS" \
                -d"${LATENCY_SECONDS:-6}s" -s "$WORK/fixed-dump.lua" -H "Host: $HOST_HEADER" \
                "http://127.0.0.1:${PORT_OF[$name]}/" >/dev/null
            printf "%s\t%s\t%s\n" "$name" "$pair" "$(($(steal_ticks) - steal0))" >>"$LATENCY_STEAL_TSV"
        done
        echo "[latency pairs] $pair/$LATENCY_PAIRS" >&2
        if enough_quiet_pairs "$LATENCY_STEAL_TSV" "${LATENCY_SECONDS:-6}"; then break; fi
    done
fi

# --- where the CPU time goes (PROFILE=1) -----------------------------------------------------------------------------
# Each proxy once more at saturation, sampled by perf (cpu-clock, PROFILE_HZ per second, kernel included): CPU
# microseconds per request by component (benchmarks/proxy/profile.py). It shows what the CPU ratios are made of:
# the kernel's share (the same socket calls for every proxy), the TLS library's, the proxy's own code's and, for
# the Swift builds, SwiftNIO's and the Swift runtime's.
PROFILE_ROWS=()
if [ "${PROFILE:-0}" = 1 ]; then
    need perf || apt_install linux-perf
    PROFILE_HZ="${PROFILE_HZ:-4000}"
    for name in "${NAMES[@]}"; do
        echo "[profile] $name" >&2
        port=${PORT_OF[$name]}
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" >/dev/null
        # shellcheck disable=SC2086 # a list of pids
        perf record -e cpu-clock -F "$PROFILE_HZ" -p "$(echo ${PIDS_OF[$name]} | tr ' ' ',')" -o "$WORK/$name.perf" \
            -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Host: $HOST_HEADER" \
            "http://127.0.0.1:$port/" >"$WORK/$name.profile.txt"
        wait "$perf_pid" || true
        perf report -i "$WORK/$name.perf" --stdio --no-children -g none --sort dso,sym -F sample,dso,sym \
            >"$WORK/$name.perf.txt" 2>/dev/null
        PROFILE_ROWS+=("$name=$WORK/$name.perf.txt:$(awk '/requests in/ {print $1}' "$WORK/$name.profile.txt")")
    done
fi

# --- instructions per request (INSTRUCTIONS=1) ---------------------------------------------------------------------
# Each proxy again, alone on its core, under callgrind: the instructions it executes per request in user space (its
# TLS included) at a steady wrk -c8, after a warm-up. Machine speed and other load do not change the count, so it
# shows what the CPU ratios above measure with the noise taken out. The kernel's share (the same socket calls for
# every proxy) is not in it.
INSTRUCTIONS_TSV="$WORK/instructions.tsv"
: >"$INSTRUCTIONS_TSV"
instructions() { # name port command...
    local name=$1 port=$2
    shift 2
    local out="$WORK/$name.callgrind"
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$out.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    taskset -c "$LOAD_CPU" wrk -t1 -c8 -d3s -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    taskset -c "$LOAD_CPU" wrk -t1 -c8 -d"${INSTRUCTION_SECONDS:-5}s" -H "Host: $HOST_HEADER" "http://127.0.0.1:$port/" \
        >"$out.wrk"
    callgrind_control -d "$pid" >/dev/null # written to $out.1: what ran since the zeroing
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local requests total
    requests=$(awk '/requests in/ {print $1}' "$out.wrk")
    total=$(awk '/^summary:/ {print $2}' "$out.1")
    printf "%s\t%s\t%s\n" "$name" "$requests" "$total" >>"$INSTRUCTIONS_TSV"
    echo "[instructions] $name: $((total / requests)) per request" >&2
}

if [ "${INSTRUCTIONS:-0}" = 1 ]; then
    need valgrind || apt_install valgrind
    for name in "${NAMES[@]}"; do
        # shellcheck disable=SC2086 # a list of pids
        kill ${PIDS_OF[$name]} 2>/dev/null || true
    done
    sleep 1
    # An egress-proxy build: NAME BIN PORT ADMIN_PORT. Valgrind cannot read the debug info of Swift's release
    # binaries: it measures a copy without it.
    egress_instructions() {
        cp "$2" "$WORK/$1.bin" && strip --strip-debug "$WORK/$1.bin"
        # shellcheck disable=SC2046 # the command's words
        instructions "$1" "$3" $(egress_command "$WORK/$1.bin" "$3" "$4")
    }
    egress_instructions egress-proxy "$EGRESS" "$EGRESS_PORT" "$EGRESS_ADMIN"
    # One process: callgrind follows the process it starts, and nginx's master would only fork the worker.
    sed '1i master_process off;' "$WORK/ngx/nginx.conf" >"$WORK/ngx/nginx-callgrind.conf"
    instructions nginx "$NGINX_PORT" "$NGINX" -c "$WORK/ngx/nginx-callgrind.conf" -p "$WORK/ngx"
    instructions haproxy "$HAPROXY_PORT" "$HAPROXY" -f "$WORK/haproxy.cfg" -db
    if [ -n "${BASELINE_BIN:-}" ]; then
        egress_instructions egress-baseline "$BASELINE_BIN" "$BASELINE_PORT" "$BASELINE_ADMIN"
    fi
    if [ "${FLOOR:-0}" = 1 ]; then
        cp "$FLOOR_BIN" "$WORK/relay-floor.bin" && strip --strip-debug "$WORK/relay-floor.bin"
        port=$FLOOR_PORT
        for mode in bytes http; do
            instructions "floor-$mode" "$port" "$WORK/relay-floor.bin" "$port" "$UP_PORT" "$WORK/ca.crt" "$UP_HOST" "$mode"
            port=$((port + 1))
        done
    fi
fi

# --- report ---------------------------------------------------------------------------------------------------------
echo
echo "Loopback, proxy pinned to CPU $PROXY_CPU, upstream nginx + wrk on CPU $LOAD_CPU; ${DURATION}s per phase,"
echo "$ROUNDS rounds, each measuring every proxy in turn (the order rotating). Saturation: wrk -t1 -c$CONNECTIONS."
echo "Response body: ${BODY_BYTES:-61} bytes."
if [ "$FIXED_JITTER" = 1 ]; then
    echo "Fixed rate: wrk -t1 -c$FIXED_CONNECTIONS with a Lua delay drawn from $((DELAY_MS / 2))–$((DELAY_MS + (DELAY_MS + 1) / 2)) ms (mean ${DELAY_MS} ms)."
else
    echo "Fixed rate: wrk -t1 -c$FIXED_CONNECTIONS with a ${DELAY_MS} ms Lua delay (lock-step: FIXED_JITTER=0)."
fi
python3 "$ROOT/benchmarks/proxy/report.py" "$RESULTS"
if [ -s "$CHURN_TSV" ]; then
    echo
    echo "Connection churn: wrk -t1 -c8 with Connection: close for ${DURATION}s, after the rounds:"
    echo
    echo "| proxy | connections | RSS before MiB | RSS after MiB |"
    echo "|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %d | %d | %d |\n", $1, $2, $3, $4 }' "$CHURN_TSV"
fi
if [ -s "$PAIRS_TSV" ]; then
    echo
    echo "Paired slices: every proxy in turn, ${PAIR_SECONDS:-4}s each at saturation (wrk -t1 -c$CONNECTIONS), $(pairs_in "$PAIRS_TSV") times:"
    echo
    python3 "$ROOT/benchmarks/proxy/pairs.py" "$HZ" "${PAIR_SECONDS:-4}" "$PAIRS_TSV"
fi
if [ "${LATENCY_PAIRS:-0}" -gt 0 ]; then
    echo
    echo "Latency pairs: every proxy in turn at the fixed rate, ${LATENCY_SECONDS:-6}s each, $(pairs_in "$LATENCY_STEAL_TSV") times:"
    echo
    python3 "$ROOT/benchmarks/proxy/latency_pairs.py" "$LATENCY_DIR" "$HZ" "${LATENCY_SECONDS:-6}" "$LATENCY_STEAL_TSV"
fi
if [ "${#PROFILE_ROWS[@]}" -gt 0 ]; then
    echo
    echo "CPU µs per request by component (perf, cpu-clock at ${PROFILE_HZ} Hz, wrk -t1 -c$CONNECTIONS for ${DURATION}s):"
    echo
    python3 "$ROOT/benchmarks/proxy/profile.py" "$PROFILE_HZ" "${PROFILE_ROWS[@]}"
fi
if [ -s "$INSTRUCTIONS_TSV" ]; then
    echo
    echo "User-space instructions per request under callgrind (each proxy alone, wrk -t1 -c8, ${INSTRUCTION_SECONDS:-5}s after a 3s warm-up):"
    echo
    echo "| proxy | requests | instructions per request | egress-proxy relative to it |"
    echo "|---|---|---|---|"
    awk -F'\t' '{ per[NR] = $3 / $2; name[NR] = $1; req[NR] = $2; if ($1 == "egress-proxy") own = $3 / $2 }
        END { for (i = 1; i <= NR; i++) printf "| %s | %d | %.0f | %.2f |\n", name[i], req[i], per[i], own / per[i] }' \
        "$INSTRUCTIONS_TSV"
    echo
    echo "The same instructions per request by component (benchmarks/proxy/instructions.py):"
    echo
    mapfile -t INSTRUCTION_ROWS < <(awk -F'\t' -v work="$WORK" '{ printf "%s=%s/%s.callgrind.1:%s\n", $1, work, $1, $2 }' \
        "$INSTRUCTIONS_TSV")
    python3 "$ROOT/benchmarks/proxy/instructions.py" "${INSTRUCTION_ROWS[@]}"
fi
echo "raw wrk output: $WORK" >&2
