import Foundation

/// How allowed hosts become CoreDNS rules; the trade-off is where names that are not allowed get stopped.
public enum CoreDNSRuleMode: String, Sendable, Hashable, CaseIterable {
    /// One `rewrite` per allowed host, so a name that is not allowed never resolves. CoreDNS tries rules in
    /// order, so the cost per query grows with the host count.
    case perHost
    /// One anchored rule for the whole suffix: constant size and cost for large host sets, but every
    /// `*.SUFFIX` name resolves to the proxy and the proxy's allow-list is the only enforcement point.
    case suffix
}

/// Keeps the egress rules in a Corefile: a pure function of (Corefile text, hosts, settings) to the new text.
///
/// The editor owns exactly one block per server block that serves `.` (key `.`, `.:PORT`, `dns://.:53`, ...),
/// delimited by `beginMarker` and `endMarker`. Every `.` block gets the same rules, because queries may reach any of
/// them (different ports, `view`s) and the allow-list must hold on each. A new block goes right after the line that
/// opens the server block, indented like that block's first line; later runs replace it where it stands, with its
/// own indentation. Everything else is kept byte for byte; running twice changes nothing; with no hosts the block
/// goes and the text is what it was before the block was added. See `CorefileRules` for the rule forms (CoreDNS
/// 1.8.4 or newer for wildcards and `.suffix`).
public struct CorefileEditor: Sendable, Hashable {
    /// First line of the managed block; found by its text, so it must stay a line of its own.
    public static let beginMarker = "# egress-operator: begin managed block (do not edit)"
    /// Last line of the managed block.
    public static let endMarker = "# egress-operator: end managed block"
    /// The `coredns-custom` ConfigMap key for `overrideSnippet`; k3s and AKS `import` `*.override` inside `.:53`.
    public static let overrideFileName = "egress-operator.override"

    /// Zone the clients append to real hosts (`api.github.com.egress.local`), lowercase without trailing dot.
    public let suffix: String
    /// Name every allowed host is rewritten to, lowercase without trailing dot.
    public let proxyServiceFQDN: String
    /// One rule per host, or one for the whole suffix; see `CoreDNSRuleMode` for the trade-off.
    public let mode: CoreDNSRuleMode

    /// Validates the names up front, since they are written into the Corefile unquoted and into regexes.
    /// The proxy may not live under the suffix: the suffix's NXDOMAIN template would then swallow it.
    public init(
        suffix: String = "egress.local",
        proxyServiceFQDN: String,
        mode: CoreDNSRuleMode = .perHost
    ) throws(CorefileError) {
        guard let zone = CorefileNames.normalized(suffix) else { throw .invalidSuffix(suffix) }
        guard let proxy = CorefileNames.normalized(proxyServiceFQDN), proxy.contains(".") else {
            throw .invalidProxyServiceFQDN(proxyServiceFQDN)
        }
        guard !CorefileNames.isWithin(proxy, zone: zone) else { throw .invalidProxyServiceFQDN(proxyServiceFQDN) }
        if let problem = CorefileNames.suffixProblem(zone, proxyServiceFQDN: proxy) {
            throw .unsafeSuffix(suffix, problem)
        }
        self.suffix = zone
        self.proxyServiceFQDN = proxy
        self.mode = mode
    }

    private var rules: CorefileRules { CorefileRules(suffix: suffix, proxyServiceFQDN: proxyServiceFQDN) }

    /// Returns the Corefile with the managed block set to exactly these hosts (removed when there are none).
    /// Hosts are `name` or `*.name` (or `*` for the whole suffix); duplicates go, exact names come first, each
    /// group sorted. Throws, and changes nothing, when the Corefile cannot be parsed, has no `.` server block,
    /// has broken markers, or a host is not a plain DNS name.
    public func apply(hosts: [String], to corefile: String) throws(CorefileError) -> String {
        try edit(hosts: hosts, in: corefile).corefile
    }

