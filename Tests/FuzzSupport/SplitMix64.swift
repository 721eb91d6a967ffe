/// A small seeded generator (SplitMix64) for the fuzz suites: the same seed gives the same inputs on every machine,
/// so a failure names an input that fails again.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// One to three of `seeds` in a row, then one to four mutations: an element replaced by one of a fragment, a
    /// fragment inserted, a few elements deleted, or a run of them repeated.
    public mutating func mutated<Element>(_ seeds: [[Element]], inserting fragments: [[Element]]) -> [Element] {
        var input: [Element] = []
        for _ in 0..<Int.random(in: 1...3, using: &self) {
            input += seeds[Int.random(in: 0..<seeds.count, using: &self)]
        }
        for _ in 0..<Int.random(in: 1...4, using: &self) {
            let at = Int.random(in: 0...input.count, using: &self)
            switch Int.random(in: 0..<4, using: &self) {
            case 0 where at < input.count:
                let fragment = fragments[Int.random(in: 0..<fragments.count, using: &self)]
                input[at] = fragment[Int.random(in: 0..<fragment.count, using: &self)]
            case 1:
                input.insert(contentsOf: fragments[Int.random(in: 0..<fragments.count, using: &self)], at: at)
            case 2 where at < input.count:
                input.removeSubrange(at..<min(input.count, at + Int.random(in: 1...8, using: &self)))
            default:
                let end = min(input.count, at + Int.random(in: 1...16, using: &self))
                input.insert(contentsOf: input[at..<end], at: at)
            }
        }
        return input
    }

    /// Read sizes of 1 to 24 that together cover `count` bytes: a split of one input into reads.
    public mutating func pieces(covering count: Int) -> [Int] {
        var pieces: [Int] = []
        var covered = 0
        while covered < count {
            pieces.append(Int.random(in: 1...24, using: &self))
            covered += pieces[pieces.count - 1]
        }
        return pieces
    }
}
