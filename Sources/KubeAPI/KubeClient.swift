import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP2
import NIOSSL
import Synchronization

/// Options for ``KubeClient/list(_:namespace:options:)``.
public struct ListOptions: Sendable {
    /// e.g. `app=egress-gateway,tier!=test`
    public var labelSelector: String?
    /// e.g. `metadata.name=foo`
    public var fieldSelector: String?
    /// Page size; the response then carries a ``ObjectList/continueToken`` if more items follow.
    public var limit: Int?
    public var continueToken: String?
    /// `nil` for a consistent read from etcd; `"0"` for any cached state.
    public var resourceVersion: String?
    /// Leave each object's `metadata.managedFields` out while parsing (for caches, which never read them).
    public var omittingManagedFields: Bool

    public init(
        labelSelector: String? = nil,
        fieldSelector: String? = nil,
        limit: Int? = nil,
        continueToken: String? = nil,
        resourceVersion: String? = nil,
        omittingManagedFields: Bool = false
    ) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continueToken = continueToken
        self.resourceVersion = resourceVersion
        self.omittingManagedFields = omittingManagedFields
    }
}

/// Conditions a delete must meet, so a delete never removes an object that was replaced meanwhile.
public struct Preconditions: Sendable, Hashable {
    public var uid: String?
    public var resourceVersion: String?

    public init(uid: String? = nil, resourceVersion: String? = nil) {
        self.uid = uid
        self.resourceVersion = resourceVersion
    }
}

public enum PropagationPolicy: String, Sendable {
    case foreground = "Foreground"
    case background = "Background"
    case orphan = "Orphan"
}

public enum PatchType: String, Sendable {
    case merge = "application/merge-patch+json"
    case json = "application/json-patch+json"
    case strategicMerge = "application/strategic-merge-patch+json"
}

/// A client for the Kubernetes API: the only place in the project that speaks HTTP to the API server.
///
/// One instance per process is enough (it pools connections); call ``shutdown()`` before it is released.
/// All methods throw ``KubeError``.
public final class KubeClient: Sendable {
    public let config: KubeConfig
    let http: HTTPClient
    let logger: Logger
    private let tokenSource: TokenSource?

    /// Deadline for the response head of ordinary requests.
    static let requestTimeout: TimeAmount = .seconds(60)
    /// A read timeout longer than any watch's server-side timeout: it only fires on a dead connection.
    static let readTimeout: TimeAmount = .seconds(660)
    static let maximumResponseSize = 256 * 1024 * 1024