    /// `apply(hosts:to:)`, also returning the hosts the result holds: what `managedHosts(in:)` would parse back from
    /// it. The operator reads its own write back on the next pass, and parsing thousands of rules costs time.
    public func edit(
        hosts: [String],
        in corefile: String
    ) throws(CorefileError) -> (corefile: String, managedHosts: [String]) {
        let result = try edit(hosts: hosts, in: corefile, after: nil)
        return (result.corefile, result.managedHosts)
    }

    /// One edit's result, with where its managed blocks sit, so that the next edit of this same text needs no parse.
    public struct Edit: Sendable {
        public let corefile: String
        public let managedHosts: [String]
        /// The text outside the managed blocks, and a block (indentation, line break) between each two pieces;
        /// nil when there are no blocks (a new one would go where a parse decides).
        fileprivate let layout: (pieces: [String], blocks: [(indent: String, lineBreak: String)])?
        /// The hosts and rule lines of the blocks, for the next edit to reuse.
        fileprivate var rendered: CorefileRules.Rendered? = nil

        /// Whether editing `corefile` again (passing this as `after`) skips the parse: it has managed blocks.
        public var isReusable: Bool { layout != nil }
    }

    /// `edit(hosts:in:)`. When `corefile` is exactly the text `previous` wrote, its blocks are replaced where they
    /// are without parsing it again: with thousands of rules the parse was most of a pass's work on every change.
    /// The result is byte for byte what a parse would give (tested), since only this editor writes inside blocks.
    public func edit(hosts: [String], in corefile: String, after previous: Edit?) throws(CorefileError) -> Edit {
        let canonicalHosts = try canonical(hosts)
        let managed = canonicalHosts.map(\.spelling)
        let lines = rules.lines(for: canonicalHosts, reusing: previous?.rendered)
        let rendered = (rules, canonicalHosts, lines)
        if let previous, let layout = previous.layout, !lines.isEmpty, previous.corefile.sameBytes(as: corefile) {
            return assemble(layout, lines, managed, rendered)
        }
        let source = try CorefileSource(corefile)
        let roots = source.blocks.indices.filter { source.blocks[$0].servesRoot }
        // Nothing to write and nothing to remove: a Corefile this editor need not touch is fine as it is, whatever
        // its shape (in `custom` mode the rules live elsewhere, and the `.` block may be in an imported file).
        if lines.isEmpty, !source.comments.contains(where: \.isMarkerLike) {
            return Edit(corefile: corefile, managedHosts: managed, layout: nil)
        }
        guard !roots.isEmpty else { throw .noRootServerBlock }
        if !lines.isEmpty { try checkNoOtherBlockServesSuffix(source) }
        let regions = try managedRegions(in: source)

        // Where each block goes: replacing a region, or inserted after the line that opens a `.` block.
        var slots: [(range: Range<Int>, indent: String, lineBreak: String)] = []
        for root in roots {
            if let region = regions[root] {
                let begin = source.comments[region.begin]
                let end = source.comments[region.end]
                slots.append(
                    (
                        source.lineStart(begin.start)..<source.lineEndIncludingBreak(end.start),
                        source.leadingWhitespace(begin.start), source.lineBreak(at: begin.start)
                    )
                )
            } else if !lines.isEmpty {
                let block = source.blocks[root]
                let open = source.tokens[block.open]
                let first = source.tokens[block.open + 1]
                guard first.line > open.endLine else { throw .unsupportedLayout(line: open.line) }
                let indent: String
                if block.open + 1 == block.close {
                    let outer = source.indentation(ofLineAt: open.start)
                    indent = outer + (outer.contains("\t") ? "\t" : "    ")
                } else {
                    indent = source.leadingWhitespace(first.start)
                }
                let position = source.lineEndIncludingBreak(open.end)
                slots.append((position..<position, indent, source.lineBreak(at: open.end)))
            }
        }
        guard !slots.isEmpty else { return Edit(corefile: corefile, managedHosts: managed, layout: nil) }
        var pieces: [String] = []
        var cursor = 0
        for slot in slots {
            pieces.append(CorefileSource.string(source.scalars[cursor..<slot.range.lowerBound]))
            cursor = slot.range.upperBound
        }
        pieces.append(CorefileSource.string(source.scalars[cursor...]))
        let layout = (pieces, slots.map { (indent: $0.indent, lineBreak: $0.lineBreak) })
        return assemble(layout, lines, managed, rendered)
    }

