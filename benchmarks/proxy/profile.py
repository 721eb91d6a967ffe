"""Where each proxy's CPU time goes, from `perf report` sample counts (PROFILE=1 in run.sh).

Usage: profile.py HZ NAME=REPORT:REQUESTS...
  REPORT is the output of `perf report --stdio --no-children -g none --sort dso,sym -F sample,dso,sym` for a
  cpu-clock profile sampled at HZ while the proxy served REQUESTS requests. Prints a Markdown table of CPU
  microseconds per request by component: the kernel (socket calls, TCP over loopback, waking the peers), the TLS
  library, the proxy's own code, and, for the Swift builds, the libraries and runtime under it.
"""

import re
import sys

COMPONENTS = [
    ("kernel", "kernel"),
    ("tls", "TLS library"),
    ("own", "own code"),
    ("nio", "SwiftNIO, NIOSSL"),
    ("refcount", "Swift refcounting"),
    ("runtime", "Swift runtime, stdlib"),
    ("libc", "C library"),
    ("other", "vDSO clock, other"),
]

# BoringSSL is linked into the Swift binaries (NIOSSL's copy), so its symbols are told apart by name there; OpenSSL
# is a shared library for nginx and HAProxy, whose own TLS glue (`ssl_sock_*`) counts as their own code, as NIOSSL's
# counts as NIO.
TLS_SYMBOL = re.compile(
    r"BoringSSL|bssl::|aes|gcm|ghash|sha\d|x25519|chacha|poly1305|check_iovec|^ssl_|^SSL_|^BIO_|^ERR_|^EVP_|^CRYPTO_"
    r"|ecp_nistz256|^fe_|^ge_|mlkem|^bn_|^ec_"
)
OWN_MODULES = ("$s5Proxy", "$s12JSONScanning", "$s13Observability", "$s10Prometheus", "$s11CoreMetrics",
               "$s7Logging", "$s11relay_floor")
NIO_MODULES = ("$s8NIOPosix", "$s7NIOCore", "$s6NIOSSL", "$s8NIOHTTP1", "$s7Atomics", "$s21NIOConcurrencyHelpers")
REFCOUNT = re.compile(r"^swift_(retain|release|bridgeObjectRetain|bridgeObjectRelease|isUniquelyReferenced|"
                      r"nonatomic_retain|nonatomic_release|unknownObjectRetain|unknownObjectRelease)")


def component(dso: str, symbol: str) -> str:
    if dso.startswith("[kernel"):
        return "kernel"
    if dso.startswith(("libcrypto", "libssl")):
        return "tls"
    if dso.startswith(("libc.", "libm.", "ld-linux")):
        return "libc"
    if dso.startswith("[vdso"):
        return "other"
    if REFCOUNT.match(symbol):
        return "refcount"
    if symbol.startswith(OWN_MODULES) or "5ProxyE" in symbol[:24]:  # also the proxy's extensions of library types
        return "own"
    if symbol.startswith(NIO_MODULES):
        return "nio"
    if symbol.startswith(("swift", "_swift", "$s", "__swift", "getCache", "tryCast")) or "swift::" in symbol:
        return "runtime"
    if dso.startswith(("nginx", "haproxy")):
        return "own"
    if TLS_SYMBOL.search(symbol):
        return "tls"
    if symbol.startswith(("c_nio_", "CNIOLinux", "CNIOPosix")):
        return "nio"
    return "other"


def parse(path: str) -> dict[str, int]:
    samples = {key: 0 for key, _ in COMPONENTS}
    for line in open(path, encoding="utf-8", errors="replace"):
        match = re.match(r"\s*(\d+)\s+(\S+)\s+\[[k.]\]\s+(\S+)", line)
        if not match:
            continue
        samples[component(match.group(2), match.group(3))] += int(match.group(1))
    return samples


def main() -> None:
    hz = float(sys.argv[1])
    rows = []
    for argument in sys.argv[2:]:
        name, rest = argument.split("=", 1)
        path, requests = rest.rsplit(":", 1)
        samples = parse(path)
        per_request = {key: count / hz * 1e6 / int(requests) for key, count in samples.items()}
        rows.append((name, per_request))
    print("| proxy | " + " | ".join(title for _, title in COMPONENTS) + " | total | user space |")
    print("|---" * (len(COMPONENTS) + 3) + "|")
    for name, per_request in rows:
        total = sum(per_request.values())
        user = total - per_request["kernel"]
        cells = " | ".join(f"{per_request[key]:.2f}" for key, _ in COMPONENTS)
        print(f"| {name} | {cells} | {total:.2f} | {user:.2f} |")


if __name__ == "__main__":
    main()
