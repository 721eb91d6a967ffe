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
            matches: { !$0.contains("/") }
        ),
        Rule(
            pattern: #"^[^:]*$"#,
            message: "must not contain \":\": put the port in spec.port; IPv6 literals are not host names",
            negated: false,
            matches: { !$0.contains(":") }
        ),
        Rule(
            pattern: #"^(\*\.)?[a-z0-9.-]+$"#,
            message: "may contain only lowercase letters, digits, \"-\" and \".\", with an optional leading \"*.\"",
            negated: false,
            matches: { host in
                let name = host.hasPrefix("*.") ? host.dropFirst(2) : host
                return !name.isEmpty && name.utf8.allSatisfy { isLowerAlnum($0) || $0 == dash || $0 == dot }
            }
        ),
        Rule(
            pattern: #"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"#,
            message:
                "must be a DNS name of two or more labels, each 1-63 characters, not starting or ending with \"-\","
                + " no empty labels, and a last label starting with a letter (IP addresses are not allowed)",
            negated: false,
            matches: { host in
                let name = host.hasPrefix("*.") ? host.dropFirst(2) : host
                let labels = name.utf8.split(separator: dot, omittingEmptySubsequences: false)
                guard labels.count >= 2, labels.allSatisfy(isLabel) else { return false }
                return labels.last!.first.map(isLowerLetter) ?? false
            }
        ),
        Rule(
            pattern: #"(^|\.)egress\.local$"#,
            message: "must not be under egress.local: that is the proxy's own suffix",
            negated: true,
            matches: { $0 == "egress.local" || $0.hasSuffix(".egress.local") }
        ),
    ]

    /// The problems with `host`, as messages a user can act on; empty when it is valid.
    public static func validate(_ host: String) -> [String] {
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

/// `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`
private func isLabel(_ label: Substring.UTF8View.SubSequence) -> Bool {
    guard (1...63).contains(label.count), let first = label.first, let last = label.last else { return false }
    return isLowerAlnum(first) && isLowerAlnum(last) && label.allSatisfy { isLowerAlnum($0) || $0 == dash }
}
