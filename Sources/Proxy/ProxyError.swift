import NIOCore
import NIOHTTP1

/// Why the proxy answered a request itself instead of relaying the upstream's answer.
///
/// Every refusal carries a distinct status and a short, stable `reason` that is sent in the `X-Egress-Error` header,
/// logged, and counted in `egress_denials_total`, so an operator can tell "not allowed" from "upstream broken".
public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: HTTPResponseStatus
    /// A short kebab-case token (`not-allowed`, `private-address`, ...): the `X-Egress-Error` header value.
    public var reason: String
    /// Human readable detail; sent as the response body.
    public var message: String
    /// Whether the client connection must be closed after the refusal (framing is no longer trustworthy).
    public var closeConnection: Bool

    public init(_ status: HTTPResponseStatus, _ reason: String, _ message: String, closeConnection: Bool = false) {
        self.status = status
        self.reason = reason
        self.message = message
        self.closeConnection = closeConnection
    }

    public var description: String { "\(self.status.code) \(self.reason): \(self.message)" }
}

/// Errors of the proxy's own machinery (configuration, upstream connections), as a struct wrapping a private code
/// so new cases do not break callers.
public struct ProxyError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case connectTimeout
        case responseHeadersTimeout
        case idleTimeout
        case connectFailed
        case resolutionFailed
        case privateAddress
        case tlsConfiguration
        case certificateInvalid
        case tlsFailed
        case upstreamClosed
        case upstreamProtocol
        case poolExhausted
        case configuration
    }

    private let code: Code
    public let detail: String

    private init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public static func connectTimeout(_ detail: String) -> Self { .init(.connectTimeout, detail) }
    public static func responseHeadersTimeout(_ detail: String) -> Self { .init(.responseHeadersTimeout, detail) }
    public static func idleTimeout(_ detail: String) -> Self { .init(.idleTimeout, detail) }
    public static func connectFailed(_ detail: String) -> Self { .init(.connectFailed, detail) }
    public static func resolutionFailed(_ detail: String) -> Self { .init(.resolutionFailed, detail) }
    public static func privateAddress(_ detail: String) -> Self { .init(.privateAddress, detail) }
    public static func tlsConfiguration(_ detail: String) -> Self { .init(.tlsConfiguration, detail) }
    public static func certificateInvalid(_ detail: String) -> Self { .init(.certificateInvalid, detail) }
    public static func tlsFailed(_ detail: String) -> Self { .init(.tlsFailed, detail) }
    public static func upstreamClosed(_ detail: String) -> Self { .init(.upstreamClosed, detail) }
    public static func upstreamProtocol(_ detail: String) -> Self { .init(.upstreamProtocol, detail) }
    public static func poolExhausted(_ detail: String) -> Self { .init(.poolExhausted, detail) }
    public static func configuration(_ detail: String) -> Self { .init(.configuration, detail) }

    /// The `X-Egress-Error` reason reported to the client.
    public var reason: String {
        switch self.code {
        case .connectTimeout: "upstream-connect-timeout"
        case .responseHeadersTimeout: "upstream-response-timeout"
        case .idleTimeout: "upstream-idle-timeout"
        case .connectFailed: "upstream-connect-failed"
        case .resolutionFailed: "upstream-dns-failed"
        case .privateAddress: "private-address"
        case .tlsConfiguration: "upstream-tls-configuration"
        case .certificateInvalid: "upstream-certificate-invalid"
        case .tlsFailed: "upstream-tls-failed"
        case .upstreamClosed: "upstream-closed"
        case .upstreamProtocol: "upstream-protocol-error"
        case .poolExhausted: "upstream-pool-exhausted"
        case .configuration: "configuration"
        }
    }

    /// Timeouts are 504, everything else the upstream did wrong is 502.
    public var status: HTTPResponseStatus {
        switch self.code {
        case .connectTimeout, .responseHeadersTimeout, .idleTimeout: .gatewayTimeout
        case .poolExhausted: .serviceUnavailable
        default: .badGateway
        }
    }

    var isUpstreamClosed: Bool { self.code == .upstreamClosed }

    public var refusal: Refusal { Refusal(self.status, self.reason, self.detail) }

    public var description: String { "\(self.reason): \(self.detail)" }
}
