/// A Kubernetes resource quantity (`500m`, `1.5`, `128Mi`) as the operator's flags give it: parsed so that a
/// request above its limit is refused at startup instead of by the API server on every pass, and written in the
/// API server's canonical form, which it stores, so that the Deployment read back equals what the operator applies
/// (`0.5` comes back as `500m`, `131072Ki` as `128Mi`; written as given, every pass would apply it again).
public struct Quantity: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The value in thousandths (`500m` is 500, `1Ki` is 1,024,000).
    public let milli: Int
    /// Whether it was written with a binary suffix (`Ki`, `Mi`, …), which the canonical form keeps when it can.
    public let binary: Bool

    private static let decimal: [(String, Int)] = [
        ("m", 0), ("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6),
    ]
    private static let binarySuffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

    /// Parses `DIGITS[.DIGITS][SUFFIX]` with a decimal (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or binary (`Ki` … `Ei`)
    /// suffix; nil for anything else (signs and exponents included: no flag needs them) or a value too large.
    public init?(_ text: String) {
        var number = Substring(text)
        var binaryPower: Int? = nil
        var decimalPower = 0  // of 1000, from thousandths
        if let index = Self.binarySuffixes.dropFirst().firstIndex(where: { text.hasSuffix($0) }) {
            binaryPower = index
            number = number.dropLast(2)
        } else if let (suffix, power) = Self.decimal.first(where: { text.hasSuffix($0.0) }) {
            decimalPower = power == 0 ? -1 : power
            number = number.dropLast(suffix.count)
        }
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCII), whole.allSatisfy(\.isNumber),
            parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isNumber })
        else { return nil }
        let fraction = parts.count == 2 ? parts[1] : ""
        // value = whole.fraction × unit, in thousandths; exact or refused.
        guard whole.count + fraction.count <= 18, let digits = Int(whole + fraction) else { return nil }
        var numerator = digits
        var denominator = pow10(fraction.count)
        var multiplier: Int
        if let binaryPower {
            multiplier = 1000
            for _ in 0..<binaryPower {
                let (product, overflow) = multiplier.multipliedReportingOverflow(by: 1024)
                guard !overflow else { return nil }
                multiplier = product
            }
        } else {
            guard 3 * (decimalPower + 1) <= 18 else { return nil }
            multiplier = decimalPower == -1 ? 1 : pow10(3 * (decimalPower + 1))
        }
        // Reduce before multiplying, to keep within Int.
        let common = gcd(multiplier, denominator)
        (multiplier, denominator) = (multiplier / common, denominator / common)
        let (product, overflow) = numerator.multipliedReportingOverflow(by: multiplier)
        guard !overflow, product % denominator == 0 else { return nil }
        numerator = product / denominator
        self.milli = numerator
        self.binary = binaryPower != nil
    }

    /// The API server's canonical form: binary suffixes kept for whole numbers of bytes from 1Ki up, with the
    /// largest suffix that divides exactly; otherwise decimal, in thousandths only when a fraction needs them.
    public var description: String {
        if self.binary, self.milli % 1000 == 0, self.milli / 1000 >= 1024 {
            var value = self.milli / 1000
            var power = 0
            while value % 1024 == 0, power < Self.binarySuffixes.count - 1 {
                value /= 1024
                power += 1
            }
            return "\(value)\(Self.binarySuffixes[power])"
        }
        guard self.milli % 1000 == 0 else { return "\(self.milli)m" }
        var value = self.milli / 1000
        var power = 0
        while value != 0, value % 1000 == 0, power < Self.decimal.count - 1 {
            value /= 1000
            power += 1
        }
        return power == 0 ? "\(value)" : "\(value)\(Self.decimal[power].0)"
    }

    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.milli < rhs.milli }
}

private func pow10(_ exponent: Int) -> Int {
    (0..<exponent).reduce(1) { result, _ in result * 10 }
}

private func gcd(_ a: Int, _ b: Int) -> Int {
    b == 0 ? a : gcd(b, a % b)
}
