/// What `spec.host` may be, in one place: the Swift check (used for status messages and the allow-list reader)
/// and the CRD schema patterns (used at admission) are generated from the same rules.
///
/// A host is a lowercase DNS name of at least two labels whose last label starts with a letter (so IP literals are
/// not names), or a wildcard `*.` followed by such a name. `*.example.com` matches any name with one or more
/// labels in front of `example.com` (`api.example.com`, `a.b.example.com`), never `example.com` itself: list that
/// separately if it is wanted. Names under the proxy's own suffix (`egress.local`) are refused: they would route
/// the proxy to itself.
public enum HostName {
    public static let maxLength = 253
    public static let reservedSuffix = "egress.local"

    /// The longest host whose name under `suffix` is still a DNS name: applications call `HOST.SUFFIX` (for
    /// `*.base`, names such as `x.base.SUFFIX`, as long), and CoreDNS cannot route a longer one. 240 under the
    /// default suffix, the CRD's limit; the operator checks it against its own suffix.
    public static func maxLength(under suffix: String) -> Int { maxLength - 1 - suffix.utf8.count }

    /// One rule: a regular expression (RE2, for the CRD schema) a valid host must match, the same rule as Swift
    /// code (the allow-list reader checks 100,000 hosts without compiling a regex; a test keeps the two equal),
    /// and what to tell a user whose host does not.
    public struct Rule: Sendable {
        public let pattern: String
        public let message: String
        /// When true, a valid host must *not* match `pattern`.
        public let negated: Bool
        /// Whether `host` matches `pattern`.
        public let matches: @Sendable (Substring) -> Bool
    }

    public static let rules: [Rule] = [
        Rule(
            pattern: #"^[^/]*$"#,
            message: "must be a bare host name, not a URL: remove the scheme and any path (\"/\")",
            negated: false,
            matches: { !$0.utf8.contains(UInt8(ascii: "/")) }
        ),
        Rule(
            pattern: #"^[^:]*$"#,
            message: "must not contain \":\": put the port in spec.port; IPv6 literals are not host names",
            negated: false,
            matches: { !$0.utf8.contains(UInt8(ascii: ":")) }
        ),
        Rule(
            pattern: #"^(\*\.)?[a-z0-9.-]+$"#,
            message: "may contain only lowercase letters, digits, \"-\" and \".\", with an optional leading \"*.\"",
            negated: false,
            matches: { host in
                let name = withoutWildcard(host.utf8)
                return !name.isEmpty && name.allSatisfy { isLowerAlnum($0) || $0 == dash || $0 == dot }
            }
        ),
        Rule(
            pattern: #"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"#,
            message:
                "must be a DNS name of two or more labels, each 1-63 characters, not starting or ending with \"-\","
                + " no empty labels, and a last label starting with a letter (IP addresses are not allowed)",
            negated: false,
            matches: { isDNSName(withoutWildcard($0.utf8)) }
        ),
        Rule(
            pattern: #"(^|\.)egress\.local$"#,
            message: "must not be under egress.local: that is the proxy's own suffix",
            negated: true,
            matches: { isReserved($0.utf8) }
        ),
    ]

    /// The problems with `host`, as messages a user can act on; empty when it is valid.
    public static func validate(_ host: String) -> [String] {
        if isValid(host) { return [] }
        if host.isEmpty { return ["must not be empty"] }
        var problems: [String] = []
        if host.utf8.count > maxLength {
            problems.append("must be at most \(maxLength) characters")
        }
        for rule in rules where rule.matches(host[...]) == rule.negated {
            problems.append(rule.message)
        }
        return problems
    }

    /// Whether `host` passes every rule, in one pass over its bytes and without allocating (the allow-list reader
    /// checks 100,000 hosts per reload). A name that matches the DNS-name rule also matches the character rules
    /// before it, so that rule, the length and the reserved suffix decide; `validate` then only spells out problems.
    public static func isValid(_ host: String) -> Bool {
        func check(_ bytes: some BidirectionalCollection<UInt8>) -> Bool {
            bytes.count <= maxLength && isDNSName(withoutWildcard(bytes)) && !isReserved(bytes)
        }
        // A native string's bytes are contiguous, and reading them directly is several times faster than through
        // String.UTF8View (the buffer is only read, inside the closure).
        return host.utf8.withContiguousStorageIfAvailable { check($0) } ?? check(host.utf8)
    }

    /// `*.example.com` → `example.com`; nil for an exact name.
    public static func wildcardBase(_ host: String) -> String? {
        host.hasPrefix("*.") ? String(host.dropFirst(2)) : nil
    }
}

private let dash = UInt8(ascii: "-")
private let dot = UInt8(ascii: ".")

private func isLowerLetter(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
private func isLowerAlnum(_ byte: UInt8) -> Bool {
    isLowerLetter(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
}

/// The bytes of `host` after a leading `*.`, if any.
private func withoutWildcard<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bytes.SubSequence {
    bytes.starts(with: "*.".utf8) ? bytes.dropFirst(2) : bytes[...]
}

/// `([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?`, in one pass over the bytes (no label
/// arrays: this runs for every host of a 100,000-host list).
private func isDNSName(_ name: some Sequence<UInt8>) -> Bool {
    var labels = 0
    var length = 0  // of the current label
    var first: UInt8 = 0  // of the current label
    var previous: UInt8 = 0
    for byte in name {
        if byte == dot {
            guard (1...63).contains(length), isLowerAlnum(previous) else { return false }
            labels += 1
            length = 0
        } else {
            // A label starts with a letter or digit; "-" only inside.
            guard isLowerAlnum(byte) || (byte == dash && length > 0) else { return false }
            if length == 0 { first = byte }
            length += 1
        }
        previous = byte
    }
    return labels >= 1 && (1...63).contains(length) && isLowerAlnum(previous) && isLowerLetter(first)
}

/// `(^|\.)egress\.local$`
private func isReserved(_ bytes: some BidirectionalCollection<UInt8>) -> Bool {
    let suffix = HostName.reservedSuffix.utf8
    guard bytes.count >= suffix.count, bytes.suffix(suffix.count).elementsEqual(suffix) else { return false }
    return bytes.count == suffix.count || bytes.dropLast(suffix.count).last == dot
}
