#!/usr/bin/env python3
"""Operator scale benchmark against a real kube-apiserver (see run.sh, which starts everything).

For each N: creates N EgressHosts in a burst and measures
  - the time until the allow-list ConfigMap and the Corefile contain all N (from the first create, and from the last),
  - the API writes the operator made (its egress_operator_api_writes_total) and the Corefile writes (watched),
  - the allow-list and Corefile bytes per host (a ConfigMap holds at most 1 MiB),
  - the operator's RSS;
  - then, one create at a time with those N present, the latency to the allow-list write and to the Corefile write
    (p50/p99), timed by watches on both ConfigMaps. Each sample also records the time the operator's passes took
    during it and, with --etcd-metrics, how many of etcd's disk syncs took longer than 64 ms: which of the two a
    slow sample waited for.
Prints a Markdown table. All traffic goes to 127.0.0.1.
"""
import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import requests
import urllib3
import yaml

urllib3.disable_warnings()

parser = argparse.ArgumentParser()
parser.add_argument("--kubeconfig", required=True)
parser.add_argument("--operator-pid", type=int, required=True)
parser.add_argument("--operator-metrics", required=True)
parser.add_argument("--sizes", default="100,1000,5000")
parser.add_argument("--latency-samples", type=int, default=30)
parser.add_argument("--perf-changes", metavar="FILE",
                    help="record the operator with `perf record -g` while the single changes are timed")
parser.add_argument("--dns-rules", choices=["per-host", "suffix"], default="per-host")
parser.add_argument("--etcd-metrics", metavar="URL", help="etcd's /metrics: its slow disk syncs are counted per sample")
args = parser.parse_args()

config = yaml.safe_load(open(args.kubeconfig))
cluster = config["clusters"][0]["cluster"]
user = config["users"][0]["user"]
SERVER = cluster["server"]
CA = "/tmp/egress-bench-ca.crt"
with open(CA, "wb") as f:
    f.write(base64.b64decode(cluster["certificate-authority-data"]))
session = requests.Session()
session.headers["Authorization"] = f"Bearer {user['token']}"
session.verify = CA
session.trust_env = False  # else REQUESTS_CA_BUNDLE-style variables override `verify`
adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
session.mount("https://", adapter)

EH = "/apis/egress.dev/v1alpha1/egresshosts"
ALLOWLIST = "/api/v1/namespaces/egress-system/configmaps/egress-proxy-allowlist"
COREDNS = "/api/v1/namespaces/kube-system/configmaps/coredns"


def get(path):
    r = session.get(SERVER + path, timeout=30)
    r.raise_for_status()
    return r.json()


def allowlist_text():
    return get(ALLOWLIST).get("data", {}).get("allowlist.json", "")


def corefile_text():
    return get(COREDNS)["data"]["Corefile"]


def host(i, run):
    return f"h{i}.run{run}.bench.example.com"


def create(i, run):
    body = {"apiVersion": "egress.dev/v1alpha1", "kind": "EgressHost",
            "metadata": {"name": f"bench-{run}-{i}", "labels": {"bench": "true", "bench-run": str(run)}},
            "spec": {"host": host(i, run)}}
    r = session.post(SERVER + EH, json=body, timeout=30)
    r.raise_for_status()


def delete_all():
    names = [item["metadata"]["name"] for item in get(EH + "?labelSelector=bench%3Dtrue")["items"]]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: session.delete(SERVER + EH + "/" + name, timeout=30), names))
    deadline = time.time() + 300
    while time.time() < deadline:
        if "bench.example.com" not in allowlist_text() and "bench" not in corefile_text():
            return
        time.sleep(0.2)
    raise SystemExit("the operator did not remove the benchmark hosts")


def ready_count(run):
    """How many of the run's EgressHosts report Ready=True: statuses are the operator's last writes for a burst."""
    items = get(EH + f"?labelSelector=bench-run%3D{run}")["items"]
    return sum(1 for item in items
               if any(c.get("type") == "Ready" and c.get("status") == "True"
                      for c in item.get("status", {}).get("conditions", [])))


