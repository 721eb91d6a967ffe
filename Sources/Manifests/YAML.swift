/// Renders `JSON` values as block-style YAML, the way people write Kubernetes manifests.
///
/// A small emitter of our own (rather than a YAML library) keeps `Manifests` free of dependencies and makes the
/// output exact: keys in written order, sequences indented under their key as kubectl prints them, multi-line strings
/// (a Corefile, the allow-list JSON) as literal blocks, and every string that a YAML 1.1 or 1.2 reader could take
/// for something else (`"true"`, `"443"`, `"10.0.0.0/8"`, `"on"`) quoted.
public enum YAML {
    /// One document, ending in a newline.
    public static func render(_ value: JSON) -> String {
        switch value {
        case .object(let members) where !members.isEmpty:
            return lines(value, indent: 0).joined(separator: "\n") + "\n"
        case .array(let values) where !values.isEmpty:
            return lines(value, indent: 0).joined(separator: "\n") + "\n"
        default:
            return scalar(value) + "\n"
        }
    }

    /// Several documents separated by `---`.
    public static func renderStream(_ values: [JSON]) -> String {
        values.map(render).joined(separator: "---\n")
    }

    private static func lines(_ value: JSON, indent: Int) -> [String] {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .object(let members) where !members.isEmpty:
            var out: [String] = []
            for (key, member) in members {
                let head = pad + scalar(.string(key)) + ":"
                switch member {
                case .object(let nested) where !nested.isEmpty:
                    out.append(head)
                    out += lines(member, indent: indent + 2)
                case .array(let nested) where !nested.isEmpty:
                    out.append(head)
                    out += lines(member, indent: indent)
                case .string(let text) where isBlockCandidate(text):
                    out += block(text, head: head, indent: indent + 2)
                default:
                    out.append(head + " " + scalar(member))
                }
            }
            return out
        case .array(let values) where !values.isEmpty:
            var out: [String] = []
            for element in values {
                switch element {
                case .object(let nested) where !nested.isEmpty:
                    out += itemize(lines(element, indent: indent + 2), indent: indent)
                case .array(let nested) where !nested.isEmpty:
                    out += itemize(lines(element, indent: indent + 2), indent: indent)
                case .string(let text) where isBlockCandidate(text):
                    out += block(text, head: pad + "-", indent: indent + 2)
                default:
                    out.append(pad + "- " + scalar(element))
                }
            }
            return out
        default:
            return [pad + scalar(value)]
        }
    }

    /// Turns the first line of an indented nested block into a sequence item (`- key: value`).
    private static func itemize(_ nested: [String], indent: Int) -> [String] {
        guard let first = nested.first else { return nested }
        let marker = String(repeating: " ", count: indent) + "- "
        return [marker + first.dropFirst(indent + 2)] + nested.dropFirst()
    }

    /// Multi-line text as a literal block scalar with an explicit chomping indicator, so it reads back exactly.
    private static func block(_ text: String, head: String, indent: Int) -> [String] {
        let pad = String(repeating: " ", count: indent)
        // `|` keeps the one final newline, `|-` strips it; more trailing newlines are quoted instead.
        let chomp = text.hasSuffix("\n") ? "" : "-"
        let body = text.hasSuffix("\n") ? text.dropLast() : Substring(text)
        let content = body.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.isEmpty ? "" : pad + $0
        }
        return [head + " |" + chomp] + content
    }

    private static func isBlockCandidate(_ text: String) -> Bool {
        guard text.contains("\n"), let first = text.first, first != " ", first != "\t" else { return false }
        // Literal blocks cannot carry other control characters or trailing spaces that a reader would keep.
        return text.unicodeScalars.allSatisfy { $0 == "\n" || $0 == "\t" || ($0.value >= 0x20 && $0.value != 0x7F) }
            && !text.contains("\r") && !text.split(separator: "\n").contains { $0.hasSuffix(" ") }
            && !text.hasSuffix("\n\n")
    }

    static func scalar(_ value: JSON) -> String {
        switch value {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .int(let value): String(value)
        case .string(let text): isPlainSafe(text) ? text : quoted(text)
        case .array: "[]"
        case .object: "{}"
        }
    }

    private static let ambiguousWords: Set<String> = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ]

    /// Plain only when no YAML reader could parse it as anything but this string.
    private static func isPlainSafe(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        guard !ambiguousWords.contains(text.lowercased()) else { return false }
        return text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                || "-_./".unicodeScalars.contains($0)
        }
    }

    /// A JSON string is a valid YAML double-quoted scalar.
    private static func quoted(_ text: String) -> String {
        var out = ""
        JSON.writeQuoted(text, to: &out)
        return out
    }
}
