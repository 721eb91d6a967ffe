#!/usr/bin/env bash
# Builds egress-proxy (release, as shipped) against its dependencies with the patches in this directory applied,
# and prints the binary's path. The patches are proposals for upstream, measured here; the shipped build does not
# carry them. Compare the two builds in one run (same rounds, same pairs):
#
#   patched=$(benchmarks/proxy/upstream/build-patched.sh)
#   EGRESS_BIN=$patched BASELINE_BIN=.build/release/egress-proxy benchmarks/proxy/run.sh
#
# The build happens in a clone of the checkout's HEAD under .build-patched/ (ignored by git), where
# `swift package edit` turns each patched package into an editable copy. A patch file is named after its package:
# PACKAGE-VERSION-what.patch. A cold build takes about as long as the checkout's own first release build.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SCRATCH="$ROOT/.build-patched"

rm -rf "$SCRATCH"
git clone --quiet "$ROOT" "$SCRATCH" >&2
cd "$SCRATCH"
swift package resolve >&2
for patch in "$HERE"/*.patch; do
    name="$(basename "$patch")"
    package="${name%%-[0-9]*}"
    version="${name#"$package"-}"
    version="${version%%-[a-z]*}"
    [ -d "Packages/$package" ] || swift package edit "$package" >&2
    actual="$(git -C "Packages/$package" describe --tags 2>/dev/null || echo unknown)"
    if [ "$actual" != "$version" ]; then
        echo "$name is for $package $version, the checkout resolves $actual" >&2
        exit 1
    fi
    git -C "Packages/$package" apply "$patch"
    echo "applied $name" >&2
done
scripts/swift-build-release.sh --product egress-proxy >&2
echo "$SCRATCH/.build/release/egress-proxy"
