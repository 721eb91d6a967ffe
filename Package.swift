// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "egress-operator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "egress-operator", targets: ["egress-operator"]),
        .executable(name: "egress-proxy", targets: ["egress-proxy"]),
        /// For the allow-list microbenchmarks in benchmarks/allowlist (a package of their own).
        .library(name: "EgressProxyCore", targets: ["Manifests", "Proxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // Test-only: certificates made by the tests themselves.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        /// The pure core: Kubernetes objects, the CRD, the allow-list document and Corefile text, no I/O.
        /// JSON's lexical layer over bytes, shared by the two JSON readers (Manifests' allow-list reader, KubeAPI's).
        .target(name: "JSONScanning"),
        .target(name: "Manifests", dependencies: ["JSONScanning"]),
        /// What both executables expose: the admin server (/metrics, /healthz, /readyz) and JSON logs.
        .target(
            name: "Observability",
            dependencies: [
                "JSONScanning",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// The only code that speaks HTTP to the Kubernetes API server.
        .target(
            name: "KubeAPI",
            dependencies: [
                "JSONScanning",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        /// glibc's malloc_trim, which Swift's Glibc module does not import.
        .target(name: "CMallocTrim"),
        .target(
            name: "Operator",
            dependencies: [
                "CMallocTrim",
                "Manifests",
                "KubeAPI",
                "Observability",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "Proxy",
            dependencies: [
                "JSONScanning",
                "Manifests",
                "Observability",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The data plane's handlers keep their state in class properties, and every access to one paid a runtime
            // exclusivity check: 4 % of the proxy's instructions per request (callgrind). They run on one event loop
            // and never overlap; the compile-time checks stay, and debug builds (the tests) keep the runtime ones.
            // The shipped build (scripts/swift-build-release.sh) turns them off for every module, SwiftNIO included.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "egress-operator",
            dependencies: [
                "Manifests",
                "Operator",
                "KubeAPI",
                "Observability",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "egress-proxy",
            dependencies: [
                "Proxy",
                "Manifests",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        /// The fuzz suites' seeded generator and mutator, shared by the test targets that fuzz (not a product).
        .target(name: "FuzzSupport", path: "Tests/FuzzSupport"),
        .testTarget(
            name: "ManifestsTests",
            dependencies: ["Manifests", "JSONScanning", "FuzzSupport", .product(name: "Yams", package: "Yams")],
            resources: [.copy("Golden")]
        ),
        .testTarget(
            name: "ObservabilityTests",
            dependencies: [
                "Observability",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        /// Shared by the test targets that run against the local control plane (not a product).
        .target(name: "ControlPlaneTesting", dependencies: ["KubeAPI"], path: "Tests/ControlPlaneTesting"),
        .testTarget(
            name: "KubeAPITests",
            dependencies: [
                "KubeAPI",
                "Manifests",
                "ControlPlaneTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "OperatorTests",
            dependencies: [
                "Operator",
                // A real proxy's allow-list store and admin server, for the test of Ready waiting for proxy pods.
                "Proxy",
                "Observability",
                "KubeAPI",
                "Manifests",
                "ControlPlaneTesting",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "ProxyTests",
            dependencies: [
                "Proxy",
                "FuzzSupport",
                "ControlPlaneTesting",
                "Observability",
                "Manifests",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
