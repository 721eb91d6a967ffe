/// Where the project's byte-level JSON writers put bytes: a growing `[UInt8]` (`KubeAPI`'s request bodies,
/// `Observability`'s log lines), or memory sized in advance (the proxy's access log, which writes one line per
/// request and cannot afford an array's bookkeeping on every append).
public protocol JSONOutput {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>)
}

extension Array: JSONOutput where Element == UInt8 {}

extension JSONOutput {
    /// Appends `text` as a JSON string literal.
    @inlinable
    public mutating func appendQuoted(_ text: String) {
        // Scanned as one contiguous buffer: walking `String.UTF8View` index by index costs several times more.
        if text.utf8.withContiguousStorageIfAvailable({ self.appendQuoted(utf8: $0) }) != nil { return }
        var text = text
        text.withUTF8 { self.appendQuoted(utf8: $0) }
    }

    /// `"` and `\` are escaped, control bytes (C0 and DEL) too, as `\n`, `\r`, `\t` or `\u00XX`; everything else,
    /// UTF-8 included, passes through. Runs of bytes that need no escape are copied whole: the usual value (a host
    /// name, a method, a 600 KB Corefile between its line breaks) is one or a few copies. At most
    /// `JSONQuoting.maximumQuotedCount(text.count)` bytes.
    @inlinable
    public mutating func appendQuoted(utf8 text: UnsafeBufferPointer<UInt8>) {
        self.append(UInt8(ascii: "\""))
        var runStart = 0
        var index = JSONQuoting.firstEscape(text, from: 0)
        while index < text.count {
            self.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<index]))
            let byte = text[index]
            self.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): self.append(byte)
            case UInt8(ascii: "\n"): self.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): self.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): self.append(UInt8(ascii: "t"))
            default:
                self.append(UInt8(ascii: "u"))
                self.append(UInt8(ascii: "0"))
                self.append(UInt8(ascii: "0"))
                self.append(JSONQuoting.hexDigit(byte >> 4))
                self.append(JSONQuoting.hexDigit(byte & 0xF))
            }
            runStart = index + 1
            index = JSONQuoting.firstEscape(text, from: runStart)
        }
        self.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart...]))
        self.append(UInt8(ascii: "\""))
    }

    @inlinable
    public mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { self.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func appendInteger(_ value: Int) {
        self.appendDecimal(value)
    }

    /// Milliseconds with up to three decimals, trailing zeros dropped: `1.234`, `0.5`, `12.0`.
    @inlinable
    public mutating func appendMilliseconds(microseconds: Int) {
        if microseconds < 0 { self.append(UInt8(ascii: "-")) }
        let magnitude = microseconds.magnitude
        self.appendDigits(magnitude / 1000)
        self.append(UInt8(ascii: "."))
        var fraction = magnitude % 1000
        var width = 3
        while width > 1, fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        self.appendDigits(fraction, width: width)
    }

    /// The decimal digits of `value`, left-padded with zeros to `width`, after a `-` if it is negative.
    @inlinable
    public mutating func appendDecimal(_ value: Int, width: Int = 1) {
        if value < 0 { self.append(UInt8(ascii: "-")) }
        // The magnitude, unsigned: `-Int.min` does not fit in an `Int`.
        self.appendDigits(value.magnitude, width: width)
    }

    /// The decimal digits of `value`, left-padded with zeros to `width`.
    @inlinable
    mutating func appendDigits(_ value: UInt, width: Int = 1) {
        var divisor: UInt = 1
        var digits = 1
        while divisor <= value / 10 {
            divisor *= 10
            digits += 1
        }
        for _ in digits..<max(digits, width) { self.append(UInt8(ascii: "0")) }
        var rest = value
        while divisor > 0 {
            self.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// The escaping rules of `JSONOutput.appendQuoted`, which the project's byte writers share: `KubeAPI`'s request
/// bodies (`JSONValue.compactJSON()`), `Observability`'s log lines and the proxy's access log.
public enum JSONQuoting {
    /// The most bytes a string of `count` UTF-8 bytes can take quoted: every byte a `\u00XX`, and the quotes.
    public static func maximumQuotedCount(_ count: Int) -> Int { 6 * count + 2 }

    @inlinable @inline(__always)
    static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// The index of the first byte at or after `start` that `needsEscape`, or `text.count`. Eight bytes at a time:
    /// most strings (host names, methods, paths) need no escape at all, and four comparisons per byte showed up in
    /// the proxy's access log.
    @inlinable
    public static func firstEscape(_ text: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var index = start
        if let base = text.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highBits: UInt64 = 0x8080_8080_8080_8080
            while index + 8 <= text.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
                // The high bit of each byte below 0x20 (bytes from 0x80 never count), and of each DEL, `"` and `\`
                // (zero after the xor). A borrow can also mark a byte above a marked one, never below: the lowest
                // mark is the first byte to escape.
                let delete = word ^ (ones &* 0x7F)
                let quote = word ^ (ones &* 0x22)
                let backslash = word ^ (ones &* 0x5C)
                let control = (word &- ones &* 0x20) & ~word
                let equal = (delete &- ones) & ~delete | (quote &- ones) & ~quote | (backslash &- ones) & ~backslash
                let marks = (control | equal) & highBits
                if marks != 0 { return index + marks.trailingZeroBitCount >> 3 }
                index += 8
            }
        }
        while index < text.count, !Self.needsEscape(text[index]) { index += 1 }
        return index
    }

    @inlinable
    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