    /// - Parameter connectionHealth: the HTTP/2 health check of the connection to the server (``ConnectionHealth``);
    ///   nil turns it off.
    public init(
        config: KubeConfig,
        logger: Logger = Logger(label: "KubeAPI"),
        connectionHealth: ConnectionHealth.Settings? = .default
    ) throws {
        self.config = config
        self.logger = logger
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = config.certificateAuthorityPEM {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
            }
            if let certificate = config.clientCertificatePEM {
                guard let key = config.clientKeyPEM else {
                    throw KubeConfigError(.invalidCredentials, "a client certificate is configured without its key")
                }
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            }
        } catch let error as KubeConfigError {
            throw error
        } catch {
            throw KubeConfigError(.invalidCredentials, "certificate or key is not valid PEM: \(error)")
        }
        if config.insecureSkipTLSVerify {
            tls.certificateVerification = .none
        }
        if case .tokenFile(let path) = config.credentials {
            self.tokenSource = TokenSource(path: path, refreshInterval: config.tokenRefreshInterval)
        } else {
            self.tokenSource = nil
        }
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            timeout: .init(connect: .seconds(10), read: Self.readTimeout)
        )
        configuration.httpVersion = .automatic
        if let connectionHealth {
            // AsyncHTTPClient's hook for the connection channel of each HTTP/2 connection, once its HTTP/2 handlers
            // are in place: the health check goes right after `NIOHTTP2Handler`, where it sees every frame.
            configuration.http2ConnectionDebugInitializer = { [logger] channel in
                channel.eventLoop.submit {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(
                        HTTP2HealthCheckHandler(settings: connectionHealth, logger: logger),
                        position: .after(try pipeline.handler(type: NIOHTTP2Handler.self))
                    )
                }
            }
        }
        self.http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: configuration,
            backgroundActivityLogger: logger
        )
    }

    /// Closes pooled connections. Required before the client is released.
    public func shutdown() async throws {
        try await self.http.shutdown()
    }

    // MARK: - Reads

    public func get(_ resource: Resource, name: String, namespace: String? = nil) async throws -> KubeObject {
        let path = try self.objectPath(resource, namespace: namespace, name: name)
        return KubeObject(try await self.send(.GET, path))
    }

    /// One page of objects (all of them unless ``ListOptions/limit`` is set).
    /// - Parameter namespace: `nil` lists across all namespaces.
    public func list(
        _ resource: Resource,
        namespace: String? = nil,
        options: ListOptions = ListOptions()
    )
        async throws -> ObjectList
    {
        var query: [(String, String)] = []
        if let value = options.labelSelector { query.append(("labelSelector", value)) }
        if let value = options.fieldSelector { query.append(("fieldSelector", value)) }
        if let value = options.limit { query.append(("limit", String(value))) }
        if let value = options.continueToken { query.append(("continue", value)) }
        if let value = options.resourceVersion { query.append(("resourceVersion", value)) }
        let omission = options.omittingManagedFields ? JSONValue.Omission.managedFieldsOfListedItems : nil
        let path = resource.path(namespace: namespace)
        let json = try await self.send(.GET, path, query: query, bodyData: nil, omitting: omission)
        var result = ObjectList(json: json)
        // List items carry no apiVersion/kind; fill them in so every object is self-describing.
        result.items = result.items.map { self.withTypeMeta($0, resource) }
        return result
    }

    /// Every object, fetched page by page (`pageSize` per request) from one consistent snapshot; if the snapshot
    /// expires between pages, in one request more (``ListPager``).
    public func listAll(
        _ resource: Resource,
        namespace: String? = nil,
        labelSelector: String? = nil,
        fieldSelector: String? = nil,
        pageSize: Int = 500,
        omittingManagedFields: Bool = false
    ) async throws -> ObjectList {
        let pager = ListPager(logger: self.logger) { options in
            try await self.list(resource, namespace: namespace, options: options)
        }
        let options = ListOptions(
            labelSelector: labelSelector,
            fieldSelector: fieldSelector,
            limit: pageSize,
            omittingManagedFields: omittingManagedFields
        )
        return try await pager.listAll(options)
    }

    // MARK: - Writes

    /// Creates `object`; its namespace comes from `metadata.namespace` unless given.
    public func create(
        _ resource: Resource,
        _ object: KubeObject,
        namespace: String? = nil
    ) async throws
        -> KubeObject
    {
        let namespace = namespace ?? object.namespace
        try self.requireNamespace(resource, namespace)
        let body = self.withTypeMeta(object, resource)
        return KubeObject(try await self.send(.POST, resource.path(namespace: namespace), body: body.json))
    }

    /// Creates through a subresource of an existing object, e.g. `serviceaccounts/NAME/token` (TokenRequest) or
    /// `pods/NAME/eviction`.
    public func create(
        _ resource: Resource,
        _ object: KubeObject,
        namespace: String?,
        subresourceOf name: String,
        subresource: String
    ) async throws -> KubeObject {
        let path = try self.objectPath(resource, namespace: namespace, name: name, subresource: subresource)
        return KubeObject(try await self.send(.POST, path, body: object.json))
    }

    /// Replaces `object` (PUT); fails with ``KubeError/Code/conflict`` if its resourceVersion is stale.
    public func replace(
        _ resource: Resource,
        _ object: KubeObject,
        subresource: String? = nil
    ) async throws
        -> KubeObject
    {
        let path = try self.objectPath(resource, object, subresource: subresource)
        return KubeObject(try await self.send(.PUT, path, body: self.withTypeMeta(object, resource).json))
    }

    /// `replace`, recording `fieldManager` and returning only the written object's resourceVersion (for large
    /// objects, whose response body would cost more to decode than the caller needs).
    public func replaceReturningVersion(
        _ resource: Resource,
        _ object: KubeObject,
        fieldManager: String
    ) async throws -> String {
        let path = try self.objectPath(resource, object)
        return try await self.sendReturningVersion(
            .PUT,
            path,
            query: [("fieldManager", fieldManager)],
            bodyData: try Self.data(self.withTypeMeta(object, resource).json),
            contentType: "application/json"
        )
    }

    /// Server-side apply: `object` is the complete intent of `fieldManager`; fields it owned before and no longer
    /// sets are removed. With `force: false` a field owned by another manager fails with
    /// ``KubeError/Code/conflict``; `force: true` takes the field over.
    public func apply(
        _ resource: Resource,
        _ object: KubeObject,
        fieldManager: String,
        force: Bool = false,
        subresource: String? = nil
    ) async throws -> KubeObject {
        let path = try self.objectPath(resource, object, subresource: subresource)
        // JSON is YAML, so the apply patch is sent as JSON.
        return KubeObject(
            try await self.send(
                .PATCH,
                path,
                query: [("fieldManager", fieldManager), ("force", force ? "true" : "false")],
                body: self.withTypeMeta(object, resource).json,
                contentType: "application/apply-patch+yaml"
            )
        )
    }

    /// Server-side apply of an object already serialized as JSON, `apiVersion` and `kind` included. For large objects
    /// (an allow-list of thousands of hosts), which a caller would otherwise parse only for this call to encode again.
    /// Returns the written object's resourceVersion: its body, as large as the object, is not decoded.
    @discardableResult
    public func apply(
        _ resource: Resource,
        name: String,
        namespace: String?,
        json: Data,
        fieldManager: String,
        force: Bool = false
    ) async throws -> String {
        let path = try self.objectPath(resource, namespace: namespace, name: name)
        return try await self.sendReturningVersion(
            .PATCH,
            path,
            query: [("fieldManager", fieldManager), ("force", force ? "true" : "false")],
            bodyData: json,
            contentType: "application/apply-patch+yaml"
        )
    }

    /// Server-side apply of the `status` subresource (`object` carries the status the manager owns).
    public func applyStatus(
        _ resource: Resource,
        _ object: KubeObject,
        fieldManager: String,
        force: Bool = false
    )
        async throws -> KubeObject
    {
        try await self.apply(resource, object, fieldManager: fieldManager, force: force, subresource: "status")
    }

    public func patch(
        _ resource: Resource,
        name: String,
        namespace: String? = nil,
        patch: JSONValue,
        type: PatchType = .merge,
        subresource: String? = nil,
        fieldManager: String? = nil
    ) async throws -> KubeObject {
        let path = try self.objectPath(resource, namespace: namespace, name: name, subresource: subresource)
        var query: [(String, String)] = []
        if let fieldManager { query.append(("fieldManager", fieldManager)) }
        return KubeObject(try await self.send(.PATCH, path, query: query, body: patch, contentType: type.rawValue))
    }

    /// Deletes an object. A failed precondition is ``KubeError/Code/conflict``; a missing object is
    /// ``KubeError/Code/notFound`` (often fine for callers: the goal state is reached).
    public func delete(
        _ resource: Resource,
        name: String,
        namespace: String? = nil,
        preconditions: Preconditions? = nil,
        propagationPolicy: PropagationPolicy? = nil
    ) async throws {
        let path = try self.objectPath(resource, namespace: namespace, name: name)
        var options: JSONValue = ["apiVersion": "v1", "kind": "DeleteOptions"]
        if let preconditions {
            var value: JSONValue = [:]
            if let uid = preconditions.uid { value["uid"] = .string(uid) }
            if let resourceVersion = preconditions.resourceVersion {
                value["resourceVersion"] = .string(resourceVersion)
            }
            options["preconditions"] = value
        }
        if let propagationPolicy { options["propagationPolicy"] = .string(propagationPolicy.rawValue) }
        _ = try await self.send(.DELETE, path, body: options)
    }

    // MARK: - Plumbing

    enum Method: String, Sendable {
        case GET, POST, PUT, PATCH, DELETE
    }

    func objectPath(_ resource: Resource, _ object: KubeObject, subresource: String? = nil) throws -> String {
        guard let name = object.name, !name.isEmpty else {
            throw KubeError.usage("the \(resource.kind) has no metadata.name")
        }
        return try self.objectPath(resource, namespace: object.namespace, name: name, subresource: subresource)
    }

    func objectPath(
        _ resource: Resource,
        namespace: String?,
        name: String,
        subresource: String? = nil
    ) throws
        -> String
    {
        try self.requireNamespace(resource, namespace)
        return resource.path(namespace: namespace, name: name, subresource: subresource)
    }

    private func requireNamespace(_ resource: Resource, _ namespace: String?) throws {
        if resource.namespaced && (namespace ?? "").isEmpty {
            throw KubeError.usage("\(resource) is namespaced: a namespace is required")
        }
    }

    private func withTypeMeta(_ object: KubeObject, _ resource: Resource) -> KubeObject {
        var object = object
        if object.apiVersion == nil { object["apiVersion"] = .string(resource.apiVersion) }
        if object.kind == nil { object["kind"] = .string(resource.kind) }
        return object
    }

    /// Sends a request and returns the JSON body of a 2xx response; anything else becomes a ``KubeError``.
    func send(
        _ method: Method,
        _ path: String,
        query: [(String, String)] = [],
        body: JSONValue? = nil,
        contentType: String = "application/json"
    ) async throws -> JSONValue {
        try await self.send(method, path, query: query, bodyData: try body.map(Self.data), contentType: contentType)
    }

    func send(
        _ method: Method,
        _ path: String,
        query: [(String, String)] = [],
        bodyData: Data?,
        contentType: String = "application/json",
        omitting omission: JSONValue.Omission? = nil
    ) async throws -> JSONValue {
        let body = try await self.send(
            method,
            path,
            query: query,
            bodyData: bodyData,
            contentType: contentType
        ) { bytes in try bytes.withUnsafeReadableBytes { try JSONValue(parsing: $0, omitting: omission) } }
        return body ?? .null
    }

    /// `send`, decoding nothing of the response but `metadata.resourceVersion`.
    func sendReturningVersion(
        _ method: Method,
        _ path: String,
        query: [(String, String)] = [],
        bodyData: Data?,
        contentType: String
    ) async throws -> String {
        // Parsed with `JSONValue(parsing:)`: `JSONDecoder` scanned a 600 KB Corefile response several times slower.
        let written = try await self.send(
            method,
            path,
            query: query,
            bodyData: bodyData,
            contentType: contentType
        ) { bytes in try bytes.withUnsafeReadableBytes { try JSONValue(parsing: $0) } }
        return written?[path: "metadata", "resourceVersion"]?.stringValue ?? ""
    }

    /// The body of a 2xx response, decoded (nil if empty); anything else becomes a ``KubeError``.
    private func send<Body>(
        _ method: Method,
        _ path: String,
        query: [(String, String)],
        bodyData: Data?,
        contentType: String,
        decode: (ByteBuffer) throws -> Body
    ) async throws -> Body? {
        let response = try await self.execute(method, path, query: query, bodyData: bodyData, contentType: contentType)
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: Self.maximumResponseSize)
        } catch {
            throw self.mapTransportError(error, "\(method) \(path)")
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            throw Self.error(for: response, body: bytes)
        }
        if bytes.readableBytes == 0 { return nil }
        do {
            return try decode(bytes)
        } catch {
            throw KubeError.decoding(error, "the response to \(method) \(path)")
        }
    }

    static func data(_ body: JSONValue) throws -> Data {
        do {
            return Data(try body.compactJSON())
        } catch {
            throw KubeError.usage("the request body is not valid JSON: \(error)")
        }
    }

    /// Starts a request; the caller consumes (streams) the body.
    /// - Parameter accept: e.g. `application/json;as=Table;v=v1;g=meta.k8s.io` for the server's own printing.
    func execute(
        _ method: Method,
        _ path: String,
        query: [(String, String)] = [],
        bodyData: Data? = nil,
        contentType: String = "application/json",
        accept: String = "application/json"
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: self.config.server + path + Self.queryString(query))
        request.method = .init(rawValue: method.rawValue)
        request.headers.add(name: "Accept", value: accept)
        request.headers.add(name: "User-Agent", value: "egress-operator-kubeapi")
        switch self.config.credentials {
        case .none:
            break
        case .bearerToken(let token):
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        case .tokenFile:
            if let token = try self.tokenSource?.token() {
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
        case .basic(let username, let password):
            let encoded = Data("\(username):\(password)".utf8).base64EncodedString()
            request.headers.add(name: "Authorization", value: "Basic \(encoded)")
        }
        if let bodyData {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(data: bodyData))
        }
        self.logger.trace("request", metadata: ["method": "\(method)", "path": "\(path)"])
        do {
            return try await self.http.execute(request, deadline: .now() + Self.requestTimeout, logger: self.logger)
        } catch {
            throw self.mapTransportError(error, "\(method) \(self.config.server)\(path)")
        }
    }

    func mapTransportError(_ error: any Error, _ context: String) -> any Error {
        if error is KubeError || error is CancellationError { return error }
        if Task.isCancelled { return CancellationError() }
        return KubeError.transport(error, context)
    }

    static func error(for response: HTTPClientResponse, body: ByteBuffer) -> KubeError {
        let data = Data(buffer: body)
        let status = try? JSONDecoder().decode(Status.self, from: data)
        return KubeError.from(
            httpStatus: Int(response.status.code),
            status: status?.reason == nil && status?.message == nil ? nil : status,
            body: String(decoding: data, as: UTF8.self),
            retryAfterHeader: response.headers.first(name: "Retry-After")
        )
    }

    static func queryString(_ query: [(String, String)]) -> String {
        if query.isEmpty { return "" }
        return "?"
            + query.map { name, value in "\(escapeQuery(name))=\(escapeQuery(value))" }.joined(separator: "&")
    }

    private static let unreserved: CharacterSet = {
        var set = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        set.insert(charactersIn: "-._~")
        return set
    }()

    static func escapeQuery(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }
}

/// A bearer token read from a file, re-read after `refreshInterval` so rotated service-account tokens are picked up.
/// If a re-read fails, the last good token is kept (the kubelet replaces the file atomically, so that is rare).
final class TokenSource: Sendable {
    let path: String
    let refreshInterval: Duration
    private let cached: Mutex<(token: String, readAt: ContinuousClock.Instant)?> = Mutex(nil)

    init(path: String, refreshInterval: Duration) {
        self.path = path
        self.refreshInterval = refreshInterval
    }

    func token() throws -> String {
        let now = ContinuousClock.now
        return try self.cached.withLock { cached throws -> String in
            if let current = cached, current.readAt.duration(to: now) < self.refreshInterval {
                return current.token
            }
            do {
                let text = String(decoding: try KubeConfig.readFile(self.path, what: "token file"), as: UTF8.self)
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                cached = (token, now)
                return token
            } catch {
                if let current = cached { return current.token }
                throw KubeError(code: .unauthorized, message: "cannot read the token: \(error)")
            }
        }
    }
}
