import Manifests

/// Everything the operator process is configured with; the executable fills it from flags.
public struct OperatorOptions: Sendable {
    public enum DNSRules: String, Sendable, CaseIterable {
        /// One rewrite rule per allowed host: names that are not allowed do not resolve.
        case perHost = "per-host"
        /// One anchored rule for the whole suffix, for very large host sets: every `*.egress.local` name resolves
        /// to the proxy, and the proxy's allow-list is the only enforcement point (it answers 403).
        case suffix
    }

    public var settings: OperatorSettings
    public var fieldManager = "egress-operator"
    /// Unique per replica: the Lease holder identity and the Events' reporting instance.
    public var identity: String
    public var leaderElection = true
    public var leaseName = "egress-operator-leader"
    public var leaseDuration: Duration = .seconds(15)
    public var renewDeadline: Duration = .seconds(10)
    public var retryPeriod: Duration = .seconds(2)
    /// A full pass at least this often, even without events (level-triggered safety net).
    public var resyncPeriod: Duration = .seconds(300)
    public var dnsRules = DNSRules.perHost
    /// Report an EgressHost Ready only once every ready proxy pod says it has loaded it (`GET /allowlist` on the
    /// pods' admin port); otherwise once the allow-list ConfigMap and DNS hold it and the Deployment is available.
    public var confirmProxyLoad = true
    public var adminHost = "0.0.0.0"

    public init(settings: OperatorSettings = OperatorSettings(), identity: String) {
        self.settings = settings
        self.identity = identity
    }

    /// The Corefile editor for these settings; throws when the suffix or the proxy Service's name is unusable.
    public func corefileEditor() throws -> CorefileEditor {
        try CorefileEditor(
            suffix: settings.proxy.suffix,
            proxyServiceFQDN: settings.proxy.serviceFQDN(namespace: settings.namespace),
            mode: dnsRules == .suffix ? .suffix : .perHost
        )
    }
}

/// Errors of the operator itself (API errors are `KubeError`).
public struct OperatorError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case coreDNSMissing
        case `internal`
    }
    private let code: Code
    public let description: String

    static func coreDNSMissing(_ message: String) -> OperatorError {
        OperatorError(code: .coreDNSMissing, description: message)
    }
    static func `internal`(_ message: String) -> OperatorError { OperatorError(code: .internal, description: message) }

    var isCoreDNSMissing: Bool { self.code == .coreDNSMissing }
}
