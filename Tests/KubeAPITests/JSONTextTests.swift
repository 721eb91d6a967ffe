import Foundation
import Testing

@testable import KubeAPI

/// `JSONValue(parsing:)` (one pass over bytes) against the `Codable` path through Foundation's `JSONDecoder` it
/// replaced: the same tree for the same text, and an error wherever Foundation refuses the text.
@Suite struct JSONTextTests {
    private func viaFoundation(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    private func parsed(_ text: String) throws -> JSONValue {
        try JSONValue(parsing: Array(text.utf8))
    }

    @Test(arguments: [
        #"{}"#, #"[]"#, #""""#, "null", "true", "false", "0", "-0", "7", "-7", "1.5", "-0.25", "1e3", "1E+2",
        "2.5e-3", "2.0", "-0.0", "1.5e1", "1e18", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616", "123456789012345678901234567890",
        #"" \" \\ \/ \b \f \n \r \t ""#, #""\u00e9\u4e2d\uD83D\uDE00 ë""#, #""\u0000""#,
        #"  {"a" : [1, 2.5, "x", null, true, {"b": {}}], "c": "d"}  "#,
        #"{"dup":1,"dup":2}"#,
        "[[[[[[[[[[1]]]]]]]]]]",
        #"{"metadata":{"name":"gh","resourceVersion":"12","labels":{"app":"x"}},"spec":{"port":443}}"#,
    ])
    func sameTreeAsFoundation(_ text: String) throws {
        #expect(try parsed(text) == viaFoundation(text))
    }

    @Test func integersStayIntegers() throws {
        #expect(try parsed("443") == .int(443))
        #expect(try parsed("-9223372036854775808") == .int(.min))
        #expect(try parsed("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try parsed("1.5") == .double(1.5))
        #expect(try parsed("1e3") == .int(1000))
        #expect(try parsed(#""\uD83D\uDE00""#) == .string("😀"))
    }

    @Test(arguments: [
        "", " ", "{", "[", #"{"a":}"#, #"{"a" 1}"#, #"{a:1}"#, "[1 2]", "01", "1.", ".5",
        "-", "+1", "1e", "1e+", "0x10", "tru", "nul", "True", #""abc"#, #""\x""#, #""\u12""#, #""\uD800""#,
        #""\uD800\u0041""#, #""\uDC00""#, "\"a\u{1}b\"", "\"line\nbreak\"", "1 2", "[1]]", "{}x", "1e999",
        "NaN", "Infinity",
    ])
    func refusedLikeFoundation(_ text: String) {
        #expect(throws: JSONTextError.self) { try parsed(text) }
        #expect(throws: (any Error).self) { try viaFoundation(text) }
    }

    /// Foundation tolerates these; nothing writes them, and the API server never does.
    @Test func trailingCommasAreRefused() {
        #expect(throws: JSONTextError(offset: 3, message: "unexpected character")) { try parsed("[1,]") }
        #expect(throws: JSONTextError(offset: 7, message: "expected a member name")) { try parsed(#"{"a":1,}"#) }
    }

    @Test func invalidUTF8IsRefused() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]  // "\xC3(" : a lead byte without its continuation
        #expect(throws: JSONTextError.self) { try JSONValue(parsing: bytes) }
        #expect(throws: (any Error).self) { try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(try parsed(deep) == viaFoundation(deep))
        let tooDeep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONTextError.self) { try parsed(tooDeep) }
    }

    @Test func errorsSayWhere() {
        #expect(throws: JSONTextError(offset: 7, message: "expected ',' or '}'")) { try parsed(#"{"a":1 "b":2}"#) }
    }

    /// An omitted member is left out as if removed after parsing: at the end of its path and nowhere else.
    @Test func omittedMembersAreLeftOutWhereThePathLeads() throws {
        let managed = #"[{"manager":"m","fieldsV1":{"f:data":{".":{},"f:v":{}}},"time":"2026-11-28T08:00:00Z"}]"#
        let object =
            #"{"metadata":{"name":"a","managedFields":"# + managed
            + #","labels":{"managedFields":"kept"}},"data":{"managedFields":"kept"},"managedFields":"kept","#
            + #""spec":{"metadata":{"managedFields":"kept"}}}"#
        let event = #"{"type":"MODIFIED","object":"# + object + "}"
        var expected = try parsed(event)
        expected["object"]?["metadata"]?["managedFields"] = nil
        let omitted = try JSONValue(parsing: Array(event.utf8), omitting: .managedFieldsOfWatchedObject)
        #expect(omitted == expected)
        #expect(omitted[path: "object", "metadata", "labels", "managedFields"] == "kept")
        #expect(omitted[path: "object", "spec", "metadata", "managedFields"] == "kept")

        let list = #"{"kind":"List","items":["# + object + "," + object + #",7,[1],{"metadata":null}]}"#
        var expectedList = try parsed(list)
        var items = expectedList["items"]?.arrayValue ?? []
        for index in 0..<2 { items[index]["metadata"]?["managedFields"] = nil }
        expectedList["items"] = .array(items)
        #expect(try JSONValue(parsing: Array(list.utf8), omitting: .managedFieldsOfListedItems) == expectedList)
        // The watch path finds nothing to omit in a list, and the list path nothing in an event.
        #expect(try JSONValue(parsing: Array(list.utf8), omitting: .managedFieldsOfWatchedObject) == parsed(list))
        #expect(try JSONValue(parsing: Array(event.utf8), omitting: .managedFieldsOfListedItems) == parsed(event))
    }

    /// What an omitted member holds is still checked: invalid text there is refused as anywhere else.
    @Test(arguments: [
        #"{"object":{"metadata":{"managedFields":[1,]}}}"#,
        #"{"object":{"metadata":{"managedFields":{"a" 1}}}}"#,
        #"{"object":{"metadata":{"managedFields":[tru]}}}"#,
        #"{"object":{"metadata":{"managedFields":"\x"}}}"#,
        #"{"object":{"metadata":{"managedFields":{"a":[}}}}"#,
        #"{"object":{"metadata":{"managedFields":}}}"#,
    ])
    func omittedMembersAreStillChecked(_ text: String) {
        #expect(throws: JSONTextError.self) {
            try JSONValue(parsing: Array(text.utf8), omitting: .managedFieldsOfWatchedObject)
        }
    }

    @Test func omittedMembersAreDepthBounded() {
        let tooDeep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let text = #"{"object":{"metadata":{"managedFields":"# + tooDeep + "}}}"
        #expect(throws: JSONTextError.self) {
            try JSONValue(parsing: Array(text.utf8), omitting: .managedFieldsOfWatchedObject)
        }
    }

    /// Request bodies (`compactJSON`) read back as the tree they were written from, by this parser and by Foundation.
    @Test func compactJSONReadsBackTheSameTree() throws {
        var random = SplitMix64(seed: 0xB0D1)
        var values: [JSONValue] = [
            .string("quote \" backslash \\ slash / newline \n cr \r tab \t nul \u{0} bell \u{7} del \u{7F} é 中 😀"),
            .double(1.5), .double(-2.25), .double(1e300), .double(.leastNonzeroMagnitude), .int(.min), .int(.max), [:],
            [],
        ]
        for _ in 0..<300 { values.append(Self.randomValue(&random, depth: 0)) }
        for value in values {
            let text = try value.compactJSON()
            #expect(try JSONValue(parsing: text) == value, "\(String(decoding: text, as: UTF8.self))")
            #expect(try JSONDecoder().decode(JSONValue.self, from: Data(text)) == value)
        }
        #expect(try JSONValue.string("a\u{1}\"").compactJSON() == Array(#""a\u0001\"""#.utf8))
        #expect(try JSONValue.string("\u{7F}é\\").compactJSON() == Array(#""\u007fé\\""#.utf8))
        #expect(throws: (any Error).self) { try JSONValue.array([.double(.infinity)]).compactJSON() }
        #expect(throws: (any Error).self) { try JSONValue.double(.nan).compactJSON() }
    }

    /// Random trees, written by `JSONEncoder` and by hand with whitespace and escapes, read back the same both ways.
    @Test func randomDocumentsMatchFoundation() throws {
        var random = SplitMix64(seed: 0x5EED)
        for round in 0..<300 {
            let value = Self.randomValue(&random, depth: 0)
            let encoded = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
            let written = Self.write(value, &random)
            for text in [encoded, written] {
                let ours = try parsed(text)
                #expect(ours == (try viaFoundation(text)), "round \(round): \(text)")
                #expect(ours == value, "round \(round): \(text)")
            }
        }
    }

    private static func randomValue(_ random: inout SplitMix64, depth: Int) -> JSONValue {
        switch random.next() % (depth > 4 ? 5 : 7) {
        case 0: return .null
        case 1: return .bool(random.next() % 2 == 0)
        case 2:
            let magnitude = Int64(bitPattern: random.next()) >> (random.next() % 63)
            return .int(magnitude)
        case 3: return .double(Double((Int64(bitPattern: random.next()) % 1_000_000) * 2 + 1) / 64)  // never whole
        case 4: return .string(randomString(&random))
        case 5:
            return .array((0..<random.next() % 5).map { _ in randomValue(&random, depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<random.next() % 5 { members[randomString(&random)] = randomValue(&random, depth: depth + 1) }
            return .object(JSONObject(members))
        }
    }

    private static let alphabet: [Character] = Array("abcXYZ09 -_./:\"\\\n\t\u{1}\u{7f}é中😀")

    private static func randomString(_ random: inout SplitMix64) -> String {
        String((0..<random.next() % 12).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
    }

    /// JSON text with random whitespace, and every non-ASCII or special character escaped as `\uXXXX`.
    private static func write(_ value: JSONValue, _ random: inout SplitMix64) -> String {
        let space = [" ", "", "\n", "\t", "\r\n  "][Int(random.next() % 5)]
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .int(let number): return "\(number)"
        case .double(let number): return "\(number)"
        case .string(let text): return quoted(text)
        case .array(let elements):
            return "[" + space + elements.map { write($0, &random) }.joined(separator: space + "," + space) + "]"
        case .object(let members):
            let parts = members.map { key, member in quoted(key) + space + ":" + space + write(member, &random) }
            return "{" + space + parts.joined(separator: "," + space) + space + "}"
        }
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for unit in text.utf16 {
            if unit >= 0x20, unit < 0x7F, unit != 0x22, unit != 0x5C {
                out.unicodeScalars.append(Unicode.Scalar(unit)!)
            } else {
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}

/// A tiny seeded generator, so a failure names a reproducible round.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
