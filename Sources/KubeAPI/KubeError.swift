import Foundation

/// The API server's `Status` object, returned with every failed request (and as a watch `ERROR` event).
public struct Status: Codable, Sendable, Hashable {
    public var status: String?
    public var message: String?
    /// A machine-readable reason, e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`.
    public var reason: String?
    public var details: Details?
    public var code: Int?

    public struct Details: Codable, Sendable, Hashable {
        public var name: String?
        public var group: String?
        public var kind: String?
        public var uid: String?
        public var causes: [Cause]?
        public var retryAfterSeconds: Int?
    }

    /// One reason for an `Invalid` (or other) failure, e.g. a field that failed schema validation.
    public struct Cause: Codable, Sendable, Hashable {
        public var reason: String?
        public var message: String?
        /// The field path, e.g. `spec.host`.
        public var field: String?
    }

    public init(message: String?, reason: String?, code: Int?) {
        self.status = "Failure"
        self.message = message
        self.reason = reason
        self.code = code
    }
}

/// A failed Kubernetes API call, classified so callers can decide between retrying and reporting.
///
/// Match on ``code``: `catch let error as KubeError where error.code == .notFound`. ``isRetryable`` is the default
/// policy for a work queue (transport failures, server errors, throttling); `conflict` is left to the caller, since
/// a server-side apply conflict needs a decision (force or report) while an optimistic-lock conflict just needs a
/// fresh read.
public struct KubeError: Error, Sendable, CustomStringConvertible {
    /// The category of failure. Extensible: new categories can be added without breaking `switch`-free callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case notFound, alreadyExists, conflict, invalid, forbidden, unauthorized, tooManyRequests, gone
            case badRequest, timeout, serverError, transport, decoding
        }

        fileprivate let base: Base

        /// 404: the object (or the resource type itself) does not exist.
        public static let notFound = Code(base: .notFound)
        /// 409 `AlreadyExists`: create of a name that is taken.
        public static let alreadyExists = Code(base: .alreadyExists)
        /// 409 `Conflict`: stale resourceVersion, failed delete precondition, or a server-side apply field conflict.
        public static let conflict = Code(base: .conflict)
        /// 422: the object failed validation (schema, admission); see ``KubeError/causes``.
        public static let invalid = Code(base: .invalid)
        /// 403: authenticated, but RBAC does not allow this verb on this resource.
        public static let forbidden = Code(base: .forbidden)
        /// 401: the credentials were not accepted.
        public static let unauthorized = Code(base: .unauthorized)
        /// 429: throttled (API priority and fairness); wait ``KubeError/retryAfter``.
        public static let tooManyRequests = Code(base: .tooManyRequests)
        /// 410: the resourceVersion is too old (compacted). List again and watch from the new resourceVersion.
        public static let gone = Code(base: .gone)
        /// 400, 405, 406, 413, 415: the request itself is wrong; retrying will not help.
        public static let badRequest = Code(base: .badRequest)
        /// 504 or a server-side timeout.
        public static let timeout = Code(base: .timeout)
        /// Other 5xx.
        public static let serverError = Code(base: .serverError)
        /// No HTTP response: connection refused or reset, TLS failure, client-side deadline.
        public static let transport = Code(base: .transport)
        /// The response could not be understood.
        public static let decoding = Code(base: .decoding)

        public var description: String { self.base.rawValue }
    }

    public let code: Code
    /// The HTTP status code, when there was a response.
    public let httpStatus: Int?
    /// The server's message (or a description of the transport failure).
    public let message: String
    /// The server's `Status`, when there was one.
    public let status: Status?
    /// How long the server asked us to wait before retrying (429, 503, some 5xx).
    public let retryAfter: Duration?
    /// The underlying error for ``Code/transport`` and ``Code/decoding``.
    public let underlying: (any Error)?

    init(
        code: Code,
        httpStatus: Int? = nil,
        message: String,
        status: Status? = nil,
        retryAfter: Duration? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.httpStatus = httpStatus
        self.message = message
        self.status = status
        self.retryAfter = retryAfter
        self.underlying = underlying
    }

    /// The individual validation failures of an ``Code/invalid`` error (field and message).
    public var causes: [Status.Cause] { self.status?.details?.causes ?? [] }

    /// Whether retrying the same request later may succeed.
    public var isRetryable: Bool {
        switch self.code.base {
        case .tooManyRequests, .timeout, .serverError, .transport: return true
        default: return false
        }
    }

    public var description: String {
        var text = "Kubernetes API error (\(self.code)"
        if let httpStatus { text += ", HTTP \(httpStatus)" }
        text += "): \(self.message)"
        if let hint = self.hint { text += ". \(hint)" }
        return text
    }

    private var hint: String? {
        switch self.code.base {
        case .forbidden:
            return "Grant the identity in use the missing RBAC permission (a Role/ClusterRole and binding)"
        case .unauthorized:
            return "The credentials were rejected: check the kubeconfig user or the mounted service-account token"
        case .gone:
            return "The resourceVersion is too old: list again and watch from the list's resourceVersion"
        case .transport:
            return "Is the API server reachable at the configured address?"
        default:
            return nil
        }
    }

    /// Classifies a non-2xx response (or a watch `ERROR` event's `Status`).
    static func from(httpStatus: Int, status: Status?, body: String?, retryAfterHeader: String?) -> KubeError {
        let reason = status?.reason ?? ""
        let code: Code
        switch (httpStatus, reason) {
        case (_, "AlreadyExists"): code = .alreadyExists
        case (_, "NotFound"), (404, _): code = .notFound
        case (_, "Conflict"), (409, _): code = .conflict
        case (_, "Invalid"), (422, _): code = .invalid
        case (_, "Forbidden"), (403, _): code = .forbidden
        case (_, "Unauthorized"), (401, _): code = .unauthorized
        case (_, "TooManyRequests"), (429, _): code = .tooManyRequests
        case (_, "Expired"), (_, "Gone"), (410, _): code = .gone
        case (_, "Timeout"), (_, "ServerTimeout"), (504, _): code = .timeout
        case (500..., _): code = .serverError
        case (400..., _): code = .badRequest
        default: code = .serverError
        }
        var retryAfter: Duration?
        if let seconds = status?.details?.retryAfterSeconds {
            retryAfter = .seconds(seconds)
        } else if let header = retryAfterHeader, let seconds = Int(header.trimmingCharacters(in: .whitespaces)) {
            retryAfter = .seconds(seconds)
        }
        let message: String
        if let text = status?.message, !text.isEmpty {
            message = text
        } else if let body, !body.isEmpty {
            message = String(body.prefix(500))
        } else {
            message = "HTTP \(httpStatus)"
        }
        return KubeError(code: code, httpStatus: httpStatus, message: message, status: status, retryAfter: retryAfter)
    }

    static func transport(_ error: any Error, _ context: String) -> KubeError {
        KubeError(code: .transport, message: "\(context): \(error)", underlying: error)
    }

    static func decoding(_ error: any Error, _ context: String) -> KubeError {
        KubeError(code: .decoding, message: "could not decode \(context): \(error)", underlying: error)
    }

    static func usage(_ message: String) -> KubeError {
        KubeError(code: .badRequest, message: message)
    }
}
