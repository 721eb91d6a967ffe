/// The byte-level JSON string writer the project's byte writers share: `KubeAPI`'s request bodies
/// (`JSONValue.compactJSON()`) and `Observability`'s log lines (the proxy's access log among them).
public enum JSONQuoting {
    /// Appends `text` as a JSON string literal. `"` and `\` are escaped, control bytes (C0 and DEL) too, as `\n`,
    /// `\r`, `\t` or `\u00XX`; everything else, UTF-8 included, passes through. Runs of bytes that need no escape
    /// are copied whole: the usual value (a host name, a method, a 600 KB Corefile between its line breaks) is one
    /// or a few copies.
    public static func append(_ text: String, to out: inout [UInt8]) {
        // Scanned as one contiguous buffer: walking `String.UTF8View` index by index costs several times more.
        var text = text
        text.withUTF8 { append(utf8: $0, to: &out) }
    }

    public static func append(utf8 text: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var runStart = 0
        for index in text.indices where needsEscape(text[index]) {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<index]))
            let byte = text[index]
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
            case UInt8(ascii: "\n"): out.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): out.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): out.append(UInt8(ascii: "t"))
            default:
                out.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0xF))
            }
            runStart = index + 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart...]))
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
