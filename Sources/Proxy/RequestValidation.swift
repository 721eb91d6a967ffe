import NIOHTTP1

/// How a request body is framed, decided once from the (validated) request head.
public enum BodyFraming: Sendable, Hashable {
    case none
    case contentLength(Int)
    case chunked
}

/// Pure checks of a request head that must pass before anything is sent upstream: request smuggling defences
/// (Content-Length together with Transfer-Encoding, differing duplicate Content-Length values, unknown transfer
/// codings), `CONNECT`, and the HTTP version.
public enum RequestValidation {
    /// What the fields of one head say about its body, gathered one field at a time as the parser reads them.
    struct FramingFields {
        enum ContentLength: Equatable {
            case absent
            case value(Int)
            /// Not a decimal number, or values that differ.
            case invalid
        }

        var contentLength = ContentLength.absent
        /// Whether there is a Transfer-Encoding field (the upstream encoder frames the body as chunked).
        var transferEncoding = false
        /// The `chunked` items of the Transfer-Encoding fields, and whether there was any other coding.
        var chunkedItems = 0
        var otherCodings = false
        var expectsContinue = false

        mutating func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
            switch name.count {
            case 17 where name.equalsIgnoringASCIICase("transfer-encoding"):
                self.transferEncoding = true
                HeaderSanitizer.forEachToken(value) { coding in
                    if coding.equalsIgnoringASCIICase("chunked") {
                        self.chunkedItems += 1
                    } else {
                        self.otherCodings = true
                    }
                }
            case 14 where name.equalsIgnoringASCIICase("content-length"):
                // A list of equal values is one value (RFC 9110 §8.6); an empty item is not a number.
                HeaderSanitizer.forEachListItem(value) { item in
                    switch (HTTP1Syntax.decimal(item), self.contentLength) {
                    case (let parsed?, .absent): self.contentLength = .value(parsed)
                    case (let parsed?, .value(let previous)) where parsed == previous: break
                    default: self.contentLength = .invalid
                    }
                }
            case 6 where name.equalsIgnoringASCIICase("expect"):
                if value.equalsIgnoringASCIICase("100-continue") { self.expectsContinue = true }
            default:
                break
            }
        }
    }

    static func validate(_ head: ClientRequestHead) -> Result<BodyFraming, Refusal> {
        let (version, fields) = (head.version, head.framing)
        if case .CONNECT = head.method {
            return .failure(
                Refusal(.methodNotAllowed, "connect-not-allowed", "CONNECT tunnels are not supported; send plain HTTP")
            )
        }
        guard version.major == 1, version.minor <= 1 else {
            return .failure(
                Refusal(.httpVersionNotSupported, "unsupported-version", "only HTTP/1.x", closeConnection: true)
            )
        }
        if fields.transferEncoding {
            if fields.contentLength != .absent {
                return .failure(
                    Refusal(
                        .badRequest,
                        "content-length-and-transfer-encoding",
                        "a request must not carry both Content-Length and Transfer-Encoding",
                        closeConnection: true
                    )
                )
            }
            guard fields.chunkedItems == 1, !fields.otherCodings, version.minor == 1 else {
                return .failure(
                    Refusal(
                        .badRequest,
                        "unsupported-transfer-encoding",
                        "only \"Transfer-Encoding: chunked\" is accepted",
                        closeConnection: true
                    )
                )
            }
            return .success(.chunked)
        }
        switch fields.contentLength {
        case .absent, .value(0):
            return .success(.none)
        case .value(let length):
            return .success(.contentLength(length))
        case .invalid:
            return .failure(
                Refusal(
                    .badRequest,
                    "bad-content-length",
                    "Content-Length is invalid or repeated with different values",
                    closeConnection: true
                )
            )
        }
    }

    /// Whether the client asked for `100 Continue` before sending its body.
    static func expectsContinue(_ head: ClientRequestHead) -> Bool {
        head.version.minor >= 1 && head.framing.expectsContinue
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names, `Keep-Alive`, `Proxy-*`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade`, and `Expect` (which the proxy answers itself). The wire encoders
/// (`ClientResponseEncoder`, `UpstreamRequestEncoder`) drop them in both directions as they write a head.
public enum HeaderSanitizer {
    /// Which headers of one message are hop-by-hop: the fixed names, plus the ones its `Connection` header lists.
    struct HopByHop {
        /// Extra names listed by `Connection` (lowercase).
        private var named: Set<String> = []
        /// Whether `Connection` lists no names besides the fixed hop-by-hop ones.
        var isEmptyOfNamed: Bool { self.named.isEmpty }

        /// A `Connection` value: each header it names is hop-by-hop too; `close` and `keep-alive` are what it says
        /// about the connection.
        mutating func listConnection(_ value: UnsafeRawBufferPointer) -> (close: Bool, keepAlive: Bool) {
            var said = (close: false, keepAlive: false)
            HeaderSanitizer.forEachToken(value) { token in
                if token.equalsIgnoringASCIICase("close") {
                    said.close = true
                } else if token.equalsIgnoringASCIICase("keep-alive") {
                    said.keepAlive = true
                } else {
                    self.list(token)
                }
            }
            return said
        }

        /// A token of the `Connection` header: the header it names is hop-by-hop too. A name is only made for a
        /// token that is not hop-by-hop already, so the usual lone `keep-alive` costs nothing.
        ///
        /// Naming `Content-Length` (which no sender may, RFC 9110 7.6.1) changes nothing: the sender's lines are
        /// dropped anyway, and the encoders write the length the proxy frames the message by themselves. Were it
        /// dropped with nothing written, a request's body would reach the upstream as a next request no check had
        /// seen (request smuggling).
        private mutating func list(_ token: UnsafeRawBufferPointer) {
            if !HeaderSanitizer.isHopByHop(token) {
                self.named.insert(String(decoding: token, as: UTF8.self).lowercased())
            }
        }

        func drops(_ name: UnsafeRawBufferPointer) -> Bool {
            HeaderSanitizer.isHopByHop(name)
                || (!self.named.isEmpty && self.named.contains(String(decoding: name, as: UTF8.self).lowercased()))
        }
    }

    /// The comma-separated tokens of a list value (`Connection: close, x-a`), trimmed, empty ones skipped; scanned
    /// as bytes.
    static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        Self.forEachListItem(value) { item in
            if !item.isEmpty { body(item) }
        }
    }

    /// Every comma-separated item of a list value, trimmed of spaces and tabs, empty ones included.
    static func forEachListItem(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while true {
            let end = value[start...].firstIndex(of: UInt8(ascii: ",")) ?? value.count
            var low = start
            var high = end
            while low < high, value[low] == UInt8(ascii: " ") || value[low] == UInt8(ascii: "\t") { low += 1 }
            while high > low, value[high - 1] == UInt8(ascii: " ") || value[high - 1] == UInt8(ascii: "\t") {
                high -= 1
            }
            body(UnsafeRawBufferPointer(rebasing: value[low..<high]))
            guard end < value.count else { return }
            start = end + 1
        }
    }

    /// Fields a trailer section must not carry (RFC 9110, 6.5.1), which the proxy drops rather than relays: the
    /// hop-by-hop ones, and the framing and routing ones a recipient that merges trailers into the header section
    /// would otherwise take for the message's own (`Content-Length`, `Host`).
    static func isForbiddenInTrailers(_ name: UnsafeRawBufferPointer) -> Bool {
        Self.isHopByHop(name) || Self.isContentLength(name) || (name.count == 4 && name.equalsIgnoringASCIICase("host"))
    }

    /// The sender's `Content-Length` lines are never relayed: each encoder writes one canonical line itself.
    static func isContentLength(_ name: UnsafeRawBufferPointer) -> Bool {
        name.count == 14 && name.equalsIgnoringASCIICase("content-length")
    }

    /// Compared byte by byte, ignoring ASCII case, so the common (not hop-by-hop) header costs no allocation.
    static func isHopByHop(_ name: UnsafeRawBufferPointer) -> Bool {
        // Most names are ruled out by their length and first byte alone.
        let count = name.count
        if count >= 6, name[0] | 0x20 == UInt8(ascii: "p"),
            UnsafeRawBufferPointer(rebasing: name[..<6]).equalsIgnoringASCIICase("proxy-")
        {
            return true
        }
        switch count {
        case 2: return name.equalsIgnoringASCIICase("te")
        case 6: return name.equalsIgnoringASCIICase("expect")
        case 7: return name.equalsIgnoringASCIICase("trailer") || name.equalsIgnoringASCIICase("upgrade")
        case 10: return name.equalsIgnoringASCIICase("connection") || name.equalsIgnoringASCIICase("keep-alive")
        case 17: return name.equalsIgnoringASCIICase("transfer-encoding")
        default: return false
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes spell `lowercase` (given in lowercase ASCII), ignoring ASCII case. The lengths are
    /// compared first, then eight bytes at a time (header names are mostly 8 to 17 bytes; the last word overlaps
    /// the one before it), shorter ones byte by byte.
    func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        let count = lowercase.utf8CodeUnitCount
        guard self.count == count else { return false }
        let expected = UnsafeRawPointer(lowercase.utf8Start)
        guard count >= 8, let base = self.baseAddress else {
            for index in 0..<count {
                let byte = self[index]
                let folded = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
                guard folded == expected.load(fromByteOffset: index, as: UInt8.self) else { return false }
            }
            return true
        }
        var index = 0
        while true {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            guard Self.lowercased(word) == expected.loadUnaligned(fromByteOffset: index, as: UInt64.self) else {
                return false
            }
            if index + 8 == count { return true }
            index = Swift.min(index + 8, count - 8)
        }
    }

    /// The eight bytes of `word` with ASCII capitals made small, and nothing else changed: a byte's high bit marks
    /// it as at least `A` and not above `Z` (the sums cannot carry into the next byte, the high bits being masked
    /// off first), and bytes from 0x80 never count.
    @inline(__always)
    private static func lowercased(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let low = word & (ones &* 0x7F)
        let fromA = low &+ ones &* (0x80 - 0x41)
        let pastZ = low &+ ones &* (0x80 - 0x5B)
        let capitals = fromA & ~pastZ & ~word & (ones &* 0x80)
        return word | capitals >> 2
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes are exactly `literal`.
    func equals(_ literal: StaticString) -> Bool {
        guard self.count == literal.utf8CodeUnitCount else { return false }
        let expected = literal.utf8Start
        for index in 0..<self.count where self[index] != expected[index] { return false }
        return true
    }
}

extension UnsafeBufferPointer<UInt8> {
    func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        UnsafeRawBufferPointer(self).equalsIgnoringASCIICase(lowercase)
    }
}

extension String {
    /// Calls `body` with the UTF-8 bytes as one buffer. Native strings already are one (no copy); the byte loops of
    /// the request path then run over a plain buffer instead of stepping `String.UTF8View` indices, which costs
    /// several times more per byte.
    func withContiguousUTF8<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        if let result = self.utf8.withContiguousStorageIfAvailable(body) { return result }
        var copy = self
        return copy.withUTF8(body)
    }
}
