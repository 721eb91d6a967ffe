import Foundation

/// One resource type a group/version serves, from API discovery.
public struct APIResourceInfo: Codable, Sendable, Hashable {
    /// The plural name, or `name/subresource` for subresources (e.g. `deployments/status`).
    public var name: String
    public var namespaced: Bool
    public var kind: String
    public var verbs: [String]?
}

/// The server's version (`/version`).
public struct ServerVersion: Codable, Sendable, Hashable {
    public var major: String
    public var minor: String
    public var gitVersion: String
}

extension KubeClient {
    /// The resource types served under `apiVersion` (`v1`, `apps/v1`, ...), or `nil` if that group/version is not
    /// served at all (e.g. `policy/v1` on Kubernetes 1.20).
    public func resources(forAPIVersion apiVersion: String) async throws -> [APIResourceInfo]? {
        let path = apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)"
        do {
            let json = try await self.send(.GET, path)
            return try (json["resources"] ?? []).decode([APIResourceInfo].self)
        } catch let error as KubeError where error.code == .notFound {
            return nil
        } catch let error as DecodingError {
            throw KubeError.decoding(error, "the discovery document \(path)")
        }
    }

    /// Whether the server serves `kind` in `apiVersion`. Check before writing a kind an older cluster may not know,
    /// and report it (an Event, a condition) instead of failing in a loop.
    public func isServed(apiVersion: String, kind: String) async throws -> Bool {
        guard let resources = try await self.resources(forAPIVersion: apiVersion) else { return false }
        return resources.contains { $0.kind == kind && !$0.name.contains("/") }
    }

    /// Whether `resource` (group, version and plural name) is served.
    public func isServed(_ resource: Resource) async throws -> Bool {
        guard let resources = try await self.resources(forAPIVersion: resource.apiVersion) else { return false }
        return resources.contains { $0.name == resource.name }
    }

    public func serverVersion() async throws -> ServerVersion {
        let json = try await self.send(.GET, "/version")
        do {
            return try json.decode(ServerVersion.self)
        } catch {
            throw KubeError.decoding(error, "/version")
        }
    }
}

/// Points at an object, e.g. the subject of an Event.
public struct ObjectReference: Sendable, Hashable, Codable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?

    public init(
        apiVersion: String,
        kind: String,
        name: String,
        namespace: String? = nil,
        uid: String? = nil,
        resourceVersion: String? = nil
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
    }

    /// A reference to `object` (which must carry apiVersion, kind and name, as objects from the server do).
    public init(_ object: KubeObject) {
        self.init(
            apiVersion: object.apiVersion ?? "",
            kind: object.kind ?? "",
            name: object.name ?? "",
            namespace: object.namespace,
            uid: object.uid,
            resourceVersion: object.resourceVersion
        )
    }
}

public enum EventType: String, Sendable {
    case normal = "Normal"
    case warning = "Warning"
}

extension KubeClient {
    /// Records a core/v1 Event about `regarding` (shown by `kubectl describe`). Events of cluster-scoped objects go
    /// to the `default` namespace, as kubectl and client-go do.
    @discardableResult
    public func createEvent(
        regarding: ObjectReference,
        type: EventType,
        reason: String,
        message: String,
        reportingComponent: String,
        reportingInstance: String? = nil
    ) async throws -> KubeObject {
        let namespace = regarding.namespace ?? "default"
        let now = Date.now.formatted(.iso8601)
        var involved = try JSONValue(encoding: regarding)
        if regarding.namespace == nil { involved["namespace"] = nil }
        var source: JSONValue = ["component": .string(reportingComponent)]
        if let reportingInstance { source["host"] = .string(reportingInstance) }
        let event = KubeObject([
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": ["generateName": .string("\(regarding.name)."), "namespace": .string(namespace)],
            "involvedObject": involved,
            "type": .string(type.rawValue),
            "reason": .string(reason),
            "message": .string(String(message.prefix(1024))),
            "source": source,
            "firstTimestamp": .string(now),
            "lastTimestamp": .string(now),
            "count": 1,
            "reportingComponent": .string(reportingComponent),
            "reportingInstance": .string(reportingInstance ?? reportingComponent),
        ])
        return try await self.create(.events, event, namespace: namespace)
    }
}
