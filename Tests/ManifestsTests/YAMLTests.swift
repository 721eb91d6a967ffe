import Foundation
import Manifests
import Testing
import Yams

struct YAMLTests {
    /// Everything the emitter writes must read back, through a real YAML parser, as the same value.
    @Test(
        arguments: [
            "plain", "true", "on", "No", "443", "1.5", "10.0.0.0/8", "", " leading space", "trailing space ",
            "a: b", "- item", "#comment", "quote\"d", "tab\there", "line\nbreak", "two\nlines\n", "three\n\n",
            "keep\n\n\n", "\nleading newline", "emoji 🚀", "null", "~", "*.example.com", "@at", "{flow}", "[x]",
            "key: |\n  nested", "  indented\nblock", "crlf\r\nline", "ctrl\u{07}", "linkerd.io/inject",
        ]
    )
    func stringsRoundTrip(_ text: String) throws {
        let value: JSON = ["key": .string(text), "list": [.string(text), ["nested": .string(text)]]]
        let parsed = try Yams.load(yaml: YAML.render(value)) as? [String: Any]
        #expect(parsed?["key"] as? String == text, "\(YAML.render(value))")
        let list = parsed?["list"] as? [Any]
        #expect(list?.first as? String == text)
        #expect((list?.last as? [String: Any])?["nested"] as? String == text)
    }

    @Test func shapes() throws {
        let value: JSON = [
            "a": 1, "b": false, "c": nil, "empty": [:], "none": [],
            "items": [["x": 1, "y": ["z"]], [1, 2], "s"],
        ]
        try Golden.check(YAML.render(value), "yaml-shapes.yaml")
    }

    @Test func multiDocumentStream() throws {
        let text = YAML.renderStream([["a": 1], ["b": 2]])
        #expect(text == "a: 1\n---\nb: 2\n")
        #expect(try Yams.load_all(yaml: text).map { $0 as? [String: Int] }.count == 2)
    }

    @Test func jsonSerializationKeepsOrderAndEscapes() {
        let value: JSON = ["z": "a\"b\\c\n\u{01}", "a": [1, true, nil]]
        #expect(value.serialized == #"{"z":"a\"b\\c\n\u0001","a":[1,true,null]}"#)
    }

    /// Control characters (C0, DEL, C1) are escaped, everything else passes through byte for byte, and the result
    /// parses back to the same string.
    @Test(arguments: ["", "plain", "\u{7F}x", "a\u{80}b\u{9F}", "é\u{A0}🚀", "\t\r\n\"\\", "end\u{1F}"])
    func quotingRoundTrips(_ text: String) throws {
        var quoted = ""
        JSON.writeQuoted(text, to: &quoted)
        #expect(!quoted.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        let parsed = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
        #expect(parsed == [text])
    }
}
