extension Array where Element: Equatable {
    /// `map(transform)`, reusing the results `previous` holds for the elements at the start and the end that this
    /// array shares with `previous.input` (in order; `previous.output[i]` is the result for `previous.input[i]`).
    ///
    /// The operator renders the allow-list and the Corefile rules from lists of thousands of hosts, and a change
    /// adds, removes or changes one or two of them: the rest keep their place at either end of the sorted list.
    func map<Result>(
        _ transform: (Element) -> Result,
        reusing previous: (input: [Element], output: [Result])?
    )
        -> [Result]
    {
        let (old, oldOutput) = previous ?? ([], [])
        precondition(old.count == oldOutput.count, "one result per input")
        let common = Swift.min(old.count, count)
        var start = 0
        while start < common, old[start] == self[start] { start += 1 }
        var end = 0
        while end < common - start, old[old.count - 1 - end] == self[count - 1 - end] { end += 1 }
        var result: [Result] = []
        result.reserveCapacity(count)
        result.append(contentsOf: oldOutput[..<start])
        for index in start..<(count - end) { result.append(transform(self[index])) }
        result.append(contentsOf: oldOutput[(old.count - end)...])
        return result
    }
}
