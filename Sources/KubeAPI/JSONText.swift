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
    ///
    /// With `omission`, the members at its path are checked as JSON and left out of the tree without being built.
    public init(parsing bytes: UnsafeRawBufferPointer, omitting omission: Omission? = nil) throws(JSONTextError) {
        var parser = JSONTextParser(bytes, omitting: omission?.path ?? [])
        self = try parser.document()
    }

    /// `init(parsing:)` over any contiguous bytes (a `ByteBuffer`'s view, `[UInt8]`, `Data`).
    public init(parsing bytes: some Sequence<UInt8>, omitting omission: Omission? = nil) throws(JSONTextError) {
        func parse(_ buffer: UnsafeRawBufferPointer) -> Result<JSONValue, JSONTextError> {
            Result { () throws(JSONTextError) in try JSONValue(parsing: buffer, omitting: omission) }
        }
        let parsed =
            bytes.withContiguousStorageIfAvailable { parse(UnsafeRawBufferPointer($0)) }
            ?? Array(bytes).withUnsafeBytes(parse)
        self = try parsed.get()
    }
}

extension JSONValue {
    /// Where the members to leave out of a parsed tree are, e.g. `items[*].metadata.managedFields`.
    ///
    /// An informer drops every object's `metadata.managedFields`. Parsed and then removed, they were built as a tree
    /// larger than the rest of a typical object, and the removal copied the object's `metadata` at the capacity it
    /// had with them.
    public struct Omission: Sendable, Hashable {
        public enum Step: Sendable, Hashable {
            /// The member of this name of an object.
            case member(String)
            /// Every element of an array.
            case anyElement
        }

        public var path: [Step]

        public init(_ path: [Step]) {
            self.path = path
        }

        /// `metadata.managedFields` of a watch event's object.
        public static let managedFieldsOfWatchedObject = Omission([
            .member("object"), .member("metadata"), .member("managedFields"),
        ])
        /// `metadata.managedFields` of each object of a list.
        public static let managedFieldsOfListedItems = Omission([
            .member("items"), .anyElement, .member("metadata"), .member("managedFields"),
        ])
    }
}

/// Builds the tree on `JSONScanner`: objects as `JSONObject`s (the first of duplicate names counts), numbers as
/// `.int` when their value is a whole number in range.
private struct JSONTextParser {
    private var scanner: JSONScanner

    /// As deep as Foundation's `JSONDecoder` goes; deeper input is refused rather than recursed into.
    private static let maximumDepth = 512

    /// The omission's path; `matched` below counts how many of its steps lead to the value being parsed (nil once
    /// the value is off the path).
    private let omitted: [JSONValue.Omission.Step]

    /// The members and elements read so far of the objects and arrays open, nested ones after their parent's. Each
    /// object or array is copied out at its exact size when it closes: one grown by appending keeps up to twice the
    /// room it needs, for as long as an informer caches it.
    private var pendingMembers: [JSONObject.Member] = []
    private var pendingElements: [JSONValue] = []

    init(_ bytes: UnsafeRawBufferPointer, omitting omitted: [JSONValue.Omission.Step] = []) {
        self.scanner = JSONScanner(bytes)
        self.omitted = omitted
    }

    mutating func document() throws(JSONScanError) -> JSONValue {
        let value = try self.value(depth: 0, matched: self.omitted.isEmpty ? nil : 0)
        self.scanner.skipWhitespace()
        guard self.scanner.atEnd else { throw self.scanner.error("unexpected data after the value") }
        return value
    }

