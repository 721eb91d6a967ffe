import JSONScanning

/// Why a JSON text could not be parsed, with the byte offset where parsing stopped (the shared scanner's error).
public typealias JSONTextError = JSONScanError

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

/// Builds the tree on `JSONScanner`: objects as dictionaries (the first of duplicate names counts), numbers as
/// `.int` when their value is a whole number in range.
private struct JSONTextParser {
    private var scanner: JSONScanner

    /// As deep as Foundation's `JSONDecoder` goes; deeper input is refused rather than recursed into.
    private static let maximumDepth = 512

    init(_ bytes: UnsafeRawBufferPointer) { self.scanner = JSONScanner(bytes) }

    mutating func document() throws(JSONScanError) -> JSONValue {
        let value = try self.value(depth: 0)
        self.scanner.skipWhitespace()
        guard self.scanner.atEnd else { throw self.scanner.error("unexpected data after the value") }
        return value
    }

    private mutating func value(depth: Int) throws(JSONScanError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw self.scanner.error("nested too deeply") }
        self.scanner.skipWhitespace()
        guard let byte = self.scanner.current else { throw self.scanner.error("unexpected end of the text") }
        switch byte {
        case UInt8(ascii: "{"): return try self.object(depth: depth)
        case UInt8(ascii: "["): return try self.array(depth: depth)
        case UInt8(ascii: "\""): return .string(try self.scanner.string())
        case UInt8(ascii: "t"):
            try self.scanner.literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try self.scanner.literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try self.scanner.literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            switch try self.scanner.number() {
            case .integer(let integer): return .int(integer)
            case .double(let double, let whole):
                // `1e3` and `2.0` are whole numbers (as the `Codable` path had them); an integer too large for
                // `Int64` stays a double even when it rounds to one.
                if !whole, let integer = Int64(exactly: double) { return .int(integer) }
                return .double(double)
            }
        default: throw self.scanner.error("unexpected character")
        }
    }

    private mutating func object(depth: Int) throws(JSONScanError) -> JSONValue {
        self.scanner.index += 1
        var members: [String: JSONValue] = [:]
        self.scanner.skipWhitespace()
        if self.scanner.current == UInt8(ascii: "}") {
            self.scanner.index += 1
            return .object(members)
        }
        while true {
            self.scanner.skipWhitespace()
            guard self.scanner.current == UInt8(ascii: "\"") else { throw self.scanner.error("expected a member name") }
            let key = try self.scanner.string()
            self.scanner.skipWhitespace()
            guard self.scanner.current == UInt8(ascii: ":") else { throw self.scanner.error("expected ':'") }
            self.scanner.index += 1
            let value = try self.value(depth: depth + 1)
            if members[key] == nil { members[key] = value }  // the first of duplicate names, as before
            self.scanner.skipWhitespace()
            switch self.scanner.current {
            case UInt8(ascii: ","):
                self.scanner.index += 1
            case UInt8(ascii: "}"):
                self.scanner.index += 1
                return .object(members)
            default:
                throw self.scanner.error("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(JSONScanError) -> JSONValue {
        self.scanner.index += 1
        var elements: [JSONValue] = []
        self.scanner.skipWhitespace()
        if self.scanner.current == UInt8(ascii: "]") {
            self.scanner.index += 1
            return .array(elements)
        }
        while true {
            elements.append(try self.value(depth: depth + 1))
            self.scanner.skipWhitespace()
            switch self.scanner.current {
            case UInt8(ascii: ","):
                self.scanner.index += 1
            case UInt8(ascii: "]"):
                self.scanner.index += 1
                return .array(elements)
            default:
                throw self.scanner.error("expected ',' or ']'")
            }
        }
    }
}
