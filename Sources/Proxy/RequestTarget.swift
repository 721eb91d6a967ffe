import NIOCore
import NIOHTTP1

/// Pure parsing of where a request wants to go: the `Host` header and/or an absolute-form request URI of the form
/// `NAME.<suffix>[:port]`, checked and normalized without any I/O.
public enum RequestTarget {
    /// The upstream name the request targets (lowercase, no trailing dot, suffix removed), and the target to send
    /// upstream in origin form when the client sent an absolute-form one (nil: the target as sent).
    public struct Parsed: Sendable, Hashable {
        public var name: String
        public var upstreamTarget: String?
    }

    /// Normalizes a suffix given on the command line (`.Egress.Local.` → `egress.local`).
    public static func normalizeSuffix(_ suffix: String) -> String {
        var s = Substring(suffix.lowercased())
        while s.hasPrefix(".") { s = s.dropFirst() }
        while s.hasSuffix(".") { s = s.dropLast() }
        return String(s)
    }

    static func parse(head: ClientRequestHead, suffix: String) -> Result<Parsed, Refusal> {
        guard head.hostCount <= 1 else {
            return .failure(Refusal(.badRequest, "bad-host", "more than one Host header", closeConnection: true))
        }
        var upstreamTarget: String? = nil
        var uriName: String? = nil
        if !head.isOriginForm {
            switch self.parseAbsoluteURI(head.targetString) {
            case .failure(let refusal): return .failure(refusal)
            case .success(let (authority, rest)):
                switch self.upstreamName(authority: authority, suffix: suffix) {
                case .failure(let refusal): return .failure(refusal)
                case .success(let name): uriName = name
                }
                upstreamTarget = rest
            }
        }
        guard let host = head.host else {
            /// HTTP/1.0 has no Host header, so its absolute URI alone routes; HTTP/1.1 requires one (RFC 9112 §3.2).
            if let uriName, head.version.minor == 0 {
                return .success(Parsed(name: uriName, upstreamTarget: upstreamTarget))
            }
            return .failure(Refusal(.badRequest, "missing-host", "the request has no Host header"))
        }
        var suffixBytes = suffix
        let hostName = head.block.withUnsafeReadableBytes { block in
            suffixBytes.withUTF8 { suffixBytes in
                Self.upstreamName(
                    authority: UnsafeBufferPointer(rebasing: block.assumingMemoryBound(to: UInt8.self)[host]),
                    suffixBytes: suffixBytes,
                    suffix: suffix
                )
            }
        }
        switch hostName {
        case .failure(let refusal):
            return .failure(refusal)
        case .success(let name):
            if let uriName, uriName != name {
                return .failure(
                    Refusal(
                        .badRequest,
                        "host-mismatch",
                        "the Host header and the request URI name different hosts",
                        closeConnection: true
                    )
                )
            }
            return .success(Parsed(name: name, upstreamTarget: upstreamTarget))
        }
    }

    /// Splits `http://authority/path?q` into the authority and an origin-form path. Only `http` and `https` schemes
    /// are accepted; user info (`user@host`) is refused because it is a classic way to confuse host parsers.
    static func parseAbsoluteURI(_ uri: String) -> Result<(Substring, String), Refusal> {
        let bad = Refusal(.badRequest, "bad-request-target", "the request target must be a path or an http URL")
        let lower = uri.prefix(8).lowercased()
        let afterScheme: Substring
        if lower.hasPrefix("http://") {
            afterScheme = uri.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            afterScheme = uri.dropFirst(8)
        } else {
            return .failure(bad)
        }
        let end = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        let authority = afterScheme[..<end]
        if authority.contains("@") || authority.contains("\\") {
            return .failure(Refusal(.badRequest, "bad-host", "user info is not allowed in the request URI"))
        }
        var rest = String(afterScheme[end...])
        if let hash = rest.firstIndex(of: "#") { rest = String(rest[..<hash]) }
        if rest.isEmpty || rest.hasPrefix("?") { rest = "/" + rest }
        return .success((authority, rest))
    }

    /// `api.github.com.egress.local:80` → `api.github.com`, or why not.
    ///
    /// Works on the UTF-8 bytes throughout (no `Character` iteration, which pays for grapheme breaking) and
    /// allocates only the returned name.
    public static func upstreamName(authority: Substring, suffix: String) -> Result<String, Refusal> {
        var authority = authority
        var suffixBytes = suffix
        return authority.withUTF8 { authority in
            suffixBytes.withUTF8 { Self.upstreamName(authority: authority, suffixBytes: $0, suffix: suffix) }
        }
    }

