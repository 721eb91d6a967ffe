// swift-tools-version:6.0
import PackageDescription

/// The floor for the proxy benchmark (benchmarks/proxy/run.sh with FLOOR=1): what NIO and NIOSSL alone cost for the
/// proxy's job on the same machine, with no proxy logic. Kept out of the root package; built only when asked for.
let package = Package(
    name: "relay-floor",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .executableTarget(
            name: "relay-floor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        )
    ]
)