    /// CoreDNS answers a name from the server block with the longest zone that holds it, among the blocks on the
    /// same port: a block for `local`, `egress.local` or a name under it, listening where a `.` block does, would
    /// take the suffix's names away from the rules in `.`.
    private func checkNoOtherBlockServesSuffix(_ source: CorefileSource) throws(CorefileError) {
        let suffixLabels = suffix.split(separator: ".")
        let rootListeners = Set(
            source.blocks.flatMap { $0.keys.filter(CorefileServerBlock.isRootKey).map(CorefileServerBlock.listener) }
        )
        for block in source.blocks where !block.servesRoot {
            for key in block.keys where rootListeners.contains(CorefileServerBlock.listener(ofKey: key)) {
                guard let zone = CorefileServerBlock.zone(ofKey: key) else { continue }
                let zoneLabels = zone.split(separator: ".")
                let holdsSuffix =
                    suffixLabels.count >= zoneLabels.count
                    && suffixLabels.suffix(zoneLabels.count).elementsEqual(zoneLabels)
                let underSuffix =
                    zoneLabels.count > suffixLabels.count
                    && zoneLabels.suffix(suffixLabels.count).elementsEqual(suffixLabels)
                if holdsSuffix || underSuffix {
                    throw .suffixServedElsewhere(line: source.tokens[block.open].line, zone: zone)
                }
            }
        }
    }

    /// The pieces with the rules' block between each two (no blocks when there are no lines).
    private func assemble(
        _ layout: (pieces: [String], blocks: [(indent: String, lineBreak: String)]),
        _ lines: [(level: Int, text: String)],
        _ managed: [String],
        _ rendered: CorefileRules.Rendered
    ) -> Edit {
        let blocks = layout.blocks.map { render(lines, indent: $0.indent, lineBreak: $0.lineBreak) }
        var result = ""
        result.reserveCapacity(layout.pieces.reduce(0) { $0 + $1.utf8.count } + blocks.reduce(0) { $0 + $1.utf8.count })
        for (index, piece) in layout.pieces.enumerated() {
            if index > 0 { result += blocks[index - 1] }
            result += piece
        }
        return Edit(
            corefile: result,
            managedHosts: managed,
            layout: lines.isEmpty ? nil : layout,
            rendered: rendered
        )
    }

    /// The hosts the managed block(s) hold now, in canonical order (`*` for a suffix rule); empty without a block.
    /// Throws if the block was edited into something this editor would not have written.
    public func managedHosts(in corefile: String) throws(CorefileError) -> [String] {
        let source = try CorefileSource(corefile)
        var hosts = Set<CorefileHost>()
        for region in try managedRegions(in: source).values {
            let begin = source.comments[region.begin]
            let end = source.comments[region.end]
            for directive in source.directives(from: begin.end, to: end.start) {
                let words = source.tokens[directive].map(\.text)
                let line = source.tokens[directive.lowerBound].line
                if case .rule(let host) = try rules.directive(words, line: line) { hosts.insert(host) }
            }
        }
        return hosts.sorted().map(\.spelling)
    }

    /// The hosts an `overrideSnippet` holds (read back from the `coredns-custom` ConfigMap).
    public func managedHosts(inOverrideSnippet snippet: String) throws(CorefileError) -> [String] {
        guard !snippet.isEmpty else { return [] }
        // A snippet re-applied through YAML may have lost its last line break.
        let body = snippet.hasSuffix("\n") ? snippet : snippet + "\n"
        return try managedHosts(in: ". {\n\(Self.beginMarker)\n\(body)\(Self.endMarker)\n}\n")
    }

