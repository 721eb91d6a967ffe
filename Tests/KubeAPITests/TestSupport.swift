import ControlPlaneTesting
import Dispatch
import Foundation
import XCTest

@testable import KubeAPI

#if canImport(Glibc)
    import Glibc
#endif

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
        object["data"] = .object(JSONObject(data.mapValues(JSONValue.string)))
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
