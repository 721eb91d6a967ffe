#!/usr/bin/env bash
# The release build as shipped, in one place: the Dockerfile, scripts/build-release.sh and the benchmarks all build
# through this, so what is measured is what runs.
#
#   scripts/swift-build-release.sh [swift build arguments]     (in the package's directory)
#
# - --static-swift-stdlib: the runtime image needs only glibc, libstdc++ and libgcc_s (see the Dockerfile).
# - -enforce-exclusivity=unchecked, for every module, the libraries included: the compile-time exclusivity checks
#   stay, the run-time ones go. In the proxy they were 13 % of the instructions of a request (callgrind), almost
#   all inside SwiftNIO's channel code. Swift's standard library is itself built without them, and the test suite
#   (debug builds, scripts/test.sh) runs every module, SwiftNIO included, with them on, over the paths the proxy
#   takes.
set -euo pipefail
exec swift build -c release --static-swift-stdlib -Xswiftc -enforce-exclusivity=unchecked "$@"