    /// The managed rules as the text of the `egress-operator.override` key of the `coredns-custom` ConfigMap, so a
    /// cluster whose Corefile already imports `*.override` into `.:53` (k3s, AKS) needs no Corefile edit. No
    /// markers: the operator owns the whole key. Empty when there are no hosts.
    public func overrideSnippet(hosts: [String]) throws(CorefileError) -> String {
        let lines = rules.lines(for: try canonical(hosts))
        guard !lines.isEmpty else { return "" }
        return "# Written by egress-operator; edits are overwritten.\n"
            + lines.map { line in
                String(repeating: "    ", count: line.level) + line.text + "\n"
            }.joined()
    }

    /// Whether a server block loads the `reload` plugin (which makes CoreDNS pick up edits without a restart): a
    /// `reload` directive directly in the block, not a plugin's own `reload` option (`hosts … { reload 15s }`) nor
    /// a word in a comment. The operator caches the answer per Corefile text: the parse is the cost.
    public static func loadsReload(in corefile: String) throws(CorefileError) -> Bool {
        let source = try CorefileSource(corefile)
        for block in source.blocks where !block.keys.contains(where: { $0.hasPrefix("(") }) {
            let body = source.directives(from: source.tokens[block.open].end, to: source.tokens[block.close].start)
            if body.contains(where: { source.tokens[$0.lowerBound].text == "reload" }) { return true }
        }
        return false
    }

    /// Whether a `.` server block already `import`s `*.override` files (k3s, AKS), i.e. `overrideSnippet` is enough.
    public static func importsOverrideFiles(in corefile: String) throws(CorefileError) -> Bool {
        let source = try CorefileSource(corefile)
        for block in source.blocks where block.servesRoot {
            let body = source.directives(from: source.tokens[block.open].end, to: source.tokens[block.close].start)
            for directive in body where source.tokens[directive.lowerBound].text == "import" {
                if source.tokens[directive].dropFirst().contains(where: { $0.text.hasSuffix(".override") }) {
                    return true
                }
            }
        }
        return false
    }

    // MARK: Internals

    private func canonical(_ hosts: [String]) throws(CorefileError) -> [CorefileHost] {
        var all: [CorefileHost] = []
        all.reserveCapacity(hosts.count)
        for raw in hosts {
            guard let host = CorefileHost(raw) else { throw .invalidHost(raw) }
            let fullName: String? =
                switch host {
                case .exact(let name): name + "." + suffix
                case .wildcard(let base): "x." + base + "." + suffix
                case .everything: nil
                }
            if let fullName, fullName.utf8.count > CorefileNames.maximumLength { throw .invalidHost(raw) }
            all.append(host)
        }
        if all.isEmpty { return [] }
        // One suffix rule covers every host, so nothing else is written beside it.
        if mode == .suffix || all.contains(.everything) { return [.everything] }
        // Sorted and without duplicates. The operator passes names sorted as strings, which is canonical order within
        // each kind: sorting each kind only if it is out of order keeps thousands of hosts a linear pass.
        var exact: [CorefileHost] = []
        var wildcards: [CorefileHost] = []
        for host in all {
            if case .exact = host { exact.append(host) } else { wildcards.append(host) }
        }
        func sortedUnique(_ hosts: [CorefileHost]) -> [CorefileHost] {
            let inOrder = hosts.indices.dropFirst().allSatisfy { hosts[$0 - 1] <= hosts[$0] }
            let sorted = inOrder ? hosts : hosts.sorted()
            var unique: [CorefileHost] = []
            unique.reserveCapacity(sorted.count)
            for host in sorted where unique.last != host { unique.append(host) }
            return unique
        }
        return sortedUnique(exact) + sortedUnique(wildcards)
    }

