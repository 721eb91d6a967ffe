import Foundation
import Yams

/// Where and how to reach the API server: address, TLS trust, client identity and credentials.
///
/// Load it with ``fromEnvironment(_:)`` (what a process usually wants), ``inCluster(directory:environment:)``
/// or ``load(kubeconfigPaths:context:)``, or build one directly.
public struct KubeConfig: Sendable {
    public enum Credentials: Sendable, Equatable {
        case none
        case bearerToken(String)
        /// A token read from a file and re-read periodically: projected service-account tokens rotate.
        case tokenFile(path: String)
        case basic(username: String, password: String)
    }

    /// The base URL, e.g. `https://127.0.0.1:6443` (no trailing slash).
    public var server: String
    /// PEM certificates trusted for the server; `nil` means the system trust store.
    public var certificateAuthorityPEM: [UInt8]?
    /// PEM client certificate (chain) and key, for certificate authentication.
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var credentials: Credentials
    /// The namespace of the context (or the pod's namespace in a cluster); `default` if none is set.
    public var namespace: String
    /// How often a ``Credentials/tokenFile(path:)`` is re-read.
    public var tokenRefreshInterval: Duration

    public init(
        server: String,
        certificateAuthorityPEM: [UInt8]? = nil,
        clientCertificatePEM: [UInt8]? = nil,
        clientKeyPEM: [UInt8]? = nil,
        insecureSkipTLSVerify: Bool = false,
        credentials: Credentials = .none,
        namespace: String = "default",
        tokenRefreshInterval: Duration = .seconds(60)
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.credentials = credentials
        self.namespace = namespace
        self.tokenRefreshInterval = tokenRefreshInterval
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The configuration a process normally wants: `$KUBECONFIG` if set, else the in-cluster service account if
    /// `KUBERNETES_SERVICE_HOST` is set, else `~/.kube/config`.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws
        -> KubeConfig
    {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try load(kubeconfigPaths: list.split(separator: ":").map(String.init))
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try inCluster(environment: environment)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let defaultPath = "\(home)/.kube/config"
        if FileManager.default.fileExists(atPath: defaultPath) {
            return try load(kubeconfigPaths: [defaultPath])
        }
        throw KubeConfigError(
            .noConfiguration,
            "no Kubernetes configuration: KUBECONFIG is not set, KUBERNETES_SERVICE_HOST is not set (not in a pod), "
                + "and \(defaultPath) does not exist"
        )
    }

    /// The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, and `token`, `ca.crt`, `namespace` in
    /// `directory`. The token is re-read every ``tokenRefreshInterval`` (bound tokens rotate about hourly).
    public static func inCluster(
        directory: String = serviceAccountDirectory,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw KubeConfigError(
                .notInCluster,
                "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"
            )
        }
        let tokenPath = "\(directory)/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubeConfigError(
                .fileNotFound,
                "service-account token \(tokenPath) is missing: is automountServiceAccountToken disabled?"
            )
        }
        let ca = try readFile("\(directory)/ca.crt", what: "cluster CA certificate")
        let namespace = (try? String(contentsOfFile: "\(directory)/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeConfig(
            server: "https://\(hostPart):\(port)",
            certificateAuthorityPEM: ca,
            credentials: .tokenFile(path: tokenPath),
            namespace: (namespace?.isEmpty ?? true) ? "default" : namespace!
        )
    }

    /// A kubeconfig file (or several, merged as kubectl does: the first file to define a name wins).
    /// - Parameter context: the context to use; `nil` for the `current-context`.
    public static func load(kubeconfigPaths paths: [String], context: String? = nil) throws -> KubeConfig {
        var merged = KubeconfigFile.Resolved()
        var found = false
        for path in paths where !path.isEmpty {
            guard FileManager.default.fileExists(atPath: path) else { continue }
            found = true
            let text = String(decoding: try readFile(path, what: "kubeconfig"), as: UTF8.self)
            let file = try KubeconfigFile.parse(text, path: path)
            merged.merge(file.resolved(relativeTo: (path as NSString).deletingLastPathComponent))
        }
        guard found else {
            throw KubeConfigError(.fileNotFound, "kubeconfig not found: \(paths.joined(separator: ":"))")
        }
        return try merged.config(context: context, source: paths.joined(separator: ":"))
    }

    /// A kubeconfig given as text; relative file references resolve against `baseDirectory`.
    public static func parse(
        kubeconfig text: String,
        baseDirectory: String = ".",
        context: String? = nil
    ) throws
        -> KubeConfig
    {
        let file = try KubeconfigFile.parse(text, path: "kubeconfig")
        var merged = KubeconfigFile.Resolved()
        merged.merge(file.resolved(relativeTo: baseDirectory))
        return try merged.config(context: context, source: "kubeconfig")
    }

    static func readFile(_ path: String, what: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw KubeConfigError(.fileNotFound, "\(what) \(path) does not exist")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KubeConfigError(.unreadable, "\(what) \(path) is not readable")
        }
        return Array(data)
    }
}