scrape_cpu_s = 0.0  # the operator's CPU spent answering this benchmark's own scrapes of its metrics


def operator_metrics(*prefixes):
    """For each prefix (a name, optionally with labels), the sum of the operator's samples whose line starts with
    it: one scrape."""
    global scrape_cpu_s
    before = cpu_s()
    lines = requests.get(args.operator_metrics, timeout=10).text.splitlines()
    scrape_cpu_s += cpu_s() - before
    return tuple(sum(float(line.split()[-1]) for line in lines if line.startswith(prefix)) for prefix in prefixes)


def operator_writes():
    return operator_metrics("egress_operator_api_writes_total")[0]


def operator_passes():
    """Reconcile passes so far, and the seconds they took."""
    return operator_metrics("egress_operator_reconcile_duration_seconds_count",
                            "egress_operator_reconcile_duration_seconds_sum")


SLOW_SYNC_BOUND = "0.064"  # a bucket bound of etcd's disk histograms (1 ms, doubling)


def etcd_slow_syncs():
    """etcd's WAL fsyncs and backend commits so far that took longer than SLOW_SYNC_BOUND seconds (0 without
    --etcd-metrics). This machine's disk is shared: a sync that stalls holds every write behind it."""
    if not args.etcd_metrics:
        return 0
    total = above = 0.0
    for line in requests.get(args.etcd_metrics, timeout=10).text.splitlines():
        if not line.startswith(("etcd_disk_wal_fsync_duration_seconds_bucket",
                                "etcd_disk_backend_commit_duration_seconds_bucket")):
            continue
        if 'le="+Inf"' in line:
            total += float(line.split()[-1])
        elif f'le="{SLOW_SYNC_BOUND}"' in line:
            above -= float(line.split()[-1])
    return total + above