    private func render(_ lines: [(level: Int, text: String)], indent: String, lineBreak: String) -> String {
        guard !lines.isEmpty else { return "" }
        let unit = indent.contains("\t") ? "\t" : "    "
        var text = indent + Self.beginMarker + lineBreak
        text.reserveCapacity(lines.reduce(text.utf8.count * 2) { $0 + indent.utf8.count + 8 + $1.text.utf8.count + 2 })
        for line in lines {
            text += indent
            for _ in 0..<line.level { text += unit }
            text += line.text
            text += lineBreak
        }
        return text + indent + Self.endMarker + lineBreak
    }

    /// Begin and end marker comments (indices into `source.comments`) per `.` block (index into `source.blocks`).
    private func managedRegions(in source: CorefileSource) throws(CorefileError) -> [Int: (begin: Int, end: Int)] {
        var regions: [Int: (begin: Int, end: Int)] = [:]
        var openBegin: [Int: Int] = [:]
        for (index, comment) in source.comments.enumerated() {
            guard comment.isMarkerLike else { continue }
            let isBegin = comment.isBeginMarkerLike
            guard source.isFirstOnLine(comment.start) else {
                throw .malformedMarkers(line: comment.line, .notOnOwnLine)
            }
            guard let block = source.block(containing: comment.start), source.blocks[block].servesRoot else {
                throw .malformedMarkers(line: comment.line, .outsideRootServerBlock)
            }
            guard source.depth(at: comment.start) == 1 else {
                throw .malformedMarkers(line: comment.line, .insidePluginBlock)
            }
            if isBegin {
                if let earlier = openBegin[block] {
                    throw .malformedMarkers(line: source.comments[earlier].line, .beginWithoutEnd)
                }
                if regions[block] != nil { throw .malformedMarkers(line: comment.line, .duplicateBlock) }
                openBegin[block] = index
            } else {
                guard let begin = openBegin.removeValue(forKey: block) else {
                    throw .malformedMarkers(line: comment.line, .endWithoutBegin)
                }
                regions[block] = (begin, index)
            }
        }
        if let dangling = openBegin.values.min() {
            throw .malformedMarkers(line: source.comments[dangling].line, .beginWithoutEnd)
        }
        return regions
    }
}