/// A missing or broken configuration: the message names the file or field to fix.
public struct KubeConfigError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case noConfiguration, notInCluster, fileNotFound, unreadable, malformed, missingContext, missingCluster
            case missingUser, unsupportedAuthentication, invalidCredentials
        }
        fileprivate let base: Base

        public static let noConfiguration = Code(base: .noConfiguration)
        public static let notInCluster = Code(base: .notInCluster)
        public static let fileNotFound = Code(base: .fileNotFound)
        public static let unreadable = Code(base: .unreadable)
        /// Not YAML, wrong structure, bad base64, missing `server`.
        public static let malformed = Code(base: .malformed)
        public static let missingContext = Code(base: .missingContext)
        public static let missingCluster = Code(base: .missingCluster)
        public static let missingUser = Code(base: .missingUser)
        /// `exec` and `auth-provider` plugins are not supported.
        public static let unsupportedAuthentication = Code(base: .unsupportedAuthentication)
        /// A certificate or key that is not valid PEM.
        public static let invalidCredentials = Code(base: .invalidCredentials)

        public var description: String { self.base.rawValue }
    }

    public let code: Code
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Kubernetes configuration error (\(self.code)): \(self.message)" }
}

// MARK: - kubeconfig file format

struct KubeconfigFile: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster?
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }

    struct NamedUser: Decodable {
        var name: String
        var user: User?
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var username: String?
        var password: String?
        var exec: Plugin?
        var authProvider: Plugin?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, username, password, exec
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }

    struct Plugin: Decodable {
        var command: String?
        var name: String?
    }

    struct NamedContext: Decodable {
        var name: String
        var context: Context?
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    var clusters: [NamedCluster]?
    var users: [NamedUser]?
    var contexts: [NamedContext]?
    var currentContext: String?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }

    static func parse(_ text: String, path: String) throws -> KubeconfigFile {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return KubeconfigFile()
        }
        do {
            return try YAMLDecoder().decode(KubeconfigFile.self, from: text)
        } catch {
            throw KubeConfigError(.malformed, "\(path) is not a valid kubeconfig: \(error)")
        }
    }

    /// Relative file references are relative to the file that contains them, as in kubectl.
    func resolved(relativeTo directory: String) -> Resolved {
        func absolute(_ path: String?) -> String? {
            guard let path, !path.isEmpty else { return nil }
            return path.hasPrefix("/") ? path : "\(directory)/\(path)"
        }
        var result = Resolved()
        result.currentContext = self.currentContext.flatMap { $0.isEmpty ? nil : $0 }
        for entry in self.clusters ?? [] where result.clusters[entry.name] == nil {
            var cluster = entry.cluster ?? Cluster()
            cluster.certificateAuthority = absolute(cluster.certificateAuthority)
            result.clusters[entry.name] = cluster
        }
        for entry in self.users ?? [] where result.users[entry.name] == nil {
            var user = entry.user ?? User()
            user.tokenFile = absolute(user.tokenFile)
            user.clientCertificate = absolute(user.clientCertificate)
            user.clientKey = absolute(user.clientKey)
            result.users[entry.name] = user
        }
        for entry in self.contexts ?? [] where result.contexts[entry.name] == nil {
            result.contexts[entry.name] = entry.context ?? Context()
        }
        return result
    }

    struct Resolved {
        var clusters: [String: Cluster] = [:]
        var users: [String: User] = [:]
        var contexts: [String: Context] = [:]
        var currentContext: String?

        mutating func merge(_ other: Resolved) {
            self.clusters.merge(other.clusters) { first, _ in first }
            self.users.merge(other.users) { first, _ in first }
            self.contexts.merge(other.contexts) { first, _ in first }
            if self.currentContext == nil { self.currentContext = other.currentContext }
        }

        func config(context requested: String?, source: String) throws -> KubeConfig {
            guard let contextName = requested ?? self.currentContext else {
                throw KubeConfigError(
                    .missingContext,
                    "\(source) sets no current-context; set one (kubectl config use-context NAME) or pass a context"
                )
            }
            guard let context = self.contexts[contextName] else {
                throw KubeConfigError(.missingContext, "context \"\(contextName)\" is not defined in \(source)")
            }
            guard let clusterName = context.cluster, let cluster = self.clusters[clusterName] else {
                throw KubeConfigError(
                    .missingCluster,
                    "context \"\(contextName)\" refers to cluster \"\(context.cluster ?? "")\", "
                        + "which is not defined in \(source)"
                )
            }
            guard let server = cluster.server, !server.isEmpty else {
                throw KubeConfigError(.malformed, "cluster \"\(clusterName)\" in \(source) has no server")
            }
            var user = User()
            if let userName = context.user, !userName.isEmpty {
                guard let found = self.users[userName] else {
                    throw KubeConfigError(
                        .missingUser,
                        "context \"\(contextName)\" refers to user \"\(userName)\", which is not defined in \(source)"
                    )
                }
                user = found
            }
            if user.exec != nil || user.authProvider != nil {
                throw KubeConfigError(
                    .unsupportedAuthentication,
                    "user \"\(context.user ?? "")\" in \(source) uses an exec or auth-provider plugin, which is not "
                        + "supported; use a token, token file or client certificate"
                )
            }

            let credentials: KubeConfig.Credentials
            if let token = user.token, !token.isEmpty {
                credentials = .bearerToken(token)
            } else if let tokenFile = user.tokenFile {
                credentials = .tokenFile(path: tokenFile)
            } else if let username = user.username, let password = user.password {
                credentials = .basic(username: username, password: password)
            } else {
                credentials = .none
            }
            return KubeConfig(
                server: server,
                certificateAuthorityPEM: try Self.bytes(
                    data: cluster.certificateAuthorityData,
                    file: cluster.certificateAuthority,
                    field: "certificate-authority"
                ),
                clientCertificatePEM: try Self.bytes(
                    data: user.clientCertificateData,
                    file: user.clientCertificate,
                    field: "client-certificate"
                ),
                clientKeyPEM: try Self.bytes(data: user.clientKeyData, file: user.clientKey, field: "client-key"),
                insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
                credentials: credentials,
                namespace: context.namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
            )
        }

        /// `*-data` (base64) wins over the file reference, as in kubectl.
        private static func bytes(data: String?, file: String?, field: String) throws -> [UInt8]? {
            if let data, !data.isEmpty {
                let compact = data.filter { !$0.isWhitespace }
                guard let decoded = Data(base64Encoded: compact) else {
                    throw KubeConfigError(.malformed, "\(field)-data is not valid base64")
                }
                return Array(decoded)
            }
            if let file {
                return try KubeConfig.readFile(file, what: field)
            }
            return nil
        }
    }
}