    /// One walk over the bytes by index: generic slicing (`suffix`, `elementsEqual` with a closure, `reversed()`)
    /// cost more than the checks themselves.
    private static func upstreamName(
        authority: UnsafeBufferPointer<UInt8>,
        suffixBytes: UnsafeBufferPointer<UInt8>,
        suffix: String
    ) -> Result<String, Refusal> {
        if authority.first == UInt8(ascii: "[") {
            return .failure(Refusal(.badRequest, "ip-literal", "IP literals cannot be routed: use NAME.\(suffix)"))
        }
        var end = authority.count
        if let colon = authority.lastIndex(of: UInt8(ascii: ":")) {
            guard Self.isPort(UnsafeBufferPointer(rebasing: authority[(colon + 1)...])) else {
                return .failure(Refusal(.badRequest, "bad-host", "the Host header has an invalid port"))
            }
            end = colon
        }
        if end > 0, authority[end - 1] == UInt8(ascii: ".") { end -= 1 }
        guard end > 0, end <= 253 + 1 + suffixBytes.count else {
            return .failure(Refusal(.badRequest, "bad-host", "the Host header is empty or too long"))
        }
        let host = UnsafeBufferPointer(rebasing: authority[..<end])
        // Only DNS name characters (compared ignoring ASCII case; the name is lowercased when it is copied out).
        for byte in host where !Self.isHostNameByte(byte) {
            return .failure(Refusal(.badRequest, "bad-host", "the Host header is not a valid host name"))
        }
        let nameCount = host.count - suffixBytes.count - 1
        guard nameCount > 0, host[nameCount] == UInt8(ascii: "."), Self.isSuffix(suffixBytes, of: host) else {
            if self.looksLikeIPLiteral(host) {
                return .failure(Refusal(.badRequest, "ip-literal", "IP literals cannot be routed: use NAME.\(suffix)"))
            }
            return .failure(Refusal(.badRequest, "not-under-suffix", "the host is not under .\(suffix)"))
        }
        let name = UnsafeBufferPointer(rebasing: host[..<nameCount])
        guard Self.labelsAreValid(name) else {
            return .failure(Refusal(.badRequest, "bad-host", "the host has an empty or invalid label"))
        }
        if self.looksLikeIPLiteral(name) {
            return .failure(Refusal(.badRequest, "ip-literal", "IP literals cannot be routed: use NAME.\(suffix)"))
        }
        return .success(
            String(unsafeUninitializedCapacity: nameCount) { buffer in
                for index in 0..<nameCount { buffer[index] = Self.lowercased(name[index]) }
                return nameCount
            }
        )
    }

    /// Whether `host` ends in `suffix` (lowercase), ignoring ASCII case.
    private static func isSuffix(_ suffix: UnsafeBufferPointer<UInt8>, of host: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = host.count - suffix.count
        for index in 0..<suffix.count where Self.lowercased(host[start + index]) != suffix[index] { return false }
        return true
    }

    /// 1–5 digits, at most 65535.
    static func isPort(_ digits: UnsafeBufferPointer<UInt8>) -> Bool {
        guard (1...5).contains(digits.count) else { return false }
        var value = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return false }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value <= 65535
    }

    static func isHostNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."):
            true
        default:
            false
        }
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }

    /// Every label 1-63 characters, not starting or ending with "-" (one pass, no allocation).
    static func labelsAreValid(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        var length = 0
        var previous: UInt8 = UInt8(ascii: ".")
        for byte in name {
            if byte == UInt8(ascii: ".") {
                guard length > 0, previous != UInt8(ascii: "-") else { return false }
                length = 0
            } else {
                if length == 0, byte == UInt8(ascii: "-") { return false }
                length += 1
                guard length <= 63 else { return false }
            }
            previous = byte
        }
        return length > 0 && previous != UInt8(ascii: "-")
    }

    /// A name whose last label is all digits (`127.0.0.1`, `2130706433`, `0x7f.1`) is treated as an IP literal:
    /// resolvers accept many numeric spellings, and no valid DNS name has a numeric top-level label.
    static func looksLikeIPLiteral(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        let lastLabel = (name.lastIndex(of: UInt8(ascii: ".")) ?? -1) + 1
        guard lastLabel < name.count else { return false }
        return name[lastLabel...].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }
}
