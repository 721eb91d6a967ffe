/// How an installation is configured: the operator's flags and the chart's values end up here, and every
/// generator is a pure function of it (no environment is read while building objects).
public struct OperatorSettings: Sendable, Hashable {
    public var namespace = "egress-system"
    public var name = "egress-operator"
    public var image = "ghcr.io/egress-dev/egress-operator:0.1.0"
    public var imagePullPolicy = "IfNotPresent"
    public var replicas = 2
    /// Port of `/metrics`, `/healthz` and `/readyz`.
    public var adminPort = 9090
    public var logLevel = "info"
    public var proxy = ProxySettings()
    public var coreDNS = CoreDNSSettings()
    public var lockdown = LockdownSettings()

    public init() {}

    public var labels: [String: String] {
        [
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/component": "operator",
            "app.kubernetes.io/part-of": "egress-operator",
        ]
    }

    /// `KEY=VALUE` pairs from the command line (annotations, labels); `none` stands for no pair at all. A value may
    /// be empty (`KEY=`): Kubernetes allows empty annotation and label values, and the chart renders them so.
    public static func keyValuePairs(_ values: [String]) throws(InvalidKeyValuePair) -> [String: String] {
        var result: [String: String] = [:]
        for value in values where value != "none" {
            let parts = value.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw InvalidKeyValuePair(text: value) }
            result[String(parts[0])] = String(parts[1])
        }
        return result
    }

    public struct InvalidKeyValuePair: Error, CustomStringConvertible {
        public var text: String
        public var description: String { "\(text) is not KEY=VALUE" }
    }
}

public struct ProxySettings: Sendable, Hashable {
    public var name = "egress-proxy"
    public var image = "ghcr.io/egress-dev/egress-proxy:0.1.0"
    public var imagePullPolicy = "IfNotPresent"
    /// Two or more, spread across zones and nodes: egress must survive a node drain. With `autoscaling`, the
    /// least the autoscaler may scale to.
    public var replicas = 2
    /// Scale the proxy on CPU with a HorizontalPodAutoscaler, from `replicas` up to `maxReplicas`; nil: a fixed
    /// `replicas`.
    public var autoscaling: Autoscaling?
    public var port = 8080
    public var adminPort = 9090
    /// The Service port applications reach (`http://HOST.egress.local` means port 80).
    public var servicePort = 80
    public var suffix = HostName.reservedSuffix
    public var clusterDomain = "cluster.local"
    /// Pod annotations for the mesh, e.g. `linkerd.io/inject: enabled`.
    public var podAnnotations: [String: String] = ["linkerd.io/inject": "enabled"]
    public var cpuRequest = "100m"
    public var memoryRequest = "64Mi"
    public var memoryLimit = "256Mi"
    public var maxClientConnections = 10_000
    /// Label selector (matchLabels) of namespaces whose pods may call the proxy; empty: every namespace of the
    /// cluster (and nothing outside it).
    public var clientNamespaceLabels: [String: String] = [:]
    /// Request paths in the proxy's access log (off: paths can carry secrets).
    public var logPaths = false
    /// One JSON access log line per request (`--no-access-log` turns it off, e.g. where the mesh logs requests).
    public var accessLog = true

    public init() {}

    public struct Autoscaling: Sendable, Hashable {
        public var maxReplicas: Int
        /// Average CPU use across the pods, as a percentage of their CPU request, that the autoscaler aims for.
        public var targetCPUUtilizationPercentage: Int

        public init(maxReplicas: Int, targetCPUUtilizationPercentage: Int = 70) {
            self.maxReplicas = maxReplicas
            self.targetCPUUtilizationPercentage = targetCPUUtilizationPercentage
        }
    }

    public var labels: [String: String] {
        [
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/component": "proxy",
            "app.kubernetes.io/part-of": "egress-operator",
        ]
    }

    public var allowListConfigMapName: String { "\(name)-allowlist" }
    public static let allowListKey = "allowlist.json"
    public static let allowListMountPath = "/etc/egress-proxy/allowlist"
    /// The operator copies referenced CA bundles and client certificates into this one Secret, mounted whole, so
    /// the kubelet refreshes it in place and the proxy never restarts for a certificate change.
    public var tlsSecretName: String { "\(name)-tls" }
    public static let defaultTLSMountPath = "/etc/egress-proxy/tls"
    /// Where the proxy finds that Secret's files; the allow-list names files under it.
    public var tlsMountPath = Self.defaultTLSMountPath

    /// The name CoreDNS rewrites allowed hosts to.
    public func serviceFQDN(namespace: String) -> String {
        "\(name).\(namespace).svc.\(clusterDomain)"
    }
}

public struct CoreDNSSettings: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Edit a marker-delimited block of `kube-system/coredns`'s Corefile (kubeadm, EKS, GKE style).
        case corefile
        /// Write `egress-operator.override` into the `coredns-custom` ConfigMap (k3s, AKS style).
        case custom
        /// `custom` when the Corefile imports `*.override` files (with no Corefile to read, when a `coredns-custom`
        /// ConfigMap exists), else `corefile`.
        case auto
    }
    public var mode = Mode.auto
    public var namespace = "kube-system"
    public var configMapName = "coredns"
    public var corefileKey = "Corefile"
    public var customConfigMapName = "coredns-custom"
    public static let overrideKey = "egress-operator.override"

    public init() {}
}

/// Off by default: namespaces labelled `egress.dev/lockdown: "true"` get a NetworkPolicy that lets their pods
/// reach the outside world only through the egress proxy.
public struct LockdownSettings: Sendable, Hashable {
    public var enabled = false
    public static let namespaceLabel = "egress.dev/lockdown"
    /// In-cluster destinations that stay reachable (pod and service CIDRs).
    public var clusterCIDRs = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    public var policyName = "egress-lockdown"

    public init() {}
}
