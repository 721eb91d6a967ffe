import Synchronization

/// The last input and output of a pure function, reused while the input repeats.
///
/// Every EgressHost event runs a pass, but the Corefile a pass parses changes only when someone writes it: with
/// thousands of rules, parsing it costs tens of milliseconds; comparing it with the last input, microseconds.
final class LastResult<Input: Equatable & Sendable, Output: Sendable>: Sendable {
    private let last = Mutex<(input: Input, output: Output)?>(nil)

    func callAsFunction(_ input: Input, _ compute: (Input) throws -> Output) rethrows -> Output {
        if let last = self.last.withLock({ $0 }), last.input == input { return last.output }
        let output = try compute(input)
        self.last.withLock { $0 = (input, output) }
        return output
    }

    /// The answer for `input` if it is the last one computed or remembered.
    func cached(_ input: Input) -> Output? {
        self.last.withLock { last in last.flatMap { $0.input == input ? $0.output : nil } }
    }

    /// The last answer, whatever its input.
    var lastOutput: Output? { self.last.withLock { $0?.output } }

    /// Stores an answer known without computing it (e.g. what parsing the text we just wrote would give).
    func remember(_ input: Input, _ output: Output) {
        self.last.withLock { $0 = (input, output) }
    }
}
