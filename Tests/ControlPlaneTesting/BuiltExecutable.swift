import Foundation

/// The project's executables as `swift build --build-tests` leaves them, for the tests of what the binaries
/// themselves do: flags they refuse, ports they cannot listen on, limits they set.
public enum BuiltExecutable {
    /// The executable `name` beside the test bundle, else in `.build/debug`.
    public static func path(_ name: String) throws -> String {
        var candidates: [String] = []
        if let bundle = Bundle.allBundles.first(where: { $0.bundlePath.hasSuffix(".xctest") }) {
            candidates.append(URL(fileURLWithPath: bundle.bundlePath).deletingLastPathComponent().path)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        candidates.append(executable.path)
        candidates.append(executable.deletingLastPathComponent().path)
        candidates.append("\(TestCluster.repoRoot)/.build/debug")
        for directory in candidates where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw TestFailure(
            "the \(name) executable was not found in \(candidates); build it with `swift build --build-tests`"
        )
    }

    /// Runs `name` with `arguments` to its exit (terminated after a minute: one that starts serving instead fails
    /// its test rather than hanging it); its exit status and what it printed on either output.
    public static func runToExit(_ name: String, _ arguments: [String]) async throws -> (status: Int32, output: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.path(name))
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let killer = Task {
            try await Task.sleep(for: .seconds(60))
            process.terminate()
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        killer.cancel()
        return (process.terminationStatus, text)
    }
}
