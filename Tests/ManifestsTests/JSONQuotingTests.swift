import Foundation
import JSONScanning
import Testing

/// The byte-level JSON string writer every JSON producer of the project shares (request bodies, log lines, the
/// proxy's access log).
@Suite struct JSONQuotingTests {
    /// Every byte value at each of 21 positions (the eight-byte words and the tail) of a run of letters: found by
    /// `firstEscape` exactly when it needs an escape, and the earlier of two is the one found.
    @Test func theFirstByteToEscapeIsFoundWhereverItIs() {
        for position in 0..<21 {
            for value in 0...255 {
                let byte = UInt8(value)
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 21)
                bytes[position] = byte
                let escaped = byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
                let found = bytes.withUnsafeBufferPointer { JSONQuoting.firstEscape($0, from: 0) }
                #expect(found == (escaped ? position : 21), "byte \(value) at \(position)")
                // A later byte to escape does not hide this one; an earlier one is found first.
                if position < 20 {
                    bytes[20] = UInt8(ascii: "\"")
                    let first = bytes.withUnsafeBufferPointer { JSONQuoting.firstEscape($0, from: 0) }
                    #expect(first == (escaped ? position : 20), "byte \(value) at \(position), quote at 20")
                }
            }
        }
    }

    /// Numbers as log lines and request bodies write them: the same digits as Swift's own description, zero-padded
    /// to a width, from one digit to nineteen (the largest `Int`), negative ones down to `Int.min` after their sign;
    /// milliseconds with up to three decimals.
    @Test func numbersAreWrittenAsTheirDigits() {
        var values = Array(-20...20_000) + [Int.max, Int.max - 1, -7_654_321, Int.min, Int.min + 1]
        var power = 10
        while power < Int.max / 10 {
            values += [power - 1, power, power + 1]
            power *= 10
        }
        for value in values {
            for width in [1, 3, 5] {
                var output: [UInt8] = []
                output.appendDecimal(value, width: width)
                let digits = String(value.magnitude)
                let expected =
                    (value < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - digits.count)) + digits
                #expect(String(decoding: output, as: UTF8.self) == expected, "\(value) width \(width)")
            }
            var integer: [UInt8] = []
            integer.appendInteger(value)
            #expect(String(decoding: integer, as: UTF8.self) == String(value))
        }
        let milliseconds = [
            (0, "0.0"), (500, "0.5"), (1_234, "1.234"), (12_000, "12.0"), (1_050, "1.05"), (-1_500, "-1.5"),
            (-7, "-0.007"), (Int.min, "-9223372036854775.808"),
        ]
        for (microseconds, expected) in milliseconds {
            var output: [UInt8] = []
            output.appendMilliseconds(microseconds: microseconds)
            #expect(String(decoding: output, as: UTF8.self) == expected)
        }
    }

    /// Quoted strings read back as what was written, whatever mix of bytes to escape and to copy they hold.
    @Test func quotedStringsReadBackTheSame() throws {
        let pieces = ["api.github.com", "\"", "\\", "\n", "\r\t", "\u{1}", "\u{7F}", "é", "😀", " ", "/x?y=1&z"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let text = (0..<Int.random(in: 0...12, using: &generator)).map { _ in
                pieces.randomElement(using: &generator)!
            }.joined()
            var out: [UInt8] = []
            out.appendQuoted(text)
            let decoded = try JSONSerialization.jsonObject(with: Data(out), options: .fragmentsAllowed) as? String
            #expect(decoded == text, "\(text.debugDescription) → \(String(decoding: out, as: UTF8.self))")
        }
    }
}
