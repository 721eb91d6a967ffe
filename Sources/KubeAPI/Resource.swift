import Foundation

/// How a kind is addressed over HTTP: API group, version, plural resource name and whether it is namespaced.
public struct Resource: Hashable, Sendable, CustomStringConvertible {
    /// The API group; empty for the core group (`v1`).
    public var group: String
    public var version: String
    /// The plural, lower-case resource name used in URLs, e.g. `configmaps`.
    public var name: String
    /// The kind, e.g. `ConfigMap` (used for Events, discovery and error messages).
    public var kind: String
    public var namespaced: Bool

    public init(group: String, version: String, name: String, kind: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.name = name
        self.kind = kind
        self.namespaced = namespaced
    }

    /// `v1` for the core group, else `group/version`.
    public var apiVersion: String { self.group.isEmpty ? self.version : "\(self.group)/\(self.version)" }

    public var description: String { self.group.isEmpty ? self.name : "\(self.name).\(self.group)" }

    /// The URL path of the collection, an object or its subresource.
    func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var path = self.group.isEmpty ? "/api/\(self.version)" : "/apis/\(self.group)/\(self.version)"
        if self.namespaced, let namespace {
            path += "/namespaces/\(Self.escape(namespace))"
        }
        path += "/\(self.name)"
        if let name {
            path += "/\(Self.escape(name))"
            if let subresource { path += "/\(subresource)" }
        }
        return path
    }

    /// Names are validated by the server (DNS subdomains); escape anyway so a bad name yields a clean 404/400.
    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathSegmentAllowed) ?? segment
    }
}

extension Resource {
    public static let namespaces = Resource(
        group: "",
        version: "v1",
        name: "namespaces",
        kind: "Namespace",
        namespaced: false
    )
    public static let configMaps = Resource(
        group: "",
        version: "v1",
        name: "configmaps",
        kind: "ConfigMap",
        namespaced: true
    )
    public static let secrets = Resource(group: "", version: "v1", name: "secrets", kind: "Secret", namespaced: true)
    public static let services = Resource(group: "", version: "v1", name: "services", kind: "Service", namespaced: true)
    public static let serviceAccounts = Resource(
        group: "",
        version: "v1",
        name: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true
    )
    public static let pods = Resource(group: "", version: "v1", name: "pods", kind: "Pod", namespaced: true)
    public static let events = Resource(group: "", version: "v1", name: "events", kind: "Event", namespaced: true)
    public static let deployments = Resource(
        group: "apps",
        version: "v1",
        name: "deployments",
        kind: "Deployment",
        namespaced: true
    )
    public static let networkPolicies = Resource(
        group: "networking.k8s.io",
        version: "v1",
        name: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true
    )
    public static let podDisruptionBudgets = Resource(
        group: "policy",
        version: "v1",
        name: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true
    )
    public static let horizontalPodAutoscalers = Resource(
        group: "autoscaling",
        version: "v1",
        name: "horizontalpodautoscalers",
        kind: "HorizontalPodAutoscaler",
        namespaced: true
    )
    public static let leases = Resource(
        group: "coordination.k8s.io",
        version: "v1",
        name: "leases",
        kind: "Lease",
        namespaced: true
    )
    public static let customResourceDefinitions = Resource(
        group: "apiextensions.k8s.io",
        version: "v1",
        name: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false
    )
}

extension CharacterSet {
    fileprivate static let urlPathSegmentAllowed: CharacterSet = {
        var set = CharacterSet.urlPathAllowed
        set.remove("/")
        return set
    }()
}
