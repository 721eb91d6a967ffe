import ControlPlaneTesting
import Foundation
import Synchronization
import XCTest

@testable import KubeAPI

final class WatchTests: LiveTestCase {
    func testWatchSeesAddModifyDeleteInOrder() async throws {
        let selector = "kubeapi-watch=\(self.runID)"
        let list = try await self.client.list(
            .configMaps,
            namespace: self.namespace,
            options: ListOptions(labelSelector: selector)
        )
        let stream = try await self.client.watch(
            .configMaps,
            namespace: self.namespace,
            options: WatchOptions(resourceVersion: list.resourceVersion, labelSelector: selector)
        )
        let name = self.uniqueName("watch")
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)
        _ = try await self.client.create(
            .configMaps,
            self.configMap(name, data: ["v": "1"], labels: ["kubeapi-watch": self.runID])
        )
        _ = try await self.client.patch(.configMaps, name: name, namespace: self.namespace, patch: ["data": ["v": "2"]])
        try await self.client.delete(.configMaps, name: name, namespace: self.namespace)

        let events = try await withTimeout("ADDED, MODIFIED and DELETED events of \(name)") {
            var seen: [WatchEvent] = []
            for try await event in stream where event.type != .bookmark {
                seen.append(event)
                if event.type == .deleted { break }
            }
            return seen
        }
        XCTAssertEqual(events.map(\.type), [.added, .modified, .deleted])
        XCTAssertEqual(events.map { $0.object["data"]?["v"]?.stringValue }, ["1", "2", "2"])
        XCTAssertEqual(Set(events.map(\.object.name)), [name])
    }

    func testWatchEndsWhenTheServerTimesItOut() async throws {
        let stream = try await self.client.watch(
            .configMaps,
            namespace: self.namespace,
            options: WatchOptions(labelSelector: "kubeapi-none=\(self.runID)", timeoutSeconds: 1)
        )
        let count = try await withTimeout("a 1-second watch to end") {
            var count = 0
            for try await _ in stream { count += 1 }
            return count
        }
        XCTAssertEqual(count, 0)
    }
}

/// Collects the keys an informer announces.
extension LiveTestCase {
    /// A watch from `resourceVersion`, older than the API server's watch cache reaches back, fails with 410 Gone,
    /// which the client maps to ``KubeError/Code/gone``, not retryable (the caller must list again). Checked where
    /// the window is known: right after an API server restart, whose fresh watch cache starts at the current
    /// revision. On a control plane that just started, resourceVersion 1 is still inside the window and the watch
    /// answers with ADDED events instead.
    func expectWatchGone(from resourceVersion: String) async throws {
        do {
            let stream = try await self.client.watch(
                .configMaps,
                namespace: self.namespace,
                options: WatchOptions(resourceVersion: resourceVersion)
            )
            try await withTimeout("the watch from resourceVersion \(resourceVersion) to fail with 410 Gone") {
                for try await event in stream {
                    throw TestFailure("expected 410 Gone, got a \(event.type) event")
                }
                throw TestFailure("expected 410 Gone, the watch ended without error")
            }
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .gone, "\(error)")
            XCTAssertFalse(error.isRetryable)
        }
    }
}

final class KeyCollector: Sendable {
    private let keys = Mutex<Set<ObjectKey>>([])

    func insert(_ key: ObjectKey) { self.keys.withLock { _ = $0.insert(key) } }
    func contains(_ keys: Set<ObjectKey>) -> Bool { self.keys.withLock { keys.isSubset(of: $0) } }
    var all: Set<ObjectKey> { self.keys.withLock { $0 } }
}

final class InformerTests: LiveTestCase {
    private func informer(selector: String) -> Informer {
        Informer(
            client: self.client,
            resource: .configMaps,
            namespace: self.namespace,
            labelSelector: selector,
            backoff: Informer.Backoff(initial: .milliseconds(100), maximum: .seconds(2)),
            pageSize: 2,
            watchTimeoutSeconds: 120
        )
    }

