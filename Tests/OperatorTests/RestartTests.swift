import ControlPlaneTesting
import Foundation
import KubeAPI
import XCTest

/// The API server restarts under a running operator (etcd keeps the data): the informers reconnect and the
/// operator converges, with no change lost.
final class RestartTests: OperatorTestCase {
    func testConvergesAfterAPIServerRestart() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        try await setProxyAvailable(1)
        let (before, beforeName) = (uniqueHost("before"), uniqueName("eh"))
        try await createEgressHost(beforeName, host: before)
        try await waitForConvergence([before])

        try await TestCluster.script("restart-apiserver")

        // Changes right after the restart, while the operator's watches are still reconnecting.
        let (after, afterName) = (uniqueHost("after"), uniqueName("eh"))
        let renamed = uniqueHost("renamed")
        try await retrying("creating an EgressHost after the restart") {
            do {
                try await createEgressHost(afterName, host: after)
            } catch let error as KubeError where error.code == .alreadyExists {
                // An earlier attempt got through, only its response was lost.
            }
        }
        try await retrying("changing an EgressHost after the restart") {
            try await client.patch(Self.egressHosts, name: beforeName, patch: ["spec": ["host": .string(renamed)]])
        }
        try await waitForConvergence([renamed, after], timeout: .seconds(60))
        try await waitForCondition(afterName, "Programmed", .true)
        try await waitForCondition(beforeName, "Programmed", .true)

        // And the operator still reacts to new events (its watches are live, not just relisted once).
        try await deleteEgressHost(afterName)
        try await waitForConvergence([renamed])
        let text = try await corefile()
        XCTAssertEqual(Self.outsideManagedBlock(text), Self.outsideManagedBlock(originalCorefile))
        XCTAssertGreaterThan(running.service.passes, 0)
    }
}