def cpu_s():
    """The operator's CPU time (user + system) so far."""
    fields = open(f"/proc/{args.operator_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb():
    for line in open(f"/proc/{args.operator_pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class CorefileWrites(threading.Thread):
    """Counts writes to the coredns ConfigMap with a watch."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.stop = False

    def run(self):
        rv = get(COREDNS)["metadata"]["resourceVersion"]
        url = (SERVER + "/api/v1/namespaces/kube-system/configmaps?watch=1&fieldSelector="
               + urllib.parse.quote("metadata.name=coredns") + f"&resourceVersion={rv}")
        with session.get(url, stream=True, timeout=(10, 600)) as r:
            for line in r.iter_lines(chunk_size=1 << 16):
                if self.stop:
                    return
                if line and json.loads(line)["type"] == "MODIFIED":
                    self.count += 1


def wait_until(predicate, limit=600):
    start = time.time()
    while time.time() - start < limit:
        if predicate():
            return time.time()
        time.sleep(0.05)
    raise SystemExit("timed out")


class ConfigMapVersions(threading.Thread):
    """Records when each version of one ConfigMap arrives over a watch, so a latency is the moment the write is
    visible, not the next tick of a poll."""

    def __init__(self, namespace, name, key):
        super().__init__(daemon=True)
        self.path, self.name, self.key = f"/api/v1/namespaces/{namespace}/configmaps", name, key
        self.versions = []  # (arrival time, data[key])
        self.changed = threading.Condition()

    def run(self):
        rv = get(f"{self.path}/{self.name}")["metadata"]["resourceVersion"]
        url = (SERVER + self.path + "?watch=1&fieldSelector=" + urllib.parse.quote(f"metadata.name={self.name}")
               + f"&resourceVersion={rv}")
        with session.get(url, stream=True, timeout=(10, 600)) as r:
            # Large chunks: with the default 512 bytes, requests joins the pieces of a line of hundreds of KB (the
            # Corefile of thousands of rules) in quadratic time, and the measurement would time Python.
            for line in r.iter_lines(chunk_size=1 << 16):
                if not line:
                    continue
                arrived = time.time()
                event = json.loads(line)
                text = event["object"].get("data", {}).get(self.key, "")
                with self.changed:
                    self.versions.append((arrived, text))
                    self.changed.notify_all()

    def mark(self):
        with self.changed:
            return len(self.versions)

    def first_containing(self, needle, since, limit=60):
        """Arrival time of the first version after `since` (a `mark()`) that contains `needle`."""
        deadline = time.time() + limit
        checked = since
        with self.changed:
            while True:
                for arrived, text in self.versions[checked:]:
                    if needle in text:
                        return arrived
                checked = len(self.versions)
                if not self.changed.wait(timeout=max(0, deadline - time.time())):
                    raise SystemExit(f"{self.name} never contained {needle}")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


SUFFIX = args.dns_rules == "suffix"
allow_watch = ConfigMapVersions("egress-system", "egress-proxy-allowlist", "allowlist.json")
dns_watch = ConfigMapVersions("kube-system", "coredns", "Corefile")
allow_watch.start()
dns_watch.start()
time.sleep(0.5)


def latencies(run):
    """One create at a time with the run's hosts present: ms from the create request to the allow-list write and
    to the Corefile write (in suffix mode the one rule already routes every name: the allow-list write is the
    change)."""
    allow_lat, dns_lat, pass_ms, slow_syncs = [], [], [], []
    for i in range(args.latency_samples):
        name = host(i, f"lat{run}")
        allow_mark, dns_mark = allow_watch.mark(), dns_watch.mark()
        (_, pass_s_before), syncs_before = operator_passes(), etcd_slow_syncs()
        start = time.time()
        create(i, f"lat{run}")
        allow_lat.append((allow_watch.first_containing(name, allow_mark) - start) * 1000)
        if not SUFFIX:
            dns_lat.append((dns_watch.first_containing(name, dns_mark) - start) * 1000)
        # One change at a time: the next create comes once this one is written and its passes are done (a pass
        # is counted when it ends, after its status writes).
        time.sleep(0.2)
        pass_ms.append((operator_passes()[1] - pass_s_before) * 1000)
        slow_syncs.append(etcd_slow_syncs() - syncs_before)
    return allow_lat, dns_lat or allow_lat, pass_ms, slow_syncs


rows = []
for run, n in enumerate(int(x) for x in args.sizes.split(",")):
    delete_all()
    writes_before = operator_writes()
    watcher = CorefileWrites()
    watcher.start()
    time.sleep(0.5)
    cpu_before, scrapes_before = cpu_s(), scrape_cpu_s
    start = time.time()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: create(i, run), range(n)))
    created = time.time()
    last = host(n - 1, run)
    first = host(0, run)

    def converged():
        a, c = allowlist_text(), corefile_text()
        return a.count(f".run{run}.bench") == n and (SUFFIX or c.count(f".run{run}.bench") == n)

    done = wait_until(converged)
    # One change is timed with the cluster at rest: every status written (the burst's thousands of status writes
    # would otherwise share the API server with it), then no operator write for two seconds.
    while ready_count(run) < n:
        time.sleep(1)
    ready = time.time()
    settled, last_writes = time.time(), operator_writes()
    while time.time() - settled < 2:
        time.sleep(0.25)
        if (current := operator_writes()) != last_writes:
            settled, last_writes = time.time(), current
    watcher.stop = True
    allow_bytes = len(allowlist_text().encode())
    core_bytes = len(corefile_text().encode())
    row = {
        "n": n, "create_s": created - start, "converged_s": done - start, "after_last_s": done - created, "ready_s": ready - start,
        "operator_writes": operator_writes() - writes_before, "corefile_writes": watcher.count,
        "allow_bytes_per_host": allow_bytes / n, "corefile_bytes_per_host": core_bytes / n, "rss_mb": rss_mb(),
        # Without what answering the benchmark's scrapes cost (about 200 of them while it waits for Ready).
        "cpu_burst_s": cpu_s() - cpu_before - (scrape_cpu_s - scrapes_before),
    }
    passes_before = operator_passes()
    cpu_before, scrapes_before = cpu_s(), scrape_cpu_s
    perf = None
    if args.perf_changes:
        perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(args.operator_pid),
                                 "-o", f"{args.perf_changes}.{n}"], stderr=subprocess.DEVNULL)
        time.sleep(1)
    allow_lat, dns_lat, sample_pass_ms, sample_slow_syncs = latencies(run)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    # Two scrapes per sample measure its pass time; their cost is not the change's.
    row["cpu_per_change_ms"] = (cpu_s() - cpu_before - (scrape_cpu_s - scrapes_before)) * 1000 / args.latency_samples
    row["scrape_cpu_ms"] = (scrape_cpu_s - scrapes_before) * 1000 / args.latency_samples
    passes, pass_s = (after - before for after, before in zip(operator_passes(), passes_before))
    row["passes_per_change"] = passes / args.latency_samples
    row["pass_ms"] = pass_s * 1000 / max(passes, 1)
    row["allow_samples"] = [round(x) for x in allow_lat]
    row["dns_samples"] = [round(x) for x in dns_lat]
    # Per sample: the time of all the operator's passes for the change (an upper bound of its share of the
    # latency), and etcd's disk syncs slower than SLOW_SYNC_BOUND from the create until 0.2 s after the write.
    row["sample_pass_ms"] = [round(x) for x in sample_pass_ms]
    row["sample_slow_syncs"] = [int(x) for x in sample_slow_syncs]
    row.update({"allow_p50": pct(allow_lat, 50), "allow_p99": pct(allow_lat, 99),
                "dns_p50": pct(dns_lat, 50), "dns_p99": pct(dns_lat, 99)})
    rows.append(row)
    print(json.dumps(rows[-1]), flush=True)

delete_all()


print()
print(f"DNS rules: {args.dns_rules}; one change = one create with the other hosts present "
      f"({args.latency_samples} samples per size, timed from the create request to the write arriving over a watch)")
print()
print("| hosts | burst created in | converged (from first create) | after last create | all Ready | operator API writes | Corefile writes | allow-list B/host | Corefile B/host | operator RSS | operator CPU: burst / per change | one change → allow-list p50 / p99 | → Corefile p50 / p99 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    dns = "(suffix rule)" if SUFFIX else f"{r['dns_p50']:.0f} / {r['dns_p99']:.0f} ms"
    print(f"| {r['n']} | {r['create_s']:.2f} s | {r['converged_s']:.2f} s | {r['after_last_s']:.2f} s | {r['ready_s']:.1f} s | "
          f"{r['operator_writes']:.0f} | {r['corefile_writes']} | {r['allow_bytes_per_host']:.0f} | "
          f"{r['corefile_bytes_per_host']:.0f} | {r['rss_mb']:.0f} MB | "
          f"{r['cpu_burst_s']:.1f} s / {r['cpu_per_change_ms']:.0f} ms | "
          f"{r['allow_p50']:.0f} / {r['allow_p99']:.0f} ms | {dns} |")
print()
for r in rows:
    slowest = max(range(len(r["dns_samples"])), key=lambda i: r["dns_samples"][i])
    slow = sum(1 for x in r["sample_slow_syncs"] if x)
    print(f"{r['n']} hosts: slowest sample {r['dns_samples'][slowest]} ms; "
          f"all the operator's passes for that change took {r['sample_pass_ms'][slowest]} ms"
          + (f", etcd disk syncs over {float(SLOW_SYNC_BOUND) * 1000:.0f} ms during it: "
             f"{r['sample_slow_syncs'][slowest]}; samples with such a sync: {slow} of {len(r['dns_samples'])}"
             if args.etcd_metrics else ""))
print()
per_host = max(r["allow_bytes_per_host"] for r in rows)
per_rule = max(r["corefile_bytes_per_host"] for r in rows)
print(f"ConfigMap limit 1 MiB: about {int(1048576 / per_host)} hosts fit the allow-list"
      + ("" if SUFFIX else f", {int(1048576 / per_rule)} per-host rules fit the Corefile (use --dns-rules suffix beyond that)"))
