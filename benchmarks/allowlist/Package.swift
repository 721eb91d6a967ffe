// swift-tools-version:6.1
import PackageDescription

/// Allow-list microbenchmarks (ordo-one/benchmark), kept out of the root package so that its dependency set stays
/// lean: `cd benchmarks/allowlist && swift package benchmark`.
let package = Package(
    name: "allowlist-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "egress-operator", path: "../.."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        // Already in the root package's graph: a logger and metrics that discard, for the reload benchmark.
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    ],
    targets: [
        .executableTarget(
            name: "AllowListBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "EgressProxyCore", package: "egress-operator"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Benchmarks/AllowListBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