    private mutating func value(depth: Int, matched: Int? = nil) throws(JSONScanError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw self.scanner.error("nested too deeply") }
        self.scanner.skipWhitespace()
        guard let byte = self.scanner.current else { throw self.scanner.error("unexpected end of the text") }
        switch byte {
        case UInt8(ascii: "{"): return try self.object(depth: depth, matched: matched)
        case UInt8(ascii: "["): return try self.array(depth: depth, matched: matched)
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

    /// How many steps of the omission lead to the member `key` or element of a value `matched` steps led to.
    private func matched(_ matched: Int?, after step: JSONValue.Omission.Step) -> Int? {
        guard let matched, self.omitted[matched] == step else { return nil }
        return matched + 1
    }

    private mutating func object(depth: Int, matched: Int?) throws(JSONScanError) -> JSONValue {
        self.scanner.index += 1
        self.scanner.skipWhitespace()
        if self.scanner.current == UInt8(ascii: "}") {
            self.scanner.index += 1
            return .object(JSONObject())
        }
        let start = self.pendingMembers.count
        while true {
            self.scanner.skipWhitespace()
            guard self.scanner.current == UInt8(ascii: "\"") else { throw self.scanner.error("expected a member name") }
            let key = Self.wellKnown(try self.scanner.string())
            self.scanner.skipWhitespace()
            guard self.scanner.current == UInt8(ascii: ":") else { throw self.scanner.error("expected ':'") }
            self.scanner.index += 1
            let next = self.matched(matched, after: .member(key))
            if next == self.omitted.count {
                try self.skipValue(depth: depth + 1)
            } else {
                let value = try self.value(depth: depth + 1, matched: next)
                self.pendingMembers.append(JSONObject.Member(key: key, value: value))
            }
            self.scanner.skipWhitespace()
            switch self.scanner.current {
            case UInt8(ascii: ","):
                self.scanner.index += 1
            case UInt8(ascii: "}"):
                self.scanner.index += 1
                defer { self.pendingMembers.removeSubrange(start...) }
                return .object(JSONObject(read: self.pendingMembers[start...]))
            default:
                throw self.scanner.error("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int, matched: Int?) throws(JSONScanError) -> JSONValue {
        self.scanner.index += 1
        self.scanner.skipWhitespace()
        if self.scanner.current == UInt8(ascii: "]") {
            self.scanner.index += 1
            return .array([])
        }
        let start = self.pendingElements.count
        let next = self.matched(matched, after: .anyElement)
        while true {
            if next == self.omitted.count {
                try self.skipValue(depth: depth + 1)
            } else {
                let element = try self.value(depth: depth + 1, matched: next)
                self.pendingElements.append(element)
            }
            self.scanner.skipWhitespace()
            switch self.scanner.current {
            case UInt8(ascii: ","):
                self.scanner.index += 1
            case UInt8(ascii: "]"):
                self.scanner.index += 1
                defer { self.pendingElements.removeSubrange(start...) }
                return .array(Array(exactly: self.pendingElements[start...]))
            default:
                throw self.scanner.error("expected ',' or ']'")
            }
        }
    }

    /// Member names longer than a small string (15 bytes of UTF-8, kept inline) that Kubernetes objects repeat, as
    /// literals: a name read as one of these shares the binary's copy instead of holding a heap allocation per
    /// object. A cached EgressHost repeats these eight times (three conditions' times and generations, the status's
    /// generation, its creation time).
    private static let wellKnownNames: Set<String> = [
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "lastTransitionTime",
        "observedGeneration", "blockOwnerDeletion", "allowPrivateAddresses", "insecureSkipVerify",
        "clientCertificate", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
        "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
    ]

    private static func wellKnown(_ name: String) -> String {
        guard name.utf8.count > 15, let index = Self.wellKnownNames.firstIndex(of: name) else { return name }
        return Self.wellKnownNames[index]
    }

    /// Checks a value as `value` would, building no object or array.
    private mutating func skipValue(depth: Int) throws(JSONScanError) {
        guard depth <= Self.maximumDepth else { throw self.scanner.error("nested too deeply") }
        self.scanner.skipWhitespace()
        let (open, close): (UInt8, UInt8)
        switch self.scanner.current {
        case UInt8(ascii: "{"): (open, close) = (UInt8(ascii: "{"), UInt8(ascii: "}"))
        case UInt8(ascii: "["): (open, close) = (UInt8(ascii: "["), UInt8(ascii: "]"))
        default:
            _ = try self.value(depth: depth)
            return
        }
        self.scanner.index += 1
        self.scanner.skipWhitespace()
        if self.scanner.current == close {
            self.scanner.index += 1
            return
        }
        while true {
            if open == UInt8(ascii: "{") {
                self.scanner.skipWhitespace()
                guard self.scanner.current == UInt8(ascii: "\"") else {
                    throw self.scanner.error("expected a member name")
                }
                _ = try self.scanner.string()
                self.scanner.skipWhitespace()
                guard self.scanner.current == UInt8(ascii: ":") else { throw self.scanner.error("expected ':'") }
                self.scanner.index += 1
            }
            try self.skipValue(depth: depth + 1)
            self.scanner.skipWhitespace()
            switch self.scanner.current {
            case UInt8(ascii: ","):
                self.scanner.index += 1
            case close:
                self.scanner.index += 1
                return
            default:
                throw self.scanner.error(open == UInt8(ascii: "{") ? "expected ',' or '}'" : "expected ',' or ']'")
            }
        }
    }
}
