import CoreMetrics
import NIOConcurrencyHelpers
import NIOHTTP1

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

    public init(factory: any MetricsFactory) {
        self.factory = factory
        self.reloads = Counter(label: "egress_allowlist_reloads_total", factory: factory)
        self.reloadErrors = Counter(label: "egress_allowlist_reload_errors_total", factory: factory)
        self.allowListSize = Gauge(label: "egress_allowlist_entries", factory: factory)
    }

    static func statusClass(_ code: UInt) -> String {
        switch code {
        case 100..<200: "1xx"
        case 200..<300: "2xx"
        case 300..<400: "3xx"
        case 400..<500: "4xx"
        default: "5xx"
        }
    }

    /// One finished request: `egress_requests_total{host,code}` and `egress_request_duration_seconds{host}`.
    public func request(host: String, status: UInt, durationNanoseconds: Int64) {
        let statusClass = Self.statusClass(status)
        let key = host + " " + statusClass
        let (counter, timer) = self.handles.withLockedValue { handles in
            let counter =
                handles.requests[key]
                ?? {
                    let c = Counter(
                        label: "egress_requests_total",
                        dimensions: [("host", host), ("code", statusClass)],
                        factory: self.factory
                    )
                    handles.requests[key] = c
                    return c
                }()
            let timer =
                handles.latency[host]
                ?? {
                    let t = Timer(
                        label: "egress_request_duration_seconds",
                        dimensions: [("host", host)],
                        factory: self.factory
                    )
                    handles.latency[host] = t
                    return t
                }()
            return (counter, timer)
        }
        counter.increment()
        timer.recordNanoseconds(durationNanoseconds)
    }

    /// `egress_upstream_connections_total{host,kind="opened"|"reused"}`.
    public func upstreamConnection(host: String, reused: Bool) {
        let kind = reused ? "reused" : "opened"
        let key = host + " " + kind
        self.handles.withLockedValue { handles in
            handles.upstream[key]
                ?? {
                    let c = Counter(
                        label: "egress_upstream_connections_total",
                        dimensions: [("host", host), ("kind", kind)],
                        factory: self.factory
                    )
                    handles.upstream[key] = c
                    return c
                }()
        }.increment()
    }

    /// `egress_denials_total{reason}`: every request the proxy answered itself.
    public func denial(reason: String) {
        self.handles.withLockedValue { handles in
            handles.denials[reason]
                ?? {
                    let c = Counter(
                        label: "egress_denials_total",
                        dimensions: [("reason", reason)],
                        factory: self.factory
                    )
                    handles.denials[reason] = c
                    return c
                }()
        }.increment()
    }

    public func reloaded(entries: Int) {
        self.reloads.increment()
        self.allowListSize.record(entries)
    }

    public func reloadFailed() {
        self.reloadErrors.increment()
    }
}
