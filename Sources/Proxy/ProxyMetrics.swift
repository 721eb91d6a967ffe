import CoreMetrics
import NIOConcurrencyHelpers
import NIOHTTP1

import struct Foundation.Date

/// The proxy's metrics, created through an injected swift-metrics factory (the executable passes a
/// `PrometheusMetricsFactory`; tests pass one over their own registry and read the exact exposition text).
///
/// Label values are bounded: `host` is always an allow-list entry's host or `_denied`, `reason` is one of the
/// fixed refusal reasons.
public final class ProxyMetrics: Sendable {
    public static let deniedHost = "_denied"

    private let factory: any MetricsFactory
    private struct Handles {
        var requests: [String: Counter] = [:]
        var latency: [String: Timer] = [:]
        var upstream: [String: Counter] = [:]
        var denials: [String: Counter] = [:]
    }
    private let handles = NIOLockedValueBox(Handles())
    private let reloads: Counter
    private let reloadErrors: Counter
    private let allowListSize: Gauge
    private let lastReloadSuccessful: Gauge
    private let lastReloadSuccess: Gauge
    private let clientConnections: Gauge
    private let clientConnectionLimit: Gauge

    public init(factory: any MetricsFactory) {
        self.factory = factory
        self.reloads = Counter(label: "egress_allowlist_reloads_total", factory: factory)
        self.reloadErrors = Counter(label: "egress_allowlist_reload_errors_total", factory: factory)
        self.allowListSize = Gauge(label: "egress_allowlist_entries", factory: factory)
        self.lastReloadSuccessful = Gauge(label: "egress_allowlist_last_reload_successful", factory: factory)
        self.lastReloadSuccess = Gauge(
            label: "egress_allowlist_last_reload_success_timestamp_seconds",
            factory: factory
        )
        self.clientConnections = Gauge(label: "egress_client_connections", factory: factory)
        self.clientConnectionLimit = Gauge(label: "egress_client_connections_limit", factory: factory)
    }

    /// `egress_client_connections` against `egress_client_connections_limit`: how close the pod is to answering
    /// new connections with 503 `too-many-connections` (counted in `egress_denials_total`).
    func clientConnections(open: Int) {
        self.clientConnections.record(open)
    }

    func clientConnectionLimit(_ limit: Int) {
        self.clientConnectionLimit.record(limit)
    }

    static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    /// The index in `statusClasses`; anything outside 1xx–4xx counts as 5xx.
    static func statusClassIndex(_ code: UInt) -> Int {
        switch code {
        case 100..<200: 0
        case 200..<300: 1
        case 300..<400: 2
        case 400..<500: 3
        default: 4
        }
    }

    static func statusClass(_ code: UInt) -> String { Self.statusClasses[Self.statusClassIndex(code)] }

    /// `egress_denials_total{reason}`: every request the proxy answered itself.
    public func denial(reason: String) {
        self.handle(\.denials, reason) {
            Counter(label: "egress_denials_total", dimensions: [("reason", reason)], factory: self.factory)
        }.increment()
    }

    // The handles of the per-request metrics, created once per label set (under the lock) and cached by each
    // event loop's `LoopMetrics`: `egress_requests_total{host,code}`, `egress_request_duration_seconds{host}` and
    // `egress_upstream_connections_total{host,kind="opened"|"reused"}`.

    func requestCounter(host: String, statusClass: String) -> Counter {
        self.handle(\.requests, host + " " + statusClass) {
            Counter(
                label: "egress_requests_total",
                dimensions: [("host", host), ("code", statusClass)],
                factory: self.factory
            )
        }
    }

    func latencyTimer(host: String) -> Timer {
        self.handle(\.latency, host) {
            Timer(label: "egress_request_duration_seconds", dimensions: [("host", host)], factory: self.factory)
        }
    }

    func upstreamCounter(host: String, reused: Bool) -> Counter {
        let kind = reused ? "reused" : "opened"
        return self.handle(\.upstream, host + " " + kind) {
            Counter(
                label: "egress_upstream_connections_total",
                dimensions: [("host", host), ("kind", kind)],
                factory: self.factory
            )
        }
    }

    /// The handle stored under `key` in one of the tables, made on first use.
    private func handle<Handle>(
        _ table: WritableKeyPath<Handles, [String: Handle]>,
        _ key: String,
        make: () -> Handle
    ) -> Handle {
        self.handles.withLockedValue { handles in
            if let existing = handles[keyPath: table][key] { return existing }
            let made = make()
            handles[keyPath: table][key] = made
            return made
        }
    }

    public func reloaded(entries: Int) {
        self.reloads.increment()
        self.allowListSize.record(entries)
        self.readFileInForce()
        self.lastReloadSuccess.record(Date().timeIntervalSince1970)
    }

    /// `egress_allowlist_last_reload_successful` is 0 from a failed read until the file holds a good list again,
    /// as Prometheus's own `prometheus_config_last_reload_successful`: unlike the error counter, it says for as long
    /// as it lasts that the pod serves a list other than its file's.
    public func reloadFailed() {
        self.reloadErrors.increment()
        self.lastReloadSuccessful.record(0)
    }

    /// The file holds the list in force again (a broken edit reverted, a volume back after a remount).
    func readFileInForce() {
        self.lastReloadSuccessful.record(1)
    }
}

/// The metric handles one event loop uses, by allow-list host label: looked up in the shared `ProxyMetrics` (a lock
/// and a string key) once per host and status class, then updated per request with neither. Loop-bound, like the
/// rest of `LoopContext`.
final class LoopMetrics {
    /// One label's handles. A request looks its label up once, when it is routed, and keeps this.
    final class Host {
        let label: String
        let latency: Timer
        /// Indexed like `ProxyMetrics.statusClasses`.
        var requests: [Counter?] = Array(repeating: nil, count: 5)
        var opened: Counter?
        var reused: Counter?

        init(label: String, latency: Timer) {
            self.label = label
            self.latency = latency
        }
    }

    let shared: ProxyMetrics
    private var hosts: [String: Host] = [:]
    /// Requests that were not routed (refused before or at the allow-list) count under `ProxyMetrics.deniedHost`.
    private lazy var denied = self.host(ProxyMetrics.deniedHost)

    init(_ shared: ProxyMetrics) {
        self.shared = shared
    }

    func host(_ label: String) -> Host {
        if let host = self.hosts[label] { return host }
        let host = Host(label: label, latency: self.shared.latencyTimer(host: label))
        self.hosts[label] = host
        return host
    }

    /// A finished request, under its routed `host` (nil: not routed).
    func request(_ host: Host?, status: UInt, durationNanoseconds: Int64) {
        let host = host ?? self.denied
        let index = ProxyMetrics.statusClassIndex(status)
        let counter: Counter
        if let existing = host.requests[index] {
            counter = existing
        } else {
            counter = self.shared.requestCounter(host: host.label, statusClass: ProxyMetrics.statusClass(status))
            host.requests[index] = counter
        }
        counter.increment()
        host.latency.recordNanoseconds(durationNanoseconds)
    }

    func upstreamConnection(_ host: Host?, reused: Bool) {
        let host = host ?? self.denied
        if reused {
            let counter = host.reused ?? self.shared.upstreamCounter(host: host.label, reused: true)
            host.reused = counter
            counter.increment()
        } else {
            let counter = host.opened ?? self.shared.upstreamCounter(host: host.label, reused: false)
            host.opened = counter
            counter.increment()
        }
    }

    func denial(reason: String) {
        self.shared.denial(reason: reason)
    }
}
