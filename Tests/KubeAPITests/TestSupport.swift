import Dispatch
import Foundation
import XCTest

@testable import KubeAPI

#if canImport(Glibc)
    import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// The local control plane of `scripts/control-plane.sh` (or whatever `KUBECONFIG` points at).
enum TestCluster {
    static let repoRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .path

    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    static var stateDirectory: String { environment["EGRESS_CONTROL_PLANE_DIR"] ?? "/tmp/egress-control-plane" }

    static let howToStart =
        "These tests need the local Kubernetes control plane. Start it with `scripts/control-plane.sh start` "
        + "(first time: `scripts/control-plane.sh install`), then run the tests again"

    /// `KUBECONFIG` if set, else the admin kubeconfig in the script's state directory.
    static func adminConfig() throws -> KubeConfig {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try KubeConfig.load(kubeconfigPaths: list.split(separator: ":").map(String.init))
        }
        return try stateConfig("kubeconfig")
    }

    /// A kubeconfig written by `scripts/control-plane.sh start` (`kubeconfig`, `kubeconfig-nobody`, `kubeconfig-cert`).
    static func stateConfig(_ file: String) throws -> KubeConfig {
        let path = "\(stateDirectory)/\(file)"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("\(howToStart). (\(path) does not exist.)")
        }
        return try KubeConfig.load(kubeconfigPaths: [path])
    }

    /// A client that has reached the server once, or a failure that says how to start the control plane.
    static func client(_ config: KubeConfig) async throws -> KubeClient {
        let client = try KubeClient(config: config)
        do {
            _ = try await client.serverVersion()
        } catch {
            try await client.shutdown()
            throw TestFailure("\(howToStart). (\(config.server) is not reachable: \(error))")
        }
        return client
    }

    /// Runs `scripts/control-plane.sh ARGS` (its output goes to the test log) and fails if it fails.
    ///
    /// posix_spawn + waitpid on a Dispatch thread: Foundation's `Process.waitUntilExit()` was seen never to reap
    /// the child inside the test process.
    static func script(_ arguments: String...) async throws {
        let argv = ["/bin/bash", "\(repoRoot)/scripts/control-plane.sh"] + arguments
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                var cArguments = argv.map { strdup($0) } + [nil]
                defer { for argument in cArguments { free(argument) } }
                var pid: pid_t = 0
                let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &cArguments, environ)
                guard spawned == 0 else {
                    continuation.resume(throwing: TestFailure("cannot run control-plane.sh: errno \(spawned)"))
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        guard status == 0 else {
            throw TestFailure(
                "control-plane.sh \(arguments.joined(separator: " ")) failed (wait status \(status)); see its output above"
            )
        }
    }
}

/// Base class for tests against the live API server: a client, unique names, and cleanup of what a test created.
class LiveTestCase: XCTestCase {
    var client: KubeClient!
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    let namespace = "default"
    private var cleanups: [(Resource, String?, String)] = []
    private var counter = 0

    override func setUp() async throws {
        try await super.setUp()
        self.client = try await TestCluster.client(try TestCluster.adminConfig())
    }

    override func tearDown() async throws {
        if let client = self.client {
            for (resource, namespace, name) in self.cleanups.reversed() {
                do {
                    try await client.delete(resource, name: name, namespace: namespace)
                } catch let error as KubeError where error.code == .notFound {
                    // Already gone: the test deleted it.
                } catch {
                    print("cleanup of \(resource) \(name) failed: \(error)")
                }
            }
            try await client.shutdown()
        }
        self.client = nil
        try await super.tearDown()
    }

    /// A name unique to this run (DNS-1123).
    func uniqueName(_ prefix: String) -> String {
        self.counter += 1
        return "\(prefix)-\(self.runID)-\(self.counter)"
    }

    /// Deletes the object after the test.
    func cleanUp(_ resource: Resource, name: String, namespace: String?) {
        self.cleanups.append((resource, namespace, name))
    }

    func configMap(_ name: String, data: [String: String], labels: [String: String] = [:]) -> KubeObject {
        var object = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: name, namespace: self.namespace)
        object["data"] = .object(data.mapValues(JSONValue.string))
        object.labels = labels
        return object
    }
}

/// Polls `condition` until it holds; fails with `what` after `timeout` (a bound, not a timing assertion).
func eventually(
    _ what: String,
    timeout: Duration = .seconds(60),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now >= deadline {
            throw TestFailure("timed out after \(timeout) waiting for \(what)")
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// Runs `body`, failing with `what` if it has not finished after `timeout`.
func withTimeout<T: Sendable>(
    _ what: String,
    _ timeout: Duration = .seconds(60),
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TestFailure("timed out after \(timeout) waiting for \(what)")
        }
        return value
    }
}
