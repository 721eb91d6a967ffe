#!/usr/bin/env bash
# Builds the release binaries exactly as the Dockerfile's build stage does (scripts/swift-build-release.sh), without a container engine, and
# checks that they would run in the runtime image (gcr.io/distroless/cc-debian12:nonroot):
#   - both start (`--help`; `--version` prints the chart's appVersion)
#   - `ldd` lists only libraries that image provides: glibc (libc, libm, libpthread, libdl, librt, libutil,
#     the loader), libstdc++, libgcc_s, plus libz.so.1, which the Dockerfile copies in from the build stage.
#     Anything else (libFoundation, libicu, libcurl, libssl, ...) would be missing at runtime, and fails this
#     script.
#
#   scripts/build-release.sh [OUT_DIR]     # default OUT_DIR: .build/dist
#
# Takes several minutes on a 2-core machine; scripts/chart-test.sh does not depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-.build/dist}
PRODUCTS=(egress-operator egress-proxy)
APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/egress-operator/Chart.yaml)
# What distroless/cc-debian12 ships (besides CA certificates and tzdata), and libz.so.1 that the Dockerfile adds.
ALLOWED='^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1|ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1)$'

for product in "${PRODUCTS[@]}"; do
    echo "==> scripts/swift-build-release.sh --product $product"
    scripts/swift-build-release.sh --product "$product"
done
BIN=$(scripts/swift-build-release.sh --show-bin-path)
mkdir -p "$OUT"
for product in "${PRODUCTS[@]}"; do cp "$BIN/$product" "$OUT/$product"; done

status=0
for product in "${PRODUCTS[@]}"; do
    binary=$OUT/$product
    echo "==> $binary ($(du -h "$binary" | cut -f1))"
    if "$binary" --help >/dev/null; then echo "    --help: ok"; else echo "    --help FAILED"; status=1; fi
    libraries=$(ldd "$binary" | awk '{print $1}')
    for library in $libraries; do
        if [[ "$library" =~ $ALLOWED ]]; then
            echo "    links $library (in the runtime image)"
        else
            echo "    links $library: NOT in the runtime image (gcr.io/distroless/cc-debian12 + libz)"
            status=1
        fi
    done
done
for product in egress-operator egress-proxy; do
    version=$("$OUT/$product" --version)
    if [ "$version" = "$APP_VERSION" ]; then
        echo "==> $product --version: $version (= chart appVersion)"
    else
        echo "==> $product --version is '$version', the chart's appVersion is '$APP_VERSION'"
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "release binaries in $OUT: ok"
exit "$status"
