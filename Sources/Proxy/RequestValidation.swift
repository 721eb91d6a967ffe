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
    public static func validate(_ head: HTTPRequestHead) -> Result<BodyFraming, Refusal> {
        if case .CONNECT = head.method {
            return .failure(
                Refusal(.methodNotAllowed, "connect-not-allowed", "CONNECT tunnels are not supported; send plain HTTP")
            )
        }
        guard head.version.major == 1, head.version.minor <= 1 else {
            return .failure(
                Refusal(.httpVersionNotSupported, "unsupported-version", "only HTTP/1.x", closeConnection: true)
            )
        }
        // One pass over the fields, by length first: `headers[name]` builds an array per name asked for.
        var transferEncodings: [String] = []
        var contentLengths: [String] = []
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 17 where name.withContiguousUTF8({ $0.equalsIgnoringASCIICase("transfer-encoding") }):
                transferEncodings.append(value)
            case 14 where name.withContiguousUTF8({ $0.equalsIgnoringASCIICase("content-length") }):
                contentLengths.append(value)
            default:
                continue
            }
        }
        if !transferEncodings.isEmpty {
            if !contentLengths.isEmpty {
                return .failure(
                    Refusal(
                        .badRequest,
                        "content-length-and-transfer-encoding",
                        "a request must not carry both Content-Length and Transfer-Encoding",
                        closeConnection: true
                    )
                )
            }
            let codings = transferEncodings.flatMap { $0.split(separator: ",") }.map {
                $0.trimmingASCIISpaces().lowercased()
            }
            guard codings == ["chunked"], head.version.minor == 1 else {
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
        if !contentLengths.isEmpty {
            var value: Int? = nil
            for field in contentLengths {
                for part in field.split(separator: ",", omittingEmptySubsequences: false) {
                    let digits = part.trimmingASCIISpaces()
                    guard !digits.isEmpty, digits.utf8.count <= 18, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                        let parsed = Int(digits), value == nil || value == parsed
                    else {
                        return .failure(
                            Refusal(
                                .badRequest,
                                "bad-content-length",
                                "Content-Length is invalid or repeated with different values",
                                closeConnection: true
                            )
                        )
                    }
                    value = parsed
                }
            }
            return .success(value! == 0 ? .none : .contentLength(value!))
        }
        return .success(.none)
    }

    /// Whether the client asked for `100 Continue` before sending its body.
    public static func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.version.minor >= 1
            && head.headers.contains { name, value in
                name.utf8.count == 6 && name.withContiguousUTF8 { $0.equalsIgnoringASCIICase("expect") }
                    && value.lowercased() == "100-continue"
            }
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
        /// Whether any header of the message is hop-by-hop (usually only a `Connection: keep-alive`).
        private(set) var any = false
        /// Whether `Connection` lists no names besides the fixed hop-by-hop ones.
        var isEmptyOfNamed: Bool { self.named.isEmpty }

        /// Nothing listed yet: for a message whose `Connection` tokens are passed to `list` as its bytes are read.
        init() {}

        init(_ headers: HTTPHeaders) {
            for (name, value) in headers where HeaderSanitizer.isHopByHop(name) {
                self.any = true
                guard name.utf8.count == 10, name.withContiguousUTF8({ $0.equalsIgnoringASCIICase("connection") })
                else { continue }
                value.withContiguousUTF8 { HeaderSanitizer.forEachToken(UnsafeRawBufferPointer($0)) { self.list($0) } }
            }
        }

        /// A token of the `Connection` header: the header it names is hop-by-hop too. A name is only made for a
        /// token that is not hop-by-hop already, so the usual lone `keep-alive` costs nothing.
        mutating func list(_ token: UnsafeRawBufferPointer) {
            self.any = true
            if !HeaderSanitizer.isHopByHop(token) {
                self.named.insert(String(decoding: token, as: UTF8.self).lowercased())
            }
        }

        func drops(_ name: String) -> Bool {
            guard self.any else { return false }
            return name.withContiguousUTF8 { self.drops(UnsafeRawBufferPointer($0)) }
        }

        func drops(_ name: UnsafeRawBufferPointer) -> Bool {
            HeaderSanitizer.isHopByHop(name)
                || (!self.named.isEmpty && self.named.contains(String(decoding: name, as: UTF8.self).lowercased()))
        }
    }

    /// The comma-separated tokens of a list value (`Connection: close, x-a`), trimmed, empty ones skipped; scanned
    /// as bytes.
    static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while start < value.count {
            let end = value[start...].firstIndex(of: UInt8(ascii: ",")) ?? value.count
            var low = start
            var high = end
            while low < high, value[low] == UInt8(ascii: " ") || value[low] == UInt8(ascii: "\t") { low += 1 }
            while high > low, value[high - 1] == UInt8(ascii: " ") || value[high - 1] == UInt8(ascii: "\t") {
                high -= 1
            }
            if low < high { body(UnsafeRawBufferPointer(rebasing: value[low..<high])) }
            start = end + 1
        }
    }

    /// Compared byte by byte, ignoring ASCII case, so the common (not hop-by-hop) header costs no allocation.
    static func isHopByHop(_ name: String) -> Bool {
        name.withContiguousUTF8 { Self.isHopByHop(UnsafeRawBufferPointer($0)) }
    }

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
    /// compared first and the bytes in one loop over the two buffers: the generic `elementsEqual` with a closure it
    /// replaced cost about 190 instructions per header name compared.
    func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        let count = lowercase.utf8CodeUnitCount
        guard self.count == count else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<count {
            let byte = self[index]
            let folded = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
            guard folded == expected[index] else { return false }
        }
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

extension StringProtocol {
    func trimmingASCIISpaces() -> Substring {
        var s = Substring(self)
        while let first = s.utf8.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
            s = s[s.utf8.index(after: s.startIndex)...]
        }
        while let last = s.utf8.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") {
            s = s[..<s.utf8.index(before: s.endIndex)]
        }
        return s
    }
}
