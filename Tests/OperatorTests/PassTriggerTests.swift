import KubeAPI
import Manifests
import XCTest

@testable import Operator

/// What starts a configuration pass, and what a pass may reuse from the last one, without a cluster.
final class PassTriggerTests: XCTestCase {
    private func egressHost(resourceVersion: String, port: Int = 443, status: JSONValue? = nil) -> KubeObject {
        var object = KubeObject(apiVersion: "egress.dev/v1alpha1", kind: "EgressHost", name: "github")
        object.resourceVersion = resourceVersion
        object.metadata["generation"] = 1
        object["spec"] = ["host": "api.github.com", "port": .int(Int64(port))]
        if let status { object["status"] = status }
        return object
    }

    func testOnlyAStatusWriteIsIgnored() {
        let old = egressHost(resourceVersion: "10")
        let statusWrite = egressHost(resourceVersion: "11", status: ["observedGeneration": 1])
        XCTAssertTrue(OperatorService.onlyStatusChanged(old, statusWrite))

        XCTAssertFalse(OperatorService.onlyStatusChanged(old, egressHost(resourceVersion: "11", port: 8443)))
        var labelled = statusWrite
        labelled.labels = ["team": "payments"]
        XCTAssertFalse(OperatorService.onlyStatusChanged(old, labelled))
        var deleting = statusWrite
        deleting.metadata["deletionTimestamp"] = "2026-11-27T00:00:00Z"
        XCTAssertFalse(OperatorService.onlyStatusChanged(old, deleting))
    }

    func testLastResultComputesOncePerInputAndKeepsWhatItIsTold() {
        let last = LastResult<String, Int>()
        var calls = 0
        func length(_ text: String) -> Int {
            calls += 1
            return text.utf8.count
        }
        XCTAssertEqual(last("abc", length), 3)
        XCTAssertEqual(last("abc", length), 3)
        XCTAssertEqual(calls, 1)
        XCTAssertEqual(last("abcd", length), 4)
        XCTAssertEqual(calls, 2)
        XCTAssertNil(last.cached("abc"), "only the last input is kept")

        last.remember("written", 7)
        XCTAssertEqual(last.cached("written"), 7)
        XCTAssertEqual(last("written", length), 7)
        XCTAssertEqual(calls, 2)
    }

    // MARK: - EgressHostIndex

    private func object(
        _ name: String,
        host: String,
        version: String,
        created: String = "2026-11-27T00:00:00Z"
    )
        -> KubeObject
    {
        var object = KubeObject(apiVersion: "egress.dev/v1alpha1", kind: "EgressHost", name: name)
        object.resourceVersion = version
        object.metadata["creationTimestamp"] = .string(created)
        object["spec"] = ["host": .string(host)]
        return object
    }

    private func key(_ name: String) -> ObjectKey { ObjectKey(namespace: nil, name: name) }

    /// The index's plan after any sequence of deltas equals a plan made from scratch of the same objects.
    private func assertPlansFromScratch(
        _ index: inout EgressHostIndex,
        _ objects: [KubeObject],
        material: TLSMaterial = TLSMaterial(),
        file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let (hosts, plan) = index.plan(material: material, tlsMountPath: "/tls")
        // The order the plan is made in: every slot once, sorted by host, then name.
        XCTAssertEqual(index.hostOrder.sorted(), Array(hosts.indices), file: file, line: line)
        let keys = index.hostOrder.map { (hosts[$0].spec.host, hosts[$0].metadata.name) }
        XCTAssert(zip(keys, keys.dropFirst()).allSatisfy { $0 < $1 }, "\(keys)", file: file, line: line)
        let expectedHosts = try objects.map { try $0.decode(EgressHost.self) }
        XCTAssertEqual(
            Set(hosts.map(\.metadata.name)),
            Set(expectedHosts.map(\.metadata.name)),
            file: file,
            line: line
        )
        XCTAssertEqual(
            plan,
            EgressPlan(egressHosts: expectedHosts, material: material, tlsMountPath: "/tls"),
            file: file,
            line: line
        )
    }

