import NIOCore
import Testing

@testable import Proxy

extension ClientRequestHead {
    /// The head of `text` (a request line, field lines and a blank line) as the proxy's own parser reads it.
    static func parsing(_ text: String) throws -> ClientRequestHead {
        var parser = ClientRequestParser(maximumHeadBytes: 64 * 1024, maximumHeaderCount: 100)
        var buffer = ByteBuffer(string: text)
        var head: ClientRequestHead? = nil
        while head == nil, let part = try parser.next(&buffer) {
            if case .head(let parsed) = part { head = parsed }
        }
        return try #require(head)
    }

    /// A head with these fields, in this order.
    static func parsing(
        _ method: String = "GET",
        _ target: String = "/",
        minor: Int = 1,
        fields: [(String, String)]
    ) throws -> ClientRequestHead {
        try Self.parsing(
            "\(method) \(target) HTTP/1.\(minor)\r\n" + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        )
    }
}
