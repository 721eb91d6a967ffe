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
        if head.method == .CONNECT {
            return .failure(
                Refusal(.methodNotAllowed, "connect-not-allowed", "CONNECT tunnels are not supported; send plain HTTP")
            )
        }
        guard head.version.major == 1, head.version.minor <= 1 else {
            return .failure(
                Refusal(.httpVersionNotSupported, "unsupported-version", "only HTTP/1.x", closeConnection: true)
            )
        }
        let transferEncodings = head.headers["transfer-encoding"]
        let contentLengths = head.headers["content-length"]
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
        head.version.minor >= 1 && head.headers["expect"].contains { $0.lowercased() == "100-continue" }
    }
}

/// Removal of hop-by-hop headers (RFC 9110 §7.6.1) in both directions, and the upstream Host rewrite.
public enum HeaderSanitizer {
    /// Removes `Connection` and every header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
    /// `Transfer-Encoding`, `Upgrade` (and `Expect`, which the proxy answers itself).
    public static func removeHopByHop(_ headers: inout HTTPHeaders) {
        // One pass to find out whether anything must go (usually only a `Connection: keep-alive`), and which
        // extra names `Connection` lists.
        var named: Set<String> = []
        var needsRemoval = false
        for (name, value) in headers where Self.isHopByHop(name) {
            needsRemoval = true
            if name.utf8.count == 10, name.utf8.equalsIgnoringASCIICase("connection") {
                // Tokens split by hand: `split` would allocate an array for the usual lone `keep-alive`.
                var rest = value[...]
                while !rest.isEmpty {
                    let comma = rest.utf8.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
                    let token = rest[..<comma].trimmingASCIISpaces()
                    if !token.isEmpty, !Self.isHopByHop(token.utf8) { named.insert(token.lowercased()) }
                    rest = comma == rest.endIndex ? rest[rest.endIndex...] : rest[rest.utf8.index(after: comma)...]
                }
            }
        }
        guard needsRemoval else { return }
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count)
        for (name, value) in headers {
            if Self.isHopByHop(name) || (!named.isEmpty && named.contains(name.lowercased())) { continue }
            result.add(name: name, value: value)
        }
        headers = result
    }

    /// Compared byte by byte, ignoring ASCII case, so the common (not hop-by-hop) header costs no allocation.
    static func isHopByHop(_ name: String) -> Bool { Self.isHopByHop(name.utf8) }

    static func isHopByHop(_ utf8: some Collection<UInt8>) -> Bool {
        if utf8.prefix(6).equalsIgnoringASCIICase("proxy-") { return true }
        switch utf8.count {
        case 2: return utf8.equalsIgnoringASCIICase("te")
        case 6: return utf8.equalsIgnoringASCIICase("expect")
        case 7: return utf8.equalsIgnoringASCIICase("trailer") || utf8.equalsIgnoringASCIICase("upgrade")
        case 10: return utf8.equalsIgnoringASCIICase("connection") || utf8.equalsIgnoringASCIICase("keep-alive")
        case 17: return utf8.equalsIgnoringASCIICase("transfer-encoding")
        default: return false
        }
    }

    /// The request head sent upstream: hop-by-hop headers removed, `Host` set to the upstream (with the port when
    /// it is not 443), origin-form path, HTTP/1.1.
    public static func upstreamRequestHead(
        _ head: HTTPRequestHead,
        path: String,
        upstreamHost: String,
        port: Int
    ) -> HTTPRequestHead {
        var headers = head.headers
        Self.removeHopByHop(&headers)
        headers.replaceOrAdd(name: "host", value: port == 443 ? upstreamHost : "\(upstreamHost):\(port)")
        var upstream = HTTPRequestHead(version: .http1_1, method: head.method, uri: path, headers: headers)
        if head.version.minor == 0, !upstream.headers.contains(name: "content-length"),
            head.method == .POST || head.method == .PUT || head.method == .PATCH
        {
            upstream.headers.add(name: "content-length", value: "0")
        }
        return upstream
    }

    /// The response head sent to the client: hop-by-hop headers removed; `Connection: close` when the client
    /// connection ends after this response.
    public static func clientResponseHead(
        _ head: HTTPResponseHead,
        version: HTTPVersion,
        close: Bool
    ) -> HTTPResponseHead {
        var headers = head.headers
        Self.removeHopByHop(&headers)
        if close {
            headers.add(name: "connection", value: "close")
        } else if version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        return HTTPResponseHead(version: version, status: head.status, headers: headers)
    }
}

extension Sequence<UInt8> {
    /// Whether these bytes spell `lowercase` (given in lowercase ASCII), ignoring ASCII case.
    func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        lowercase.withUTF8Buffer { expected in
            self.elementsEqual(expected) { byte, lower in
                byte == lower || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte | 0x20 == lower)
            }
        }
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
