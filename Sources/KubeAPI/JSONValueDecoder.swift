import Foundation

/// Decodes a `Decodable` model straight from a ``JSONValue`` tree.
///
/// Going through text (encode the tree with `JSONEncoder`, parse it again with `JSONDecoder`) cost about 0.1 ms per
/// EgressHost; a pass after a burst of status writes decodes thousands of them before its first write. Matches
/// `JSONDecoder`'s default strategies: keys as written, `Data` as base64, numbers convertible only without loss.
struct JSONValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, codingPath: [any CodingKey] = []) {
        self.value = value
        self.codingPath = codingPath
    }

    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try JSONValueDecoder(value).decodeValue(type)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch([String: Any].self, value, codingPath) }
        return KeyedDecodingContainer(Keyed(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let array) = value else { throw mismatch([Any].self, value, codingPath) }
        return Unkeyed(array: array, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    /// A nested value, with the special cases `JSONDecoder` makes. The types are compared by identity: a dynamic
    /// cast per nested value was a visible share of decoding an object.
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        let id = ObjectIdentifier(type)
        if id == ObjectIdentifier(JSONValue.self) { return value as! T }
        if id == ObjectIdentifier(Data.self) {
            guard case .string(let text) = value else { throw mismatch(type, value, codingPath) }
            guard let data = Data(base64Encoded: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "not base64"))
            }
            return data as! T
        }
        if id == ObjectIdentifier(URL.self) {
            guard case .string(let text) = value, let url = URL(string: text) else {
                throw mismatch(type, value, codingPath)
            }
            return url as! T
        }
        return try T(from: self)
    }

    private struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let object: JSONObject
        let codingPath: [any CodingKey]

        var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

        func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

        private func child(_ key: Key) throws -> JSONValueDecoder {
            JSONValueDecoder(try member(key), codingPath: codingPath + [key])
        }

        func decodeNil(forKey key: Key) throws -> Bool { try child(key).decodeNil() }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try child(key).decodeValue(type)
        }

        /// One lookup, and no decoder for a missing or null member (the default implementation asks `contains`,
        /// then `decodeNil`, then decodes: three lookups and two child decoders).
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let value = present(key) else { return nil }
            return try JSONValueDecoder(value, codingPath: codingPath + [key]).decodeValue(type)
        }

        // Scalars are read in place: a child decoder per field (its coding path, then `T(from:)` through an
        // existential single-value container) cost more than the rest of decoding. The coding path is built only
        // for an error.
        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            try JSONValueDecoder.string(member(key), codingPath + [key])
        }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            try JSONValueDecoder.bool(member(key), codingPath + [key])
        }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
            try JSONValueDecoder.integer(member(key), codingPath + [key])
        }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
            try JSONValueDecoder.integer(member(key), codingPath + [key])
        }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            try JSONValueDecoder.double(member(key), codingPath + [key])
        }
        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
            try present(key).map { try JSONValueDecoder.string($0, codingPath + [key]) }
        }
        func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
            try present(key).map { try JSONValueDecoder.bool($0, codingPath + [key]) }
        }
        func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
            try present(key).map { try JSONValueDecoder.integer($0, codingPath + [key]) }
        }
        func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
            try present(key).map { try JSONValueDecoder.integer($0, codingPath + [key]) }
        }
        func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
            try present(key).map { try JSONValueDecoder.double($0, codingPath + [key]) }
        }

        private func member(_ key: Key) throws -> JSONValue {
            guard let value = object[key.stringValue] else {
                throw DecodingError.keyNotFound(
                    key,
                    .init(codingPath: codingPath, debugDescription: "no value for key \"\(key.stringValue)\"")
                )
            }
            return value
        }

        /// The member, unless it is missing or null.
        private func present(_ key: Key) -> JSONValue? {
            guard let value = object[key.stringValue] else { return nil }
            if case .null = value { return nil }
            return value
        }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type,
            forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            try child(key).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try child(key).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder {
            JSONValueDecoder(object["super"] ?? .null, codingPath: codingPath)
        }

        func superDecoder(forKey key: Key) throws -> any Decoder {
            JSONValueDecoder(object[key.stringValue] ?? .null, codingPath: codingPath + [key])
        }
    }

    private struct Unkeyed: UnkeyedDecodingContainer {
        let array: [JSONValue]
        let codingPath: [any CodingKey]
        var currentIndex = 0

        init(array: [JSONValue], codingPath: [any CodingKey]) {
            self.array = array
            self.codingPath = codingPath
        }

        var count: Int? { array.count }
        var isAtEnd: Bool { currentIndex >= array.count }

        private struct Index: CodingKey {
            var intValue: Int?
            var stringValue: String { "Index \(intValue ?? 0)" }
            init(intValue: Int) { self.intValue = intValue }
            init?(stringValue: String) { nil }
        }

        private mutating func next<T>(_ type: T.Type) throws -> JSONValueDecoder {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(
                    type,
                    .init(codingPath: codingPath, debugDescription: "unkeyed container is at its end")
                )
            }
            defer { currentIndex += 1 }
            return JSONValueDecoder(array[currentIndex], codingPath: codingPath + [Index(intValue: currentIndex)])
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, array[currentIndex] == .null else { return false }
            currentIndex += 1
            return true
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type).decodeValue(type) }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type
        ) throws -> KeyedDecodingContainer<NestedKey> {
            try next([String: Any].self).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            try next([Any].self).unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder { try next(Any.self) }
    }
}

extension JSONValueDecoder: SingleValueDecodingContainer {
    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool { try Self.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try Self.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try Self.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    func decode(_ type: Int.Type) throws -> Int { try Self.integer(value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Self.integer(value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Self.integer(value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Self.integer(value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Self.integer(value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try Self.integer(value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Self.integer(value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Self.integer(value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Self.integer(value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Self.integer(value, codingPath) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type) }

    // The scalar readers, shared by single values and keyed members. `path` is evaluated only for an error.
    static func bool(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        guard case .bool(let bool) = value else { throw mismatch(Bool.self, value, path()) }
        return bool
    }

    static func string(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> String {
        guard case .string(let string) = value else { throw mismatch(String.self, value, path()) }
        return string
    }

    static func double(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Double {
        switch value {
        case .double(let double): return double
        case .int(let int): return Double(int)
        default: throw mismatch(Double.self, value, path())
        }
    }

    /// An integer that fits the type exactly (a whole-valued double included), as `JSONDecoder` accepts.
    static func integer<T: FixedWidthInteger>(
        _ value: JSONValue,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        let result: T?
        switch value {
        case .int(let int): result = T(exactly: int)
        case .double(let double): result = T(exactly: double)
        default: throw mismatch(T.self, value, path())
        }
        guard let result else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: path(), debugDescription: "number \(value) does not fit in \(T.self)")
            )
        }
        return result
    }
}

private func mismatch(_ type: Any.Type, _ value: JSONValue, _ codingPath: [any CodingKey]) -> DecodingError {
    if value == .null {
        return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found null"))
    }
    return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found \(value)"))
}