/// Why a Corefile was left alone; the caller keeps the current text and reports this.
public struct CorefileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What is wrong with the managed block's marker comments.
    public enum MarkerProblem: String, Sendable, Hashable {
        case beginWithoutEnd = "a begin marker has no end marker"
        case endWithoutBegin = "an end marker has no begin marker"
        case duplicateBlock = "a second managed block in the same server block"
        case notOnOwnLine = "a marker shares its line with other text"
        case outsideRootServerBlock = "a marker outside every `.` server block"
        case insidePluginBlock = "a marker inside a plugin's { } block"
    }

    private enum Code: Equatable, Sendable {
        case unbalancedBraces(line: Int)
        case unterminatedQuote(line: Int)
        case missingOpeningBrace(line: Int)
        case unsupportedLayout(line: Int)
        case noRootServerBlock
        case malformedMarkers(line: Int, MarkerProblem)
        case unrecognizedManagedLine(line: Int)
        case invalidHost(String)
        case invalidSuffix(String)
        case unsafeSuffix(String, String)
        case invalidProxyServiceFQDN(String)
        case suffixServedElsewhere(line: Int, zone: String)
    }

    private let code: Code
    private init(_ code: Code) { self.code = code }

    /// A `{` without its `}` (line of the `{`), or a `}` without a `{` (line of the `}`).
    public static func unbalancedBraces(line: Int) -> Self { Self(.unbalancedBraces(line: line)) }
    /// A quoted token runs to the end of the file.
    public static func unterminatedQuote(line: Int) -> Self { Self(.unterminatedQuote(line: line)) }
    /// A server block without `{` (CoreDNS allows that for a lone block; this editor does not edit one).
    public static func missingOpeningBrace(line: Int) -> Self { Self(.missingOpeningBrace(line: line)) }
    /// Something follows the `{` that opens a `.` block on its line, so there is no clean line to insert after.
    public static func unsupportedLayout(line: Int) -> Self { Self(.unsupportedLayout(line: line)) }
    /// No server block serves `.`, so there is nowhere the rules would take effect.
    public static let noRootServerBlock = Self(.noRootServerBlock)
    /// The marker comments do not delimit exactly one block per `.` server block.
    public static func malformedMarkers(line: Int, _ problem: MarkerProblem) -> Self {
        Self(.malformedMarkers(line: line, problem))
    }
    /// The managed block holds a line this editor did not write.
    public static func unrecognizedManagedLine(line: Int) -> Self { Self(.unrecognizedManagedLine(line: line)) }
    /// A host that is not `name`, `*.name` or `*` with `[a-z0-9_-]` labels, or too long with the suffix.
    public static func invalidHost(_ host: String) -> Self { Self(.invalidHost(host)) }
    /// A suffix that is not a plain DNS name.
    public static func invalidSuffix(_ suffix: String) -> Self { Self(.invalidSuffix(suffix)) }
    /// A suffix whose names could be real ones (`com`, `default.svc.cluster.local`): its NXDOMAIN answer would
    /// shadow them for the whole cluster. `reason` says which rule it breaks.
    public static func unsafeSuffix(_ suffix: String, _ reason: String) -> Self { Self(.unsafeSuffix(suffix, reason)) }
    /// A proxy Service name that is not a plain multi-label DNS name, or lies under the suffix.
    public static func invalidProxyServiceFQDN(_ name: String) -> Self { Self(.invalidProxyServiceFQDN(name)) }
    /// A server block other than `.` serves a zone holding the suffix (`local:53`, say): CoreDNS sends those names
    /// to it, so rules in `.` would never run for them.
    public static func suffixServedElsewhere(line: Int, zone: String) -> Self {
        Self(.suffixServedElsewhere(line: line, zone: zone))
    }

    /// Whether the rules CoreDNS has are of no use while this holds: another block takes the suffix's names, so
    /// not even the hosts already in the Corefile are routed.
    public var leavesRulesUnused: Bool {
        if case .suffixServedElsewhere = code { true } else { false }
    }

    /// One line for logs and status conditions, with the Corefile line where that applies.
    public var description: String {
        switch code {
        case .unbalancedBraces(let line): "Corefile line \(line): unbalanced braces"
        case .unterminatedQuote(let line): "Corefile line \(line): quoted string is never closed"
        case .missingOpeningBrace(let line): "Corefile line \(line): server block without '{'"
        case .unsupportedLayout(let line):
            "Corefile line \(line): text after the '{' that opens the '.' server block; move it to its own line"
        case .noRootServerBlock: "Corefile has no server block for '.'"
        case .malformedMarkers(let line, let problem):
            "Corefile line \(line): malformed egress-operator markers: \(problem.rawValue)"
        case .unrecognizedManagedLine(let line):
            "Corefile line \(line): unrecognised line in the egress-operator block"
        case .invalidHost(let host): "invalid egress host \"\(host)\""
        case .invalidSuffix(let suffix): "invalid egress DNS suffix \"\(suffix)\""
        case .unsafeSuffix(let suffix, let reason): "unsafe egress DNS suffix \"\(suffix)\": \(reason)"
        case .invalidProxyServiceFQDN(let name):
            "invalid proxy Service name \"\(name)\" (must be a DNS name outside the suffix)"
        case .suffixServedElsewhere(let line, let zone):
            "Corefile line \(line): the server block for \(zone) also serves the egress suffix, so CoreDNS would "
                + "send its names there and never apply the egress rules; serve the suffix from '.' only"
        }
    }
}

extension String {
    /// Byte equality (`==` compares canonical equivalence, which may normalise non-ASCII text first).
    func sameBytes(as other: String) -> Bool {
        var a = self
        var b = other
        guard a.utf8.count == b.utf8.count else { return false }
        return a.withUTF8 { x in
            b.withUTF8 { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }
}
