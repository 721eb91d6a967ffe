import KubeAPI
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
}
