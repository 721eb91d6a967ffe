/// Why a JSON text could not be parsed, with the byte offset where parsing stopped.
public struct JSONTextError: Error, CustomStringConvertible, Equatable, Sendable {
    public let offset: Int
    public let message: String

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension JSONValue {
    /// Parses JSON text (RFC 8259) in one pass over its bytes.
    ///
    /// Every watch event, list and response passes through here. Decoding `JSONValue` through `Codable` tried each
    /// kind of value in turn and threw (an error with a coding path) for each miss: it was a third of the operator's
    /// CPU. The tree is the one that path gave: whole numbers in range are `.int`, others `.double`; of duplicate
    /// member names the first counts. Stricter in one way: a trailing comma is an error.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(JSONTextError) {
        var parser = JSONTextParser(bytes)
        self = try parser.document()
    }

    /// `init(parsing:)` over any contiguous bytes (a `ByteBuffer`'s view, `[UInt8]`, `Data`).
    public init(parsing bytes: some Sequence<UInt8>) throws(JSONTextError) {
        func parse(_ buffer: UnsafeRawBufferPointer) -> Result<JSONValue, JSONTextError> {
            Result { () throws(JSONTextError) in try JSONValue(parsing: buffer) }
        }
        let parsed =
            bytes.withContiguousStorageIfAvailable { parse(UnsafeRawBufferPointer($0)) }
            ?? Array(bytes).withUnsafeBytes(parse)
        self = try parsed.get()
    }
}

private struct JSONTextParser {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    /// As deep as Foundation's `JSONDecoder` goes; deeper input is refused rather than recursed into.
    private static let maximumDepth = 512

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func document() throws(JSONTextError) -> JSONValue {
        let value = try self.value(depth: 0)
        self.skipWhitespace()
        guard self.index == self.bytes.count else { throw self.error("unexpected data after the value") }
        return value
    }

    private func error(_ message: String) -> JSONTextError {
        JSONTextError(offset: self.index, message: message)
    }

    private var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(JSONTextError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw self.error("nested too deeply") }
        self.skipWhitespace()
        guard let byte = self.current else { throw self.error("unexpected end of the text") }
        switch byte {
        case UInt8(ascii: "{"): return try self.object(depth: depth)
        case UInt8(ascii: "["): return try self.array(depth: depth)
        case UInt8(ascii: "\""): return .string(try self.string())
        case UInt8(ascii: "t"): return try self.literal("true", .bool(true))
        case UInt8(ascii: "f"): return try self.literal("false", .bool(false))
        case UInt8(ascii: "n"): return try self.literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.number()
        default: throw self.error("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString, _ value: JSONValue) throws(JSONTextError) -> JSONValue {
        let count = word.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count,
            word.withUTF8Buffer({ $0.elementsEqual(self.bytes[self.index..<self.index + count]) })
        else { throw self.error("invalid literal") }
        self.index += count
        return value
    }

    private mutating func object(depth: Int) throws(JSONTextError) -> JSONValue {
        self.index += 1
        var members: [String: JSONValue] = [:]
        self.skipWhitespace()
        if self.current == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipWhitespace()
            guard self.current == UInt8(ascii: "\"") else { throw self.error("expected a member name") }
            let key = try self.string()
            self.skipWhitespace()
            guard self.current == UInt8(ascii: ":") else { throw self.error("expected ':'") }
            self.index += 1
            let value = try self.value(depth: depth + 1)
            if members[key] == nil { members[key] = value }  // the first of duplicate names, as before
            self.skipWhitespace()
            switch self.current {
            case UInt8(ascii: ","):
                self.index += 1
            case UInt8(ascii: "}"):
                self.index += 1
                return .object(members)
            default:
                throw self.error("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(JSONTextError) -> JSONValue {
        self.index += 1
        var elements: [JSONValue] = []
        self.skipWhitespace()
        if self.current == UInt8(ascii: "]") {
            self.index += 1
            return .array(elements)
        }
        while true {
            elements.append(try self.value(depth: depth + 1))
            self.skipWhitespace()
            switch self.current {
            case UInt8(ascii: ","):
                self.index += 1
            case UInt8(ascii: "]"):
                self.index += 1
                return .array(elements)
            default:
                throw self.error("expected ',' or ']'")
            }
        }
    }

    /// A string: the common case (no escapes) is one scan and one validated copy.
    private mutating func string() throws(JSONTextError) -> String {
        self.index += 1
        let start = self.index
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                let text = try self.validated(UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]))
                self.index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw self.error("control character in a string") }
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

    private func validated(_ utf8: UnsafeRawBufferPointer) throws(JSONTextError) -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw self.error("invalid UTF-8 in a string") }
        return text
    }

    private mutating func escape(into unescaped: inout [UInt8]) throws(JSONTextError) {
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

    private mutating func hex4() throws(JSONTextError) -> UInt32 {
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

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`: an `Int64` when its value is a whole number in range
    /// (`1e3` and `2.0` too, as the `Codable` path gave), else a `Double`.
    private mutating func number() throws(JSONTextError) -> JSONValue {
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
                return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
            }
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else { throw self.error("number out of range") }
        if !whole, let integer = Int64(exactly: double) { return .int(integer) }
        return .double(double)
    }

    private mutating func digits() throws(JSONTextError) {
        let start = self.index
        while let byte = self.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { self.index += 1 }
        guard self.index > start else { throw self.error("invalid number") }
    }
}
