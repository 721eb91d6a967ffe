import KubeAPI
import Manifests
import Synchronization
import XCTest

@testable import Operator

/// The proxy with a HorizontalPodAutoscaler, against the real API server. No controller manager runs here, so the
/// test scales the Deployment itself the way the autoscaler does: through its `scale` subresource.
final class AutoscalingTests: OperatorTestCase {
    /// The Deployment starts at the minimum and then keeps whatever the autoscaler chose, through every re-apply of
    /// the operator (a new pod template, a restart), including before the autoscaler has ever scaled: server-side
    /// apply would reset a replicas field the operator stopped applying to 1. A count outside the bounds is brought
    /// back within them; with autoscaling turned off the autoscaler is deleted and the fixed count returns.
    func testReplicasFollowTheAutoscalerWithinItsBounds() async throws {
        try await createCoreDNS()
        var options = self.options()
        options.settings.proxy.replicas = 2
        options.settings.proxy.autoscaling = ProxySettings.Autoscaling(
            maxReplicas: 6,
            targetCPUUtilizationPercentage: 60
        )
        var running = try await startOperator(options)

        let autoscaler = try await waitForProxyObject(.horizontalPodAutoscalers)
        XCTAssertEqual(autoscaler[path: "spec", "scaleTargetRef", "kind"]?.stringValue, "Deployment")
        XCTAssertEqual(autoscaler[path: "spec", "scaleTargetRef", "name"]?.stringValue, Self.proxyName)
        XCTAssertEqual(autoscaler[path: "spec", "minReplicas"]?.intValue, 2)
        XCTAssertEqual(autoscaler[path: "spec", "maxReplicas"]?.intValue, 6)
        XCTAssertEqual(autoscaler[path: "spec", "targetCPUUtilizationPercentage"]?.intValue, 60)
        let created = try await waitForDeployment()
        XCTAssertEqual(created[path: "spec", "replicas"]?.intValue, 2)

        // Re-applied before any scaling: still 2, not reset.
        running = try await restart(running, &options, revision: "1")
        try await expectReplicas(2)

        // The autoscaler scales up; the operator's next re-apply keeps it.
        try await scaleProxy(to: 5)
        running = try await restart(running, &options, revision: "2")
        try await expectReplicas(5)

        // Scaled past the maximum by hand: brought back to it, not to the minimum.
        try await scaleProxy(to: 9, fieldManager: "kubectl-scale")
        try await eventually("the proxy Deployment to be brought back within the autoscaler's bounds") {
            try await self.replicas() == 6
        }

        // Autoscaling off: the autoscaler goes, the fixed count comes back.
        await running.stop()
        options.settings.proxy.autoscaling = nil
        try await startOperator(options)
        try await eventually("the proxy HorizontalPodAutoscaler to be deleted") {
            do {
                _ = try await self.client.get(
                    .horizontalPodAutoscalers,
                    name: Self.proxyName,
                    namespace: self.namespace
                )
                return false
            } catch let error as KubeError where error.code == .notFound {
                return true
            }
        }
        try await eventually("the proxy Deployment to be back at its fixed replicas") { try await self.replicas() == 2 }
    }

    private func replicas() async throws -> Int? {
        try await client.get(.deployments, name: Self.proxyName, namespace: namespace)[path: "spec", "replicas"]?
            .intValue
    }

    /// Stops `running` and starts an operator whose proxy pod template differs (an annotation), so that it applies
    /// the Deployment again; returns once it has.
    private func restart(
        _ running: RunningOperator,
        _ options: inout OperatorOptions,
        revision: String
    ) async throws -> RunningOperator {
        await running.stop()
        options.settings.proxy.podAnnotations = ["example.com/revision": revision]
        let restarted = try await startOperator(options)
        try await eventually("the operator to apply the proxy pod template of revision \(revision)") {
            let deployment = try await self.client.get(.deployments, name: Self.proxyName, namespace: self.namespace)
            return deployment[path: "spec", "template", "metadata", "annotations", "example.com/revision"]?
                .stringValue == revision
        }
        return restarted
    }

    /// The count stays at `expected` while the operator keeps running (a few of its passes).
    private func expectReplicas(_ expected: Int) async throws {
        for _ in 0..<10 {
            let current = try await replicas()
            XCTAssertEqual(current, expected, "the proxy Deployment's replicas")
            guard current == expected else { return }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// What the HorizontalPodAutoscaler controller does: an update of the Deployment's `scale` subresource.
    private func scaleProxy(to replicas: Int, fieldManager: String = "kube-controller-manager") async throws {
        _ = try await client.patch(
            .deployments,
            name: Self.proxyName,
            namespace: namespace,
            patch: ["spec": ["replicas": .int(Int64(replicas))]],
            type: .merge,
            subresource: "scale",
            fieldManager: fieldManager
        )
    }
}
