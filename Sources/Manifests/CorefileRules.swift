import Foundation

/// An allowed host in canonical form; the order of cases is the order rules are written in.
enum CorefileHost: Hashable, Comparable, Sendable {
    /// `api.github.com`: exactly this name under the suffix.
    case exact(String)
    /// `*.example.com`, stored as `example.com`: one or more labels in front of it, never the name itself.
    case wildcard(String)
    /// `*`: every name under the suffix (what `CoreDNSRuleMode.suffix` writes).
    case everything

    var spelling: String {
        switch self {
        case .exact(let name): name
        case .wildcard(let base): "*." + base
        case .everything: "*"
        }
    }

    /// Parses a host as the allow-list spells it. Lowercases and drops one trailing dot; anything that is not
    /// letters, digits, `-` and `_` in dot-separated labels is refused, because it would land unquoted in a Corefile.
    init?(_ raw: String) {
        var text = CorefileNames.asciiLowercased(raw)
        if text == "*" {
            self = .everything
            return
        }
        if text.hasSuffix(".") { text.removeLast() }
        if text.hasPrefix("*.") {
            guard let base = CorefileNames.normalized(String(text.dropFirst(2))) else { return nil }
            self = .wildcard(base)
        } else {
            guard let name = CorefileNames.normalized(text) else { return nil }
            self = .exact(name)
        }
    }
}

/// DNS name checks shared by hosts, the suffix and the proxy Service name.
enum CorefileNames {
    /// The longest name in presentation form without the trailing dot (RFC 1035's 255 octets on the wire).
    static let maximumLength = 253

    /// Special-use domains (RFC 6761, 6762 and 8375, and ICANN's `internal`): nothing under them resolves on the
    /// internet, so a suffix below one neither leaks a call off the cluster nor shadows a real zone.
    static let specialUseDomains = ["local", "internal", "test", "example", "invalid", "home.arpa"]

    /// Why `suffix` (normalized) is unsafe, or nil. The operator answers NXDOMAIN for every name under it that is
    /// not allowed, before the `kubernetes` and `forward` plugins run: a suffix that is a real zone (`com`,
    /// `in-addr.arpa`) or holds the cluster's names (`default.svc.cluster.local`) would break them cluster-wide.
    static func suffixProblem(_ suffix: String, proxyServiceFQDN proxy: String) -> String? {
        guard specialUseDomains.contains(where: { suffix != $0 && isWithin(suffix, zone: $0) }) else {
            let domains = specialUseDomains.map { ".\($0)" }.joined(separator: ", ")
            return "it must be a name under a special-use domain (\(domains)), such as egress.local; the operator "
                + "answers NXDOMAIN for every name under it that is not allowed"
        }
        // The cluster domain is what follows `svc` in the proxy Service's name.
        let labels = proxy.split(separator: ".")
        if let svc = labels.lastIndex(of: "svc"), svc + 1 < labels.count {
            let clusterDomain = labels[(svc + 1)...].joined(separator: ".")
            if isWithin(suffix, zone: clusterDomain) {
                return "it lies within the cluster domain \(clusterDomain), whose names the kubernetes plugin answers"
            }
        }
        return nil
    }

    /// Lowercased `name` without a trailing dot, or nil unless it is 1+ labels of 1-63 `[a-z0-9_-]`.
    static func normalized(_ name: String) -> String? {
        var text = asciiLowercased(name)
        if text.hasSuffix(".") { text.removeLast() }
        guard !text.isEmpty, text.utf8.count <= maximumLength else { return nil }
        // One pass over the bytes: label lengths and characters (a split into label arrays, per host and per
        // pass, was a visible share of a pass with thousands of hosts).
        var labelLength = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard labelLength > 0 else { return nil }
                labelLength = 0
            } else {
                guard isLabelByte(byte), labelLength < 63 else { return nil }
                labelLength += 1
            }
        }
        return labelLength > 0 ? text : nil
    }

    /// Lowercases A-Z only: full Unicode lowercasing would turn e.g. the Kelvin sign into an ASCII `k`. Works on
    /// UTF-8 bytes (no multi-byte sequence contains an ASCII byte) and returns `text` itself when nothing changes.
    static func asciiLowercased(_ text: String) -> String {
        let upper = UInt8(ascii: "A")...UInt8(ascii: "Z")
        guard text.utf8.contains(where: upper.contains) else { return text }
        return String(decoding: text.utf8.map { upper.contains($0) ? $0 + 32 : $0 }, as: UTF8.self)
    }

    private static func isLabelByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "_"): true
        default: false
        }
    }

    /// Whether `name` is `zone` or a name below it.
    static func isWithin(_ name: String, zone: String) -> Bool {
        name == zone || name.hasSuffix("." + zone)
    }

    /// Escapes RE2 (and ICU) metacharacters so `text` matches literally.
    static func regexEscaped(_ text: String) -> String {
        var result = ""
        for character in text {
            if "\\.+*?()|[]{}^$".contains(character) { result.append("\\") }
            result.append(character)
        }
        return result
    }
}