    func testEgressHostIndexFollowsDeltasAndDecodesOnlyWhatChanged() throws {
        var decoded: [String] = []
        func decode(_ object: KubeObject) -> EgressHost? {
            decoded.append(object.name ?? "")
            return try? object.decode(EgressHost.self)
        }
        let a = object("a", host: "a.example.com", version: "1")
        let b = object("b", host: "b.example.com", version: "2")
        let c = object("c", host: "c.example.com", version: "3")
        var index = EgressHostIndex()
        index.update(Informer.Delta(revision: 3, all: [a, b, c]), decode: decode)
        XCTAssertEqual(Set(decoded), ["a", "b", "c"])
        try assertPlansFromScratch(&index, [a, b, c])

        // One object changes, one is deleted (the swap-remove moves another into its slot), one is being deleted.
        decoded = []
        let a2 = object("a", host: "a2.example.com", version: "4")
        var deleting = c
        deleting.metadata["deletionTimestamp"] = "2026-11-27T01:00:00Z"
        index.update(
            Informer.Delta(revision: 6, changed: [key("a"): a2, key("b"): nil as KubeObject?, key("c"): deleting]),
            decode: decode
        )
        XCTAssertEqual(decoded, ["a"], "only the changed object is decoded; one being deleted is dropped unread")
        XCTAssertEqual(index.revision, 6)
        try assertPlansFromScratch(&index, [a2])

        // A second claim on a host that an older object holds, then the older one goes away.
        let older = object("older", host: "shared.example.com", version: "7", created: "2026-01-01T00:00:00Z")
        let newer = object("newer", host: "shared.example.com", version: "8", created: "2026-06-01T00:00:00Z")
        index.update(Informer.Delta(revision: 8, changed: [key("older"): older, key("newer"): newer]), decode: decode)
        try assertPlansFromScratch(&index, [a2, older, newer])
        index.update(Informer.Delta(revision: 9, changed: [key("older"): nil as KubeObject?]), decode: decode)
        try assertPlansFromScratch(&index, [a2, newer])

        // A status write alone, then a spec change of the same object: both are read, the plan follows the spec.
        // The status write is read without decoding the whole object, and reads as a full decode would.
        decoded = []
        var statusWritten = newer
        statusWritten.resourceVersion = "10"
        statusWritten["status"] = [
            "observedGeneration": 1,
            "conditions": [
                [
                    "type": "Ready", "status": "True", "reason": "Ready", "message": "reachable",
                    "lastTransitionTime": "2026-11-27T02:00:00Z", "observedGeneration": 1,
                ]
            ],
        ]
        index.update(Informer.Delta(revision: 10, changed: [key("newer"): statusWritten]), decode: decode)
        XCTAssertEqual(decoded, [])
        try assertPlansFromScratch(&index, [a2, statusWritten])
        XCTAssertEqual(
            index.plan(material: TLSMaterial(), tlsMountPath: "/tls").hosts.first { $0.metadata.name == "newer" },
            try statusWritten.decode(EgressHost.self)
        )
        // With anything else changed too (a label), the whole object is decoded.
        var labelled = statusWritten
        labelled.resourceVersion = "10a"
        labelled.metadata["labels"] = ["team": "payments"]
        labelled["status"] = ["observedGeneration": 2]
        index.update(Informer.Delta(revision: 10, changed: [key("newer"): labelled]), decode: decode)
        XCTAssertEqual(decoded, ["newer"])
        XCTAssertEqual(
            index.plan(material: TLSMaterial(), tlsMountPath: "/tls").hosts.first { $0.metadata.name == "newer" },
            try labelled.decode(EgressHost.self)
        )
        var moved = labelled
        moved.resourceVersion = "11"
        moved["spec"] = ["host": "moved.example.com"]
        index.update(Informer.Delta(revision: 11, changed: [key("newer"): moved]), decode: decode)
        try assertPlansFromScratch(&index, [a2, moved])

        // A full re-read (e.g. after a relist) reuses what is decoded at the same resourceVersion.
        decoded = []
        index.update(Informer.Delta(revision: 12, all: [a2, moved, b]), decode: decode)
        XCTAssertEqual(decoded, ["b"])
        try assertPlansFromScratch(&index, [a2, moved, b])
    }

    /// Random creates, host changes, status writes and deletes, one delta at a time (or a few together): after each,
    /// the index plans as a plan from scratch would, and keeps its host order a sorted permutation.
    func testEgressHostIndexMatchesAPlanFromScratchThroughRandomChanges() throws {
        var generator = SystemRandomNumberGenerator()
        var index = EgressHostIndex()
        var live: [String: KubeObject] = [:]
        var version = 0
        index.update(Informer.Delta(revision: 0, all: [])) { try? $0.decode(EgressHost.self) }
        for step in 1...300 {
            var changed: [ObjectKey: KubeObject?] = [:]
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let name = "eh\(Int.random(in: 0..<12, using: &generator))"
                version += 1
                // A few hosts for a dozen names: conflicts come and go.
                let host = "h\(Int.random(in: 0..<6, using: &generator)).example.com"
                let created = "2026-11-\(10 + Int.random(in: 0..<9, using: &generator))T00:00:00Z"
                switch (live[name], Int.random(in: 0..<4, using: &generator)) {
                case (nil, _), (_, 0):
                    live[name] = object(name, host: host, version: "\(version)", created: created)
                case (var existing?, 1):
                    existing.resourceVersion = "\(version)"
                    existing["status"] = ["observedGeneration": .int(Int64(version))]
                    live[name] = existing
                case (var existing?, 2):
                    existing.resourceVersion = "\(version)"
                    existing["spec"] = ["host": .string(host)]
                    live[name] = existing
                default:
                    live[name] = nil
                }
                changed[key(name)] = .some(live[name])
            }
            index.update(Informer.Delta(revision: step, changed: changed)) { try? $0.decode(EgressHost.self) }
            try assertPlansFromScratch(&index, Array(live.values))
        }
    }

    func testEgressHostIndexReassessesEveryHostWhenTheMaterialChanges() throws {
        var withCA = object("internal", host: "internal.example.com", version: "1")
        withCA["spec"]?["tls"] = ["caBundle": ["kind": "ConfigMap", "name": "internal-ca"]]
        let plain = object("plain", host: "plain.example.com", version: "2")
        var index = EgressHostIndex()
        index.update(Informer.Delta(revision: 2, all: [withCA, plain])) { try? $0.decode(EgressHost.self) }
        let missing = index.plan(material: TLSMaterial(), tlsMountPath: "/tls").plan
        XCTAssertEqual(missing.allowList.hosts.map(\.host), ["plain.example.com"])

        let material = TLSMaterial(configMaps: ["internal-ca": ["ca.crt": "PEM"]])
        try assertPlansFromScratch(&index, [withCA, plain], material: material)
        XCTAssertEqual(
            index.plan(material: material, tlsMountPath: "/tls").plan.allowList.hosts.map(\.host),
            ["internal.example.com", "plain.example.com"]
        )
    }
}
