import Foundation

// A tokenizer and block finder for the Corefile dialect CoreDNS reads (its fork of the Caddy v1 lexer). It mirrors
// that lexer where it matters for finding braces: tokens are separated by whitespace; `#` outside a quoted token
// starts a comment that runs to the end of the line, even in the middle of a word; a quote opens a quoted token only
// at the start of a token, `\"` escapes a quote inside it and a quoted token may span lines; `{` and `}` count as
// braces only when they are whole tokens (so `{1}` or `{$ENV}` are plain words). Positions are Unicode scalar
// offsets, so edits put back every other scalar, `\r\n` included, exactly as it was.

/// One word of a Corefile, with where it starts and ends.
struct CorefileToken: Sendable {
    let text: String
    /// Offset of its first scalar (the opening quote for a quoted token).
    let start: Int
    /// Offset one past its last scalar.
    let end: Int
    let line: Int
    /// The line its last scalar is on; differs from `line` only for a quoted token spanning lines.
    let endLine: Int
}

/// A `#` comment, from the `#` up to (not including) the line break.
struct CorefileComment: Sendable {
    let start: Int
    let end: Int
    let line: Int
    let text: String

    /// A begin or end marker of the managed block, matched loosely (any spacing, any tail) so that a damaged one is
    /// reported instead of ignored.
    var isMarkerLike: Bool { isBeginMarkerLike || markerBody.hasPrefix("egress-operator: end managed block") }
    var isBeginMarkerLike: Bool { markerBody.hasPrefix("egress-operator: begin managed block") }
    private var markerBody: String { text.dropFirst().trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// A top-level `keys... { ... }` block: a server block, or a `(snippet)` definition.
struct CorefileServerBlock: Sendable {
    let keys: [String]
    /// Index into the token list of the block's opening `{`.
    let open: Int
    /// Index into the token list of the block's closing `}`.
    let close: Int

    /// Whether this block serves the root zone: a key `.` or `.:PORT`, with or without a `scheme://` prefix.
    var servesRoot: Bool { keys.contains(where: Self.isRootKey) }

    /// A key's parts, lowercased: its scheme (nil when it has none), the zone as written and the port (nil when
    /// the key has none): `dns://Local.:53` → (`dns`, `local.`, `53`).
    private static func parts(ofKey key: String) -> (scheme: Substring?, zone: Substring, port: Substring?) {
        var rest = Substring(key.lowercased())
        var scheme: Substring?
        if let separator = rest.range(of: "://") {
            scheme = rest[..<separator.lowerBound]
            rest = rest[separator.upperBound...]
        }
        guard let colon = rest.firstIndex(of: ":") else { return (scheme, rest, nil) }
        return (scheme, rest[..<colon], rest[rest.index(after: colon)...])
    }

    /// The zone a server block key names, lowercased and without scheme, port or trailing dot (`dns://Local.:53` →
    /// `local`); nil for the root and for a `(snippet)` name.
    static func zone(ofKey key: String) -> String? {
        if key.hasPrefix("(") { return nil }
        var zone = parts(ofKey: key).zone
        while zone.hasSuffix(".") { zone = zone.dropLast() }
        return zone.isEmpty ? nil : String(zone)
    }

    /// Where a key's block listens, as `scheme:port` (`local:53` and `dns://local` → `dns:53`): CoreDNS picks the
    /// block with the longest matching zone only among the blocks on the same listener.
    static func listener(ofKey key: String) -> String {
        let (scheme, _, port) = parts(ofKey: key)
        let name = scheme.map(String.init) ?? "dns"
        let defaultPort =
            switch name {
            case "tls", "quic": "853"
            case "grpc", "https", "https3": "443"
            default: "53"
            }
        return "\(name):\(port.map(String.init) ?? defaultPort)"
    }

    static func isRootKey(_ key: String) -> Bool {
        let (_, zone, port) = parts(ofKey: key)
        guard zone == "." else { return false }
        guard let port else { return true }
        return !port.isEmpty && port.allSatisfy { $0.isASCII && $0.isNumber }
    }
}

/// A Corefile split into tokens, comments and top-level blocks, with line helpers for byte-exact edits.
struct CorefileSource: Sendable {
    let scalars: [Unicode.Scalar]
    let tokens: [CorefileToken]
    let comments: [CorefileComment]
    let blocks: [CorefileServerBlock]
    /// Brace depth after each token: 1 directly inside a top-level block, 2 inside a plugin's own block, and so on.
    let depthAfter: [Int]

    init(_ text: String) throws(CorefileError) {
        scalars = Array(text.unicodeScalars)
        (tokens, comments) = try Self.lex(scalars)
        (blocks, depthAfter) = try Self.parseBlocks(tokens)
    }

    // MARK: Lexing

    /// The text of a run of scalars, encoded straight to UTF-8 (`String.UnicodeScalarView(slice)` went through
    /// unspecialized generic code, the lexer's largest cost on a Corefile with thousands of rules).
    static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        String(unsafeUninitializedCapacity: scalars.count * 4) { buffer in
            var count = 0
            for scalar in scalars {
                UTF8.encode(scalar) { byte in
                    buffer[count] = byte
                    count += 1
                }
            }
            return count
        }
    }

    /// Unicode's White_Space, answered without a property lookup for ASCII (nearly every scalar of a Corefile: the
    /// lookup was a large share of lexing one with thousands of rules).
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x20: true
        case 0..<0x80: false
        default: scalar.properties.isWhitespace
        }
    }

    private static func lex(
        _ scalars: [Unicode.Scalar]
    ) throws(CorefileError) -> ([CorefileToken], [CorefileComment]) {
        var tokens: [CorefileToken] = []
        var comments: [CorefileComment] = []
        var index = scalars.first == "\u{FEFF}" ? 1 : 0  // CoreDNS skips a byte order mark
        var line = 1
        let count = scalars.count
        while index < count {
            let scalar = scalars[index]
            if scalar == "\n" {
                line += 1
                index += 1
            } else if Self.isWhitespace(scalar) {
                index += 1
            } else if scalar == "#" {
                let start = index
                while index < count, scalars[index] != "\n" { index += 1 }
                comments.append(
                    CorefileComment(
                        start: start,
                        end: index,
                        line: line,
                        text: Self.string(scalars[start..<index])
                    )
                )
            } else if scalar == "\"" {
                let start = index
                let startLine = line
                var text = String.UnicodeScalarView()
                var closed = false
                index += 1
                while index < count {
                    let inner = scalars[index]
                    if inner == "\\", index + 1 < count {
                        let escaped = scalars[index + 1]
                        if escaped != "\"" { text.append("\\") }  // only quotes can be escaped
                        text.append(escaped)
                        if escaped == "\n" { line += 1 }
                        index += 2
                        continue
                    }
                    index += 1
                    if inner == "\"" {
                        closed = true
                        break
                    }
                    if inner == "\n" { line += 1 }
                    text.append(inner)
                }
                guard closed else { throw .unterminatedQuote(line: startLine) }
                tokens.append(
                    CorefileToken(
                        text: String(text),
                        start: start,
                        end: index,
                        line: startLine,
                        endLine: line
                    )
                )
            } else {
                let start = index
                while index < count, !Self.isWhitespace(scalars[index]), scalars[index] != "#" { index += 1 }
                let text = Self.string(scalars[start..<index])
                tokens.append(CorefileToken(text: text, start: start, end: index, line: line, endLine: line))
            }
        }
        return (tokens, comments)
    }

    // MARK: Blocks

    private static func parseBlocks(
        _ tokens: [CorefileToken]
    ) throws(CorefileError) -> ([CorefileServerBlock], [Int]) {
        var blocks: [CorefileServerBlock] = []
        var depthAfter = [Int](repeating: 0, count: tokens.count)
        func startsLine(_ index: Int) -> Bool { index == 0 || tokens[index - 1].endLine < tokens[index].line }

        var index = 0
        while index < tokens.count {
            // A top-level `import` pulls in whole server blocks from elsewhere; its arguments end with the line.
            if tokens[index].text == "import", startsLine(index) {
                index += 1
                while index < tokens.count, !startsLine(index) { index += 1 }
                continue
            }
            // Keys run to `{` or to the end of the line, unless a trailing comma promises another key.
            var keys: [String] = []
            while index < tokens.count {
                let text = tokens[index].text
                if text == "{" { break }
                if text == "}" { throw .unbalancedBraces(line: tokens[index].line) }
                let continues = text.hasSuffix(",")
                let key = continues ? String(text.dropLast()) : text
                if !key.isEmpty { keys.append(key) }
                index += 1
                if !continues, index < tokens.count, startsLine(index) { break }
            }
            guard index < tokens.count, tokens[index].text == "{" else {
                // CoreDNS accepts a single server block without braces; editing one safely is out of scope.
                throw .missingOpeningBrace(line: tokens[min(index, tokens.count) - 1].line)
            }
            let open = index
            var depth = 1
            depthAfter[open] = 1
            index += 1
            while index < tokens.count {
                switch tokens[index].text {
                case "{": depth += 1
                case "}": depth -= 1
                default: break
                }
                depthAfter[index] = depth
                if depth == 0 { break }
                index += 1
            }
            guard index < tokens.count else { throw .unbalancedBraces(line: tokens[open].line) }
            blocks.append(CorefileServerBlock(keys: keys, open: open, close: index))
            index += 1
        }
        return (blocks, depthAfter)
    }

    // MARK: Lines

    func startsLine(token index: Int) -> Bool {
        index == 0 || tokens[index - 1].endLine < tokens[index].line
    }

    /// Offset of the first scalar of the line holding `offset`.
    func lineStart(_ offset: Int) -> Int {
        var index = offset
        while index > 0, scalars[index - 1] != "\n" { index -= 1 }
        return index
    }

    /// Offset just past the line break ending the line holding `offset` (the end of the text if there is none).
    func lineEndIncludingBreak(_ offset: Int) -> Int {
        var index = offset
        while index < scalars.count, scalars[index] != "\n" { index += 1 }
        return min(index + 1, scalars.count)
    }

    /// The whitespace between the start of the line and `offset`.
    func leadingWhitespace(_ offset: Int) -> String {
        Self.string(scalars[lineStart(offset)..<offset])
    }

    /// The run of spaces and tabs that starts the line holding `offset`.
    func indentation(ofLineAt offset: Int) -> String {
        Self.string(scalars[lineStart(offset)...].prefix { $0 == " " || $0 == "\t" })
    }

    /// Whether only spaces and tabs precede `offset` on its line.
    func isFirstOnLine(_ offset: Int) -> Bool {
        scalars[lineStart(offset)..<offset].allSatisfy { $0 != "\n" && Self.isWhitespace($0) }
    }

    /// The line break style of the line holding `offset`, so inserted lines match their neighbours.
    func lineBreak(at offset: Int) -> String {
        let end = lineEndIncludingBreak(offset)
        guard end > 0, scalars[end - 1] == "\n" else { return "\n" }
        return end >= 2 && scalars[end - 2] == "\r" ? "\r\n" : "\n"
    }

    /// Brace depth at `offset` (e.g. a comment's position): the depth after the last token before it.
    func depth(at offset: Int) -> Int {
        var low = 0
        var high = tokens.count
        while low < high {
            let mid = (low + high) / 2
            if tokens[mid].start < offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? 0 : depthAfter[low - 1]
    }

    /// The top-level block whose braces enclose `offset`, as an index into `blocks`.
    func block(containing offset: Int) -> Int? {
        blocks.firstIndex { tokens[$0.open].end <= offset && offset < tokens[$0.close].start }
    }

    /// Groups the tokens between two offsets into directives: a directive starts on a new line at the outer depth
    /// and owns its `{ ... }` block. Returns token index ranges.
    func directives(from start: Int, to end: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var index = tokens.firstIndex { $0.start >= start } ?? tokens.count
        var depth = 0
        var current: Int?
        while index < tokens.count, tokens[index].start < end {
            if depth == 0, startsLine(token: index) {
                if let first = current { result.append(first..<index) }
                current = index
            }
            if tokens[index].text == "{" { depth += 1 }
            if tokens[index].text == "}" { depth -= 1 }
            index += 1
        }
        if let first = current { result.append(first..<index) }
        return result
    }
}