    private func create(_ name: String, _ value: String, label: String) async throws {
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)
        _ = try await self.client.create(
            .configMaps,
            self.configMap(name, data: ["v": value], labels: ["kubeapi-informer": label])
        )
    }

    private func update(_ name: String, _ value: String) async throws {
        _ = try await self.client.patch(
            .configMaps,
            name: name,
            namespace: self.namespace,
            patch: ["data": ["v": .string(value)]]
        )
    }

    /// The informer's cache as name → data.v.
    private func snapshot(_ informer: Informer) -> [String: String] {
        var result: [String: String] = [:]
        for object in informer.list() {
            result[object.name ?? ""] = object["data"]?["v"]?.stringValue ?? ""
        }
        return result
    }

    func testSyncCacheAndChangeNotifications() async throws {
        let label = self.runID
        let names = (0..<3).map { _ in self.uniqueName("inf") }
        for name in names { try await self.create(name, "1", label: label) }

        let informer = self.informer(selector: "kubeapi-informer=\(label)")
        let keys = KeyCollector()
        let changes = informer.changes(includeExisting: false)
        let collector = Task { for await key in changes { keys.insert(key) } }
        let runner = Task { await informer.run() }
        defer {
            runner.cancel()
            collector.cancel()
        }

        try await withTimeout("the informer to sync") { try await informer.waitForSync() }
        XCTAssertTrue(informer.hasSynced)
        XCTAssertEqual(self.snapshot(informer), [names[0]: "1", names[1]: "1", names[2]: "1"])
        XCTAssertEqual(informer.get(name: names[0], namespace: self.namespace)?.kind, "ConfigMap")
        // Managed fields are apply bookkeeping: the server keeps them, the cache leaves them out (listed here).
        let served = try await self.client.get(.configMaps, name: names[0], namespace: self.namespace)
        XCTAssertNotNil(served.metadata["managedFields"])
        XCTAssertNil(informer.get(name: names[0], namespace: self.namespace)?.metadata["managedFields"])
        XCTAssertEqual(informer.get(name: names[0], namespace: self.namespace)?.uid, served.uid)
        let synced = informer.delta(since: nil)
        XCTAssertEqual(Set(synced.all?.compactMap(\.name) ?? []), Set(names), "a first read gets every object")

        let added = self.uniqueName("inf")
        try await self.create(added, "1", label: label)
        try await self.update(names[0], "2")
        try await self.client.delete(.configMaps, name: names[1], namespace: self.namespace)

        let expected = [names[0]: "2", names[2]: "1", added: "1"]
        try await eventually("the informer cache to become \(expected)") { self.snapshot(informer) == expected }
        // ... and watched.
        XCTAssertNil(informer.get(name: added, namespace: self.namespace)?.metadata["managedFields"])
        XCTAssertNil(informer.get(name: names[0], namespace: self.namespace)?.metadata["managedFields"])
        let allKeys = Set((names + [added]).map { ObjectKey(namespace: self.namespace, name: $0) })
        try await eventually("change notifications for \(allKeys)") { keys.contains(allKeys) }

        // Since the synced revision: exactly the three changed objects, the deleted one as nil.
        let delta = informer.delta(since: synced.revision)
        XCTAssertNil(delta.all)
        XCTAssertEqual(
            Set(delta.changed.keys),
            allKeys.subtracting([ObjectKey(namespace: self.namespace, name: names[2])])
        )
        XCTAssertEqual(delta.changed[ObjectKey(namespace: self.namespace, name: names[0])]??["data"]?["v"], "2")
        guard case .some(.none) = delta.changed[ObjectKey(namespace: self.namespace, name: names[1])] else {
            return XCTFail("the deleted object is in the delta as nil")
        }
        XCTAssertTrue(informer.delta(since: delta.revision).changed.isEmpty, "nothing changed since")
        XCTAssertNotNil(informer.delta(since: delta.revision + 1).all, "an unknown revision reads everything")

        // A late subscriber first gets the keys of everything cached.
        var late = informer.changes().makeAsyncIterator()
        var lateKeys: Set<ObjectKey> = []
        for _ in 0..<3 { if let key = await late.next() { lateKeys.insert(key) } }
        XCTAssertEqual(
            lateKeys,
            Set([names[0], names[2], added].map { ObjectKey(namespace: self.namespace, name: $0) })
        )

        runner.cancel()
        await runner.value
        await collector.value  // the change stream finishes when run() returns
    }

    /// The API server restarts under a running informer: it reconnects with backoff, relists after the 410 the
    /// fresh watch cache answers for the old resourceVersion, and converges on every change (none lost).
    func testInformerSurvivesAnAPIServerRestart() async throws {
        let label = self.runID
        let a = self.uniqueName("restart")
        let b = self.uniqueName("restart")
        let c = self.uniqueName("restart")
        for name in [a, b, c] { try await self.create(name, "1", label: label) }

        let informer = self.informer(selector: "kubeapi-informer=\(label)")
        let keys = KeyCollector()
        let changes = informer.changes(includeExisting: false)
        let collector = Task { for await key in changes { keys.insert(key) } }
        let runner = Task { await informer.run() }
        defer {
            runner.cancel()
            collector.cancel()
        }
        try await withTimeout("the informer to sync") { try await informer.waitForSync() }
        XCTAssertEqual(informer.listCount, 1)

        // Changes right before the restart (the informer may or may not see them before the server goes away)...
        try await self.update(a, "2")
        try await self.client.delete(.configMaps, name: c, namespace: self.namespace)
        // ...and a write outside the informer's selector, so its resourceVersion is older than the new watch cache.
        let other = self.uniqueName("unrelated")
        self.cleanUp(.configMaps, name: other, namespace: self.namespace)
        _ = try await self.client.create(.configMaps, self.configMap(other, data: [:]))

        try await TestCluster.script("restart-apiserver")

        // ...and changes after it.
        let d = self.uniqueName("restart")
        try await self.create(d, "1", label: label)
        try await self.update(b, "2")

        let expected = [a: "2", b: "2", d: "1"]
        try await eventually("the informer cache to converge on \(expected) after the restart", timeout: .seconds(120))
        {
            self.snapshot(informer) == expected
        }
        XCTAssertGreaterThanOrEqual(informer.listCount, 2, "the informer relists after 410 Gone")
        XCTAssertGreaterThanOrEqual(informer.watchCount, 2)
        try await self.expectWatchGone(from: "1")
        let allKeys = Set([a, b, c, d].map { ObjectKey(namespace: self.namespace, name: $0) })
        try await eventually("change notifications for \(allKeys)") { keys.contains(allKeys) }
    }
}
