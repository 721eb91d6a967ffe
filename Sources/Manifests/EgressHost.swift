/// The user's interface: one cluster-scoped `EgressHost` (`egress.dev/v1alpha1`) per allowed external host.
///
/// These `Codable` types are the single source of truth for the API: the CRD's OpenAPI schema is generated from
/// the `schema` each type declares beside its fields (`EgressHostSchema.swift`), and a test keeps the two in step.
public struct EgressHost: Codable, Sendable, Hashable {
    public static let group = "egress.dev"
    public static let version = "v1alpha1"
    public static let apiVersion = "\(group)/\(version)"
    public static let kind = "EgressHost"
    public static let plural = "egresshosts"
    public static let singular = "egresshost"
    public static let shortName = "eh"

    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: Spec
    public var status: Status?

    public init(name: String, spec: Spec, status: Status? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = ObjectMeta(name: name)
        self.spec = spec
        self.status = status
    }

    public struct Spec: Codable, Sendable, Hashable {
        /// `api.github.com`, or `*.example.com` (one or more labels in front of `example.com`).
        public var host: String
        /// The upstream's TLS port. Default 443.
        public var port: Int?
        public var tls: TLS?
        /// Fixed upstream IPs instead of DNS resolution.
        public var addresses: [String]?
        /// Default false: upstream addresses in private, loopback, link-local, CGNAT, multicast or unspecified ranges
        /// are refused (SSRF protection).
        public var allowPrivateAddresses: Bool?
        public var timeouts: Timeouts?

        public init(
            host: String,
            port: Int? = nil,
            tls: TLS? = nil,
            addresses: [String]? = nil,
            allowPrivateAddresses: Bool? = nil,
            timeouts: Timeouts? = nil
        ) {
            self.host = host
            self.port = port
            self.tls = tls
            self.addresses = addresses
            self.allowPrivateAddresses = allowPrivateAddresses
            self.timeouts = timeouts
        }

        public static let defaultPort = 443
        public var effectivePort: Int { port ?? Self.defaultPort }
    }

    public struct TLS: Codable, Sendable, Hashable {
        /// PEM trust roots that replace the system roots for this host.
        public var caBundle: CABundleReference?
        /// A `kubernetes.io/tls` Secret presented to the upstream (mutual TLS).
        public var clientCertificate: SecretReference?
        /// SNI and verification name, when it differs from `host`.
        public var serverName: String?
        /// Default false. Turns off certificate and host name verification: reported as a warning condition.
        public var insecureSkipVerify: Bool?

        public init(
            caBundle: CABundleReference? = nil,
            clientCertificate: SecretReference? = nil,
            serverName: String? = nil,
            insecureSkipVerify: Bool? = nil
        ) {
            self.caBundle = caBundle
            self.clientCertificate = clientCertificate
            self.serverName = serverName
            self.insecureSkipVerify = insecureSkipVerify
        }
    }

    /// A key of a ConfigMap or Secret in the operator's namespace. Cluster-scoped resources cannot name a
    /// namespace safely, so, like cert-manager's ClusterIssuer, referenced material lives in the operator's own
    /// namespace: the operator never needs to read Secrets cluster-wide.
    public struct CABundleReference: Codable, Sendable, Hashable {
        public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
            case configMap = "ConfigMap"
            case secret = "Secret"
        }
        public var kind: Kind
        public var name: String
        /// Default `ca.crt`.
        public var key: String?

        public init(kind: Kind, name: String, key: String? = nil) {
            self.kind = kind
            self.name = name
            self.key = key
        }

        public static let defaultKey = "ca.crt"
        public var effectiveKey: String { key ?? Self.defaultKey }
    }

    public struct SecretReference: Codable, Sendable, Hashable {
        public var name: String
        public init(name: String) { self.name = name }
    }

    /// Go-style durations (`500ms`, `5s`, `1m30s`).
    public struct Timeouts: Codable, Sendable, Hashable {
        /// TCP connect plus TLS handshake. Default 5s.
        public var connect: String?
        /// Until the upstream's response head arrives. Default 30s.
        public var responseHeaders: String?
        /// How long an idle pooled connection or a quiet stream is kept. Default 90s.
        public var idle: String?

        public init(connect: String? = nil, responseHeaders: String? = nil, idle: String? = nil) {
            self.connect = connect
            self.responseHeaders = responseHeaders
            self.idle = idle
        }

        public static let defaultConnect = "5s"
        public static let defaultResponseHeaders = "30s"
        public static let defaultIdle = "90s"
    }

    public struct Status: Codable, Sendable, Hashable {
        public var observedGeneration: Int?
        public var conditions: [Condition]?
        /// The URL applications call: `http://api.github.com.egress.local`.
        public var internalURL: String?

        public init(observedGeneration: Int? = nil, conditions: [Condition]? = nil, internalURL: String? = nil) {
            self.observedGeneration = observedGeneration
            self.conditions = conditions
            self.internalURL = internalURL
        }

        /// The condition types the operator writes.
        public static let operatorConditionTypes: Set<String> = [
            "Accepted", "Programmed", "Ready", "InsecureSkipVerify",
        ]

        /// This status without the conditions other controllers added: server-side apply leaves those alone, so a
        /// status compared with them would always differ from the operator's and be written again, forever.
        public var operatorOwned: Status {
            guard let conditions, conditions.contains(where: { !Self.operatorConditionTypes.contains($0.type) }) else {
                return self
            }
            var owned = self
            owned.conditions = conditions.filter { Self.operatorConditionTypes.contains($0.type) }
            return owned
        }
    }
}

/// The subset of Kubernetes object metadata the operator reads and writes.
public struct ObjectMeta: Codable, Sendable, Hashable {
    public var name: String
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?

    public init(
        name: String,
        namespace: String? = nil,
        uid: String? = nil,
        resourceVersion: String? = nil,
        generation: Int? = nil,
        creationTimestamp: String? = nil,
        labels: [String: String]? = nil,
        annotations: [String: String]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.generation = generation
        self.creationTimestamp = creationTimestamp
        self.labels = labels
        self.annotations = annotations
    }
}

/// A `metav1.Condition`.
public struct Condition: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable, Hashable {
        case `true` = "True"
        case `false` = "False"
        case unknown = "Unknown"
    }

    public var type: String
    public var status: Status
    public var reason: String
    public var message: String
    /// RFC 3339; set by the caller, who owns the clock.
    public var lastTransitionTime: String
    public var observedGeneration: Int?

    public init(
        type: String,
        status: Status,
        reason: String,
        message: String,
        lastTransitionTime: String,
        observedGeneration: Int? = nil
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
        self.observedGeneration = observedGeneration
    }
}

extension EgressHost {
    /// The URL applications call instead of `https://HOST`.
    public static func internalURL(host: String, suffix: String = HostName.reservedSuffix) -> String {
        "http://\(host).\(suffix)"
    }
}