/// Renders the CoreDNS directives for a host set, and recognises them again.
///
/// Rule forms, and why (facts from the CoreDNS `rewrite` README):
/// - Exact host: `rewrite stop name exact H.SUFFIX. PROXY.` "When using `exact` name rewrite rules, the answer gets
///   rewritten automatically" ("answers for rewrites of type `exact` are always rewritten" since 1.8.4), so the
///   client sees the name it asked for. No answer option is needed, so this also loads on CoreDNS 1.8.0-1.8.3,
///   whose pre-#4473 parser already gave exact rules an automatic response rewrite.
/// - Wildcard host: `rewrite stop name regex ^(?:[a-z0-9_-]+\.)+BASE\.SUFFIX\.?$ PROXY. answer auto`. Every match
///   becomes the one proxy name, so an explicit `answer name FROM TO` regex cannot restore the label the client
///   asked for (it only sees the rewritten name). `answer auto` (CoreDNS >= 1.8.4, coredns/coredns#4473) maps "any
///   occurrence of the rewritten question in the answer ... back to the original value before the rewrite", for
///   every match type including `regex`. So wildcard rules, and the suffix rule, need CoreDNS 1.8.4 or newer; an
///   older CoreDNS refuses the Corefile (and `reload` keeps running the previous one).
/// - The regex is anchored at both ends, escapes every dot, needs at least one whole label in front of BASE (so
///   neither `BASE.SUFFIX` nor `xBASE.SUFFIX` match) and accepts the trailing dot CoreDNS always has in the
///   question name (it matches lowercased `state.Name()`). The label class excludes `\`, so a label holding an
///   escaped dot (`a\.example`) cannot pose as two labels.
/// - Fail closed: `template ANY ANY SUFFIX { rcode NXDOMAIN }` answers every other name under the suffix, of any
///   class (`IN` alone would let a `CH` query through to `forward`). In
///   plugin.cfg `rewrite` runs before `template`, which runs before `hosts`, `kubernetes` and `forward`; a rewritten
///   question has left the suffix zone, so the template passes it on, and no unlisted name is ever forwarded out of
///   the cluster.
struct CorefileRules: Sendable, Equatable {
    let suffix: String
    let proxyServiceFQDN: String

    /// The label run a wildcard or suffix rule accepts in front of its base name.
    static let labelsPrefix = #"^(?:[a-z0-9_-]+\.)+"#
    static let trailingDot = #"\.?$"#

    /// Directive lines as (nesting level, text), in the order they are written.
    func lines(for hosts: [CorefileHost]) -> [(level: Int, text: String)] {
        lines(for: hosts, reusing: nil)
    }

    /// Hosts and the lines this type wrote for them, for `lines(for:reusing:)`.
    typealias Rendered = (rules: CorefileRules, hosts: [CorefileHost], lines: [(level: Int, text: String)])

