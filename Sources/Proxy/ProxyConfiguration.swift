import NIOCore

/// Everything the proxy server needs that is not the allow-list. Defaults are production values; tests shorten the
/// timeouts.
public struct ProxyConfiguration: Sendable {
    public var host: String = "0.0.0.0"
    /// 0 picks an ephemeral port (tests).
    public var port: Int = 8080
    /// Names are routed as `NAME.<suffix>`.
    public var suffix: String = "egress.local" {
        didSet { self.suffix = RequestTarget.normalizeSuffix(self.suffix) }
    }
    /// Total size of the request line plus headers, and the number of header fields.
    public var maxHeaderBytes: Int = 32 * 1024
    public var maxHeaderCount: Int = 100
    /// Beyond this, new client connections get a 503 and are closed.
    public var maxClientConnections: Int = 10_000
    /// Upstream connections per (host, entry) per event loop, idle and busy together. Requests beyond it wait up to
    /// the entry's connect timeout for a free connection.
    public var maxUpstreamConnectionsPerHost: Int = 256
    /// A request head must be complete this long after the connection opened or the previous response ended
    /// (slowloris defence); otherwise the connection is closed.
    public var requestHeadTimeout: TimeAmount = .seconds(10)
    /// A client connection with no bytes read or written for this long is closed.
    public var clientIdleTimeout: TimeAmount = .seconds(60)
    /// Graceful shutdown: readiness fails at once, but new connections are still accepted for this long, while
    /// Kubernetes takes the pod out of the Service's endpoints (clients that have not heard yet would otherwise be
    /// refused). 0 for local use; the operator's proxy Deployment passes 5 s.
    public var shutdownDelay: TimeAmount = .zero
    /// Graceful shutdown: after `shutdownDelay`, in-flight requests get this long to finish before connections are
    /// closed.
    public var shutdownGracePeriod: TimeAmount = .seconds(25)
    /// Include the request path in access log lines (off: paths can carry secrets).
    public var logPaths: Bool = false

    public init() {}
}
