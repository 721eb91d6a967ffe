import Foundation

/// A Kubernetes object as JSON, with accessors for the metadata every object has.
///
/// Build one from a literal (`KubeObject(["apiVersion": "v1", "kind": "ConfigMap", ...])`), from a typed model
/// (``init(encoding:)``), or get one from ``KubeClient``. ``decode(_:)`` gives a typed view.
public struct KubeObject: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The whole object.
    public var json: JSONValue

    public init(_ json: JSONValue) {
        self.json = json
    }

    /// An object of the given kind with `metadata.name` (and `metadata.namespace`) set.
    public init(apiVersion: String, kind: String, name: String, namespace: String? = nil) {
        self.json = ["apiVersion": .string(apiVersion), "kind": .string(kind), "metadata": ["name": .string(name)]]
        if let namespace { self.namespace = namespace }
    }

    public init<T: Encodable>(encoding value: T) throws {
        self.json = try JSONValue(encoding: value)
    }

    public init(from decoder: any Decoder) throws {
        self.json = try JSONValue(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try self.json.encode(to: encoder)
    }

    /// A typed view of the object.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try self.json.decode(T.self)
    }

    public subscript(key: String) -> JSONValue? {
        get { self.json[key] }
        set { self.json[key] = newValue }
    }

    /// The value at a path of object members, e.g. `object[path: "spec", "host"]`.
    public subscript(path keys: String...) -> JSONValue? {
        var current: JSONValue? = self.json
        for key in keys { current = current?[key] }
        return current
    }

    public var description: String { self.json.jsonString() }

    public var apiVersion: String? { self.json["apiVersion"]?.stringValue }
    public var kind: String? { self.json["kind"]?.stringValue }

    public var metadata: JSONValue {
        get { self.json["metadata"] ?? .null }
        set { self.json["metadata"] = newValue }
    }

    public var name: String? {
        get { self.metadata["name"]?.stringValue }
        set { self.metadata["name"] = newValue.map(JSONValue.string) }
    }

    public var namespace: String? {
        get { self.metadata["namespace"]?.stringValue }
        set { self.metadata["namespace"] = newValue.map(JSONValue.string) }
    }

    public var uid: String? { self.metadata["uid"]?.stringValue }

    public var resourceVersion: String? {
        get { self.metadata["resourceVersion"]?.stringValue }
        set { self.metadata["resourceVersion"] = newValue.map(JSONValue.string) }
    }

    public var generation: Int? { self.metadata["generation"]?.intValue }

    public var deletionTimestamp: String? { self.metadata["deletionTimestamp"]?.stringValue }

    public var labels: [String: String] {
        get { Self.stringMap(self.metadata["labels"]) }
        set {
            self.metadata["labels"] = newValue.isEmpty ? nil : .object(JSONObject(newValue.mapValues(JSONValue.string)))
        }
    }

    public var annotations: [String: String] {
        get { Self.stringMap(self.metadata["annotations"]) }
        set {
            self.metadata["annotations"] =
                newValue.isEmpty ? nil : .object(JSONObject(newValue.mapValues(JSONValue.string)))
        }
    }

    /// namespace/name: how caches and work queues key objects.
    public var key: ObjectKey { ObjectKey(namespace: self.namespace, name: self.name ?? "") }

    private static func stringMap(_ value: JSONValue?) -> [String: String] {
        guard let members = value?.objectValue else { return [:] }
        return members.compactMapValues(\.stringValue)
    }
}

/// Identifies an object within one resource: `namespace/name`, or just `name` for cluster-scoped objects.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var namespace: String?
    public var name: String

    public init(namespace: String?, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String {
        if let namespace { return "\(namespace)/\(name)" }
        return name
    }

    public static func < (lhs: ObjectKey, rhs: ObjectKey) -> Bool {
        (lhs.namespace ?? "", lhs.name) < (rhs.namespace ?? "", rhs.name)
    }
}

/// One page of a list, or the concatenation of all pages (``ListPager``).
public struct ObjectList: Sendable {
    public var items: [KubeObject]
    /// The collection's resourceVersion: watch from here to see every change after this list.
    public var resourceVersion: String
    /// Present when more pages follow; pass it as ``ListOptions/continueToken``.
    public var continueToken: String?
    public var remainingItemCount: Int?

    public init(
        items: [KubeObject],
        resourceVersion: String,
        continueToken: String? = nil,
        remainingItemCount: Int? = nil
    ) {
        self.items = items
        self.resourceVersion = resourceVersion
        self.continueToken = continueToken
        self.remainingItemCount = remainingItemCount
    }

    init(json: JSONValue) {
        self.items = (json["items"]?.arrayValue ?? []).map(KubeObject.init)
        self.resourceVersion = json[path: "metadata", "resourceVersion"]?.stringValue ?? ""
        let token = json[path: "metadata", "continue"]?.stringValue
        self.continueToken = (token?.isEmpty ?? true) ? nil : token
        self.remainingItemCount = json[path: "metadata", "remainingItemCount"]?.intValue
    }
}
