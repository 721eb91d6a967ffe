import ControlPlaneTesting
import Foundation
import Testing

/// The `egress-proxy` executable refuses values it cannot work with, at startup and with the flag named: a port
/// that would wrap around, a limit of zero that would refuse every request, a reload interval that would spin; and
/// a port it cannot listen on ends in an error that names it, not a crash.
@Suite struct CommandLineTests {
    @Test(arguments: [
        (["--port", "70000"], "--port must be in 0...65535, not 70000"),
        (["--admin-port", "131093"], "--admin-port must be in 0...65535"),
        (["--port=-1"], "--port must be in 0...65535, not -1"),
        (["--reload-interval", "0"], "--reload-interval must be in 1...3600"),
        (["--request-head-timeout", "0"], "--request-head-timeout must be in"),
        (["--client-idle-timeout", "0"], "--client-idle-timeout must be in"),
        (["--max-header-bytes", "0"], "--max-header-bytes must be in"),
        (["--max-header-count", "0"], "--max-header-count must be in"),
        (["--max-connections", "0"], "--max-connections must be in"),
        (["--max-upstream-connections", "0"], "--max-upstream-connections must be in"),
        (["--event-loops", "100000"], "--event-loops must be in 1...1024"),
        (["--check"], "--check checks an --allowlist FILE"),
    ])
    func refusesValuesItCannotWorkWith(_ flags: [String], _ message: String) async throws {
        let (status, output) = try await BuiltExecutable.runToExit(
            "egress-proxy",
            ["--allow", "api.example.com"] + flags
        )
        #expect(status == 64, "\(output)")
        #expect(output.contains(message), "\(output)")
    }

    @Test func aPortInUseIsNamed() async throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try #require(bind(listener, $0, length) == 0 && listen(listener, 1) == 0)
                try #require(getsockname(listener, $0, &length) == 0)
            }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let (status, output) = try await BuiltExecutable.runToExit(
            "egress-proxy",
            [
                "--allow", "api.example.com", "--host", "127.0.0.1", "--port", "\(port)", "--admin-host", "127.0.0.1",
                "--admin-port", "0",
            ]
        )
        #expect(status == 1, "\(output)")
        #expect(output.contains("cannot listen on 127.0.0.1:\(port) (proxy port)"), "\(output)")
        #expect(!output.contains("Fatal error"), "\(output)")
    }

    /// The open-file soft limit is raised to the hard limit at startup: each connection takes a descriptor, and
    /// its upstream another. Started with a soft limit of 512, the process soon shows its hard limit as soft.
    @Test func theOpenFileLimitIsRaisedToItsMaximum() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c",
            "ulimit -Sn 512 && exec \"$0\" --allow api.example.com --host 127.0.0.1 --port 0 "
                + "--admin-host 127.0.0.1 --admin-port 0",
            try BuiltExecutable.path("egress-proxy"),
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        func openFiles() -> (soft: String, hard: String)? {
            guard let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/limits", encoding: .utf8),
                let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") })
            else { return nil }
            let fields = line.dropFirst("Max open files".count).split(separator: " ")
            return fields.count >= 2 ? (String(fields[0]), String(fields[1])) : nil
        }
        // Once the shell has lowered the limit and become the proxy (before, /proc shows the shell's limits).
        func isProxy() -> Bool {
            let path = "/proc/\(process.processIdentifier)/exe"
            return (try? FileManager.default.destinationOfSymbolicLink(atPath: path))?.hasSuffix("egress-proxy") == true
        }
        for _ in 0..<500 where !isProxy() { try await Task.sleep(for: .milliseconds(10)) }
        var limits = openFiles()
        for _ in 0..<500 where limits.map({ $0.soft != $0.hard }) ?? true {
            try await Task.sleep(for: .milliseconds(10))
            limits = openFiles()
        }
        let found = try #require(limits)
        #expect(found.soft == found.hard, "soft \(found.soft), hard \(found.hard)")
    }
}
