import JSONScanning

/// A small JSON reader over bytes, into `JSON` (member order kept), built on `JSONScanner`.
///
/// The proxy reloads allow-lists of up to 100,000 hosts; Foundation's decoders spend most of a reload building
/// intermediate values, while this reads the document in one pass. Numbers are integers only: nothing we read
/// has fractions, and a fraction is an error rather than a silent rounding.
public struct JSONReader {
    private var scanner: JSONScanner
    /// A top-level member whose array elements go to `element` as they are read (see `parse(_:streaming:_:)`).
    private var streamed: (key: String, element: (Int, JSON) -> Void)?

    public static func parse(_ bytes: [UInt8]) throws(AllowListError) -> JSON {
        try Self.parse(bytes, streamed: nil)
    }

    /// Parses a document and hands each element of the array at top-level member `key` to `element` as soon as it
    /// is read, instead of keeping it: in the result that member is an empty array. A 100,000-host allow-list then
    /// never exists as one tree of 100,000 objects (building and freeing it was a third of a reload).
    public static func parse(
        _ bytes: [UInt8],
        streaming key: String,
        _ element: @escaping (_ index: Int, _ value: JSON) -> Void
    ) throws(AllowListError) -> JSON {
        try Self.parse(bytes, streamed: (key, element))
    }

    private static func parse(
        _ bytes: [UInt8],
        streamed: (key: String, element: (Int, JSON) -> Void)?
    ) throws(AllowListError) -> JSON {
        let result = bytes.withUnsafeBytes { buffer in
            var reader = JSONReader(scanner: JSONScanner(buffer), streamed: streamed)
            return Result { () throws(JSONScanError) in try reader.document() }
        }
        switch result {
        case .success(let document): return document
        case .failure(let error): throw AllowListError("\(error)")
        }
    }

    private mutating func document() throws(JSONScanError) -> JSON {
        let value = try self.value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw scanner.error("unexpected data after the document") }
        return value
    }

    private static let maxDepth = 64

    private mutating func value(depth: Int) throws(JSONScanError) -> JSON {
        guard depth < Self.maxDepth else { throw scanner.error("nested too deeply") }
        scanner.skipWhitespace()
        guard let byte = scanner.current else { throw scanner.error("unexpected end") }
        switch byte {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try scanner.string())
        case UInt8(ascii: "t"):
            try scanner.literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try scanner.literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try scanner.literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            switch try scanner.number() {
            case .integer(let integer):
                guard let value = Int(exactly: integer) else { throw scanner.error("number out of range") }
                return .int(value)
            case .double(_, let whole):
                throw scanner.error(whole ? "number out of range" : "only integers are expected")
            }
        default: throw scanner.error("unexpected character")
        }
    }

    private mutating func object(depth: Int) throws(JSONScanError) -> JSON {
        scanner.index += 1
        var members: [(key: String, value: JSON)] = []
        scanner.skipWhitespace()
        if scanner.current == UInt8(ascii: "}") {
            scanner.index += 1
            return .object(members)
        }
        while true {
            scanner.skipWhitespace()
            guard scanner.current == UInt8(ascii: "\"") else { throw scanner.error("expected a key") }
            let key = try scanner.string()
            scanner.skipWhitespace()
            guard scanner.current == UInt8(ascii: ":") else { throw scanner.error("expected ':'") }
            scanner.index += 1
            scanner.skipWhitespace()
            if depth == 0, let streamed, key == streamed.key, scanner.current == UInt8(ascii: "[") {
                // Only the first such member streams: a repeated key is ignored by readers, as `JSON[key]` does.
                self.streamed = nil
                members.append((key, try array(depth: depth + 1, element: streamed.element)))
            } else {
                members.append((key, try value(depth: depth + 1)))
            }
            scanner.skipWhitespace()
            switch scanner.current {
            case UInt8(ascii: ","):
                scanner.index += 1
            case UInt8(ascii: "}"):
                scanner.index += 1
                return .object(members)
            case nil:
                throw scanner.error("unexpected end")
            default:
                throw scanner.error("expected ',' or '}'")
            }
        }
    }

    /// With `element`, the elements go there instead of into the returned (then empty) array.
    private mutating func array(depth: Int, element: ((Int, JSON) -> Void)? = nil) throws(JSONScanError) -> JSON {
        scanner.index += 1
        var values: [JSON] = []
        var count = 0
        scanner.skipWhitespace()
        if scanner.current == UInt8(ascii: "]") {
            scanner.index += 1
            return .array(values)
        }
        while true {
            let value = try value(depth: depth + 1)
            if let element { element(count, value) } else { values.append(value) }
            count += 1
            scanner.skipWhitespace()
            switch scanner.current {
            case UInt8(ascii: ","):
                scanner.index += 1
            case UInt8(ascii: "]"):
                scanner.index += 1
                return .array(values)
            case nil:
                throw scanner.error("unexpected end")
            default:
                throw scanner.error("expected ',' or ']'")
            }
        }
    }
}
