import Foundation
import Logging
import Manifests
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Observability
import Prometheus
import ServiceLifecycle

@testable import Proxy

/// Captures access log lines.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])
    var all: [String] { self.lines.withLockedValue { $0 } }
    func append(_ line: String) { self.lines.withLockedValue { $0.append(line) } }
}

/// An in-process proxy on an ephemeral port, with its own metrics registry and captured logs.
struct ProxyHarness: Sendable {
    let registry: PrometheusCollectorRegistry
    let metrics: ProxyMetrics
    let store: AllowListStore
    let proxy: ProxyServer
    let stats: ProxyStats
    let accessLog: LogCapture
    let serviceGroup: ServiceGroup

    var port: Int { self.proxy.localAddress.port! }
    var metricsText: String { self.registry.emitToString() }

    func client() async throws -> TestClient { try await TestClient.connect(port: self.port) }
    func raw() async throws -> RawConnection { try await RawConnection.connect(port: self.port) }

    /// A connection that has sent `bytes`. With a short test timeout, a machine loaded enough to delay the first
    /// bytes past it has the proxy close the connection first (rightly, and CI has seen it): that attempt says
    /// nothing about what the test checks next, so it is made again on a new connection, up to five times.
    func raw(sending bytes: String) async throws -> RawConnection {
        var attempts = 0
        while true {
            attempts += 1
            let raw = try await self.raw()
            do {
                try await raw.send(bytes)
                return raw
            } catch {
                await raw.close()
                if attempts == 5 { throw error }
            }
        }
    }

    /// The common case: one TLS upstream and a proxy allowing `good.upstream.test` to it. The upstream is stopped
    /// (and awaited) when the body ends, so no test leaves a server running behind it.
    /// `group`: one event loop makes every client share one upstream pool.
    static func withGoodUpstream(
        group: (any EventLoopGroup)? = nil,
        _ body: (ProxyHarness, TestUpstream) async throws -> Void
    ) async throws {
        try await TestUpstream.with { upstream in
            try await with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                group: group
            ) { proxy in
                try await body(proxy, upstream)
            }
        }
    }

    /// Runs `body` against a fresh proxy, then shuts it down gracefully and waits for it to finish.
    static func with(
        _ list: AllowList?,
        configure: (inout ProxyConfiguration) -> Void = { _ in },
        group eventLoopGroup: (any EventLoopGroup)? = nil,
        _ body: (ProxyHarness) async throws -> Void
    ) async throws {
        var configuration = ProxyConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.shutdownGracePeriod = .seconds(3)
        configure(&configuration)
        let registry = PrometheusCollectorRegistry()
        let metrics = ProxyMetrics(factory: PrometheusMetricsFactory(registry: registry))
        let store = AllowListStore(metrics: metrics)
        if let list { store.install(list) }
        let capture = LogCapture()
        let stats = ProxyStats()
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let proxy = try await ProxyServer.bind(
            configuration: configuration,
            store: store,
            metrics: metrics,
            group: eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton,
            logger: quiet,
            accessLog: AccessLog(label: "access") { capture.append(String(decoding: $0, as: UTF8.self)) },
            stats: stats
        )
        let group = ServiceGroup(services: [proxy], logger: quiet)
        let harness = ProxyHarness(
            registry: registry,
            metrics: metrics,
            store: store,
            proxy: proxy,
            stats: stats,
            accessLog: capture,
            serviceGroup: group
        )
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(harness)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

enum Fixtures {
    static let suffix = "egress.local"

    /// An entry reaching `upstream` on 127.0.0.1, trusting the test CA.
    static func entry(
        _ host: String,
        upstream: TestUpstream,
        ca: TestPKI.Issued? = TestPKI.shared.ca,
        allowPrivateAddresses: Bool = true,
        tls: AllowList.TLS? = nil,
        timeouts: AllowList.Timeouts = .init()
    ) -> AllowList.Entry {
        AllowList.Entry(
            host: host,
            port: upstream.port,
            tls: tls ?? AllowList.TLS(caFile: ca?.certificatePath),
            addresses: ["127.0.0.1"],
            allowPrivateAddresses: allowPrivateAddresses,
            timeouts: timeouts
        )
    }

    static func host(_ name: String) -> String { "\(name).\(suffix)" }
}

/// Resident set size of this process, from /proc (Linux).
func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.filter { $0.isNumber }
        return (Int(digits) ?? 0) * 1024
    }
    return 0
}