    /// `lines(for:)`, writing rules only for the hosts between the longest start and end that `previous` shares
    /// with `hosts`: a change to thousands of hosts touches one or two, and writing every rule was a visible share
    /// of a pass.
    func lines(for hosts: [CorefileHost], reusing previous: Rendered?) -> [(level: Int, text: String)] {
        guard !hosts.isEmpty else { return [] }
        // The previous lines end with the template's three; the rules before them are one per host.
        let reusable = previous.flatMap { $0.rules == self ? ($0.hosts, Array($0.lines.dropLast(3))) : nil }
        var lines = hosts.map({ (level: 0, text: rule(for: $0).joined(separator: " ")) }, reusing: reusable)
        lines.append((0, "template ANY ANY \(suffix) {"))
        lines.append((1, "rcode NXDOMAIN"))
        lines.append((0, "}"))
        return lines
    }

    /// The tokens of the `rewrite` directive for one host.
    func rule(for host: CorefileHost) -> [String] {
        let target = proxyServiceFQDN + "."
        switch host {
        case .exact(let name):
            return ["rewrite", "stop", "name", "exact", "\(name).\(suffix).", target]
        case .wildcard(let base):
            return ["rewrite", "stop", "name", "regex", pattern(for: base + "." + suffix), target, "answer", "auto"]
        case .everything:
            return ["rewrite", "stop", "name", "regex", pattern(for: suffix), target, "answer", "auto"]
        }
    }

    /// Anchored regex for one or more labels in front of `base`.
    func pattern(for base: String) -> String {
        Self.labelsPrefix + CorefileNames.regexEscaped(base) + Self.trailingDot
    }

    /// What a directive of a managed block is.
    enum Directive: Equatable {
        case rule(CorefileHost)
        case template
        /// A line of this shape written under other settings (another suffix, proxy Service or template form, e.g.
        /// before the operator's flags changed): it routes nothing to this proxy, and the next edit replaces it.
        case stale
    }

    /// Recognises a directive this type wrote, or would have written under other settings; throws for anything
    /// else (a hand edit inside the markers, which the operator does not overwrite blindly).
    func directive(_ words: [String], line: Int) throws(CorefileError) -> Directive {
        if words.count == 8, words[0] == "template", ["IN", "ANY"].contains(words[1]), words[2] == "ANY",
            Array(words[4...]) == ["{", "rcode", "NXDOMAIN", "}"]
        {
            return words[1] == "ANY" && words[3] == suffix ? .template : .stale
        }
        do {
            return .rule(try self.host(fromRule: words, line: line))
        } catch {
            let target = proxyServiceFQDN + "."
            let exact = words.count == 6 && words.starts(with: ["rewrite", "stop", "name", "exact"])
            let regex =
                words.count == 8 && words.starts(with: ["rewrite", "stop", "name", "regex"])
                && Array(words[6...]) == ["answer", "auto"]
            guard exact || regex else { throw error }
            let underSuffix =
                exact
                ? words[4].hasSuffix(".\(suffix).")
                : words[4].hasSuffix(CorefileNames.regexEscaped(suffix) + Self.trailingDot)
            // Under this suffix and to this proxy, only exactly what this type writes is its own.
            if words[5] == target && underSuffix { throw error }
            return .stale
        }
    }

    /// The host of a `rewrite` this type wrote under its current settings; throws for any other line.
    private func host(fromRule words: [String], line: Int) throws(CorefileError) -> CorefileHost {
        var candidate: CorefileHost?
        if words.count == 6, words.starts(with: ["rewrite", "stop", "name", "exact"]) {
            let from = words[4]
            let tail = ".\(suffix)."
            if from.hasSuffix(tail) { candidate = CorefileHost(String(from.dropLast(tail.count))) }
        } else if words.count == 8, words.starts(with: ["rewrite", "stop", "name", "regex"]) {
            let from = words[4]
            if from.hasPrefix(Self.labelsPrefix), from.hasSuffix(Self.trailingDot) {
                let escaped = from.dropFirst(Self.labelsPrefix.count).dropLast(Self.trailingDot.count)
                let base = escaped.replacingOccurrences(of: #"\."#, with: ".")
                if base == suffix {
                    candidate = .everything
                } else if base.hasSuffix("." + suffix) {
                    candidate = CorefileHost("*." + base.dropLast(suffix.count + 1))
                }
            }
        }
        // Only what this type would write back for that host counts; anything else was edited by hand.
        guard let host = candidate, rule(for: host) == words else { throw .unrecognizedManagedLine(line: line) }
        return host
    }
}
