/// Why a JSON text could not be read, with the byte offset where reading stopped.
public struct JSONScanError: Error, CustomStringConvertible, Equatable, Sendable {
    public let offset: Int
    public let message: String

    public var description: String { "invalid JSON at byte \(offset): \(message)" }

    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }
}

/// A JSON number as written: an integer when it has no fraction or exponent and fits `Int64`, else its `Double`.
public enum JSONNumber: Equatable, Sendable {
    case integer(Int64)
    /// `whole` says whether it was written as an integer (one too large for `Int64`).
    case double(Double, whole: Bool)
}

/// The lexical layer of JSON (RFC 8259) over bytes: whitespace, literals, strings and numbers, one pass, no
/// intermediate values. The project's two JSON readers build their trees on it: `Manifests.JSONReader` (allow-lists:
/// member order kept, integers only, a streamed `hosts` array) and `KubeAPI`'s `JSONValue(parsing:)` (every watch
/// event and API response).
public struct JSONScanner {
    public let bytes: UnsafeRawBufferPointer
    /// The next byte to read.
    public var index = 0

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    // Inlinable: the readers call these around every value, across a module boundary.
    @inlinable
    public var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

    @inlinable
    public var atEnd: Bool { self.index >= self.bytes.count }

    public func error(_ message: String) -> JSONScanError { JSONScanError(offset: self.index, message: message) }

    @inlinable
    public mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    /// `true`, `false` or `null` at the current byte.
    public mutating func literal(_ word: StaticString) throws(JSONScanError) {
        let count = word.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count,
            word.withUTF8Buffer({ $0.elementsEqual(self.bytes[self.index..<self.index + count]) })
        else { throw self.error("invalid literal") }
        self.index += count
    }

    /// The string whose opening quote is the current byte. The common case (no escapes) is one scan and one
    /// validated copy; escaped strings copy runs of plain bytes at once.
    public mutating func string() throws(JSONScanError) -> String {
        self.index += 1
        let start = self.index
        var allBits: UInt8 = 0
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                let utf8 = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index])
                // ASCII (the usual case) is valid UTF-8 as it is; anything else is validated.
                let text = allBits < 0x80 ? String(decoding: utf8, as: UTF8.self) : try self.validated(utf8)
                self.index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw self.error("control character in a string") }
            allBits |= byte
            self.index += 1
        }
        var unescaped = [UInt8](UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]))
        while let byte = self.current {
            switch byte {
            case UInt8(ascii: "\""):
                self.index += 1
                guard let text = String(validating: unescaped, as: UTF8.self) else {
                    throw self.error("invalid UTF-8 in a string")
                }
                return text
            case UInt8(ascii: "\\"):
                self.index += 1
                try self.escape(into: &unescaped)
            case 0..<0x20:
                throw self.error("control character in a string")
            default:
                // A run of plain bytes is copied at once (a Corefile is lines between `\n` escapes).
                let run = self.index
                self.index += 1
                while self.index < self.bytes.count {
                    let next = self.bytes[self.index]
                    guard next >= 0x20, next != UInt8(ascii: "\""), next != UInt8(ascii: "\\") else { break }
                    self.index += 1
                }
                unescaped.append(contentsOf: UnsafeRawBufferPointer(rebasing: self.bytes[run..<self.index]))
            }
        }
        throw self.error("unterminated string")
    }

    private func validated(_ utf8: UnsafeRawBufferPointer) throws(JSONScanError) -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw self.error("invalid UTF-8 in a string") }
        return text
    }

    private mutating func escape(into unescaped: inout [UInt8]) throws(JSONScanError) {
        guard let byte = self.current else { throw self.error("unterminated escape") }
        self.index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): unescaped.append(byte)
        case UInt8(ascii: "b"): unescaped.append(0x08)
        case UInt8(ascii: "f"): unescaped.append(0x0C)
        case UInt8(ascii: "n"): unescaped.append(0x0A)
        case UInt8(ascii: "r"): unescaped.append(0x0D)
        case UInt8(ascii: "t"): unescaped.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try self.hex4()
            if (0xD800..<0xDC00).contains(scalar) {
                // A high surrogate must be followed by an escaped low one; together they are one scalar.
                guard self.index + 1 < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                    self.bytes[self.index + 1] == UInt8(ascii: "u")
                else { throw self.error("unpaired surrogate") }
                self.index += 2
                let low = try self.hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw self.error("unpaired surrogate") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let value = Unicode.Scalar(scalar) else { throw self.error("unpaired surrogate") }
            unescaped.append(contentsOf: UTF8.encode(value)!)
        default:
            throw self.error("invalid escape")
        }
    }

    private mutating func hex4() throws(JSONScanError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.error("unterminated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw self.error("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }

    /// The number at the current byte: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, finite.
    public mutating func number() throws(JSONScanError) -> JSONNumber {
        let start = self.index
        let negative = self.current == UInt8(ascii: "-")
        if negative { self.index += 1 }
        guard let first = self.current, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw self.error("invalid number")
        }
        var magnitude: UInt64 = 0
        var overflow = false
        if first == UInt8(ascii: "0") {
            self.index += 1
        } else {
            while let byte = self.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = sum
                self.index += 1
            }
        }
        var whole = true
        if self.current == UInt8(ascii: ".") {
            whole = false
            self.index += 1
            try self.digits()
        }
        if self.current == UInt8(ascii: "e") || self.current == UInt8(ascii: "E") {
            whole = false
            self.index += 1
            if self.current == UInt8(ascii: "+") || self.current == UInt8(ascii: "-") { self.index += 1 }
            try self.digits()
        }
        if whole, !overflow {
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                return .integer(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
            }
            if !negative, magnitude <= UInt64(Int64.max) { return .integer(Int64(magnitude)) }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else { throw self.error("number out of range") }
        return .double(double, whole: whole)
    }

    private mutating func digits() throws(JSONScanError) {
        let start = self.index
        while let byte = self.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { self.index += 1 }
        guard self.index > start else { throw self.error("invalid number") }
    }
}
