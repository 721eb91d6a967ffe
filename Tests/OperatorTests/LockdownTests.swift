import Foundation
import KubeAPI
import Manifests
import XCTest

@testable import Operator

/// Lockdown: namespaces that opt in by label get the egress-only-through-the-proxy NetworkPolicy; opting out
/// removes it; policies of another installation are never touched.
final class LockdownTests: OperatorTestCase {
    func testOptedInNamespacesGetThePolicyAndLoseItWhenTheyOptOut() async throws {
        try await createCoreDNS()
        var options = self.options()
        options.settings.lockdown.enabled = true
        let running = try await startOperator(options)
        // The operator's own namespace, labelled too: locking it down would cut the proxy itself off.
        _ = try await client.patch(
            .namespaces,
            name: namespace,
            patch: ["metadata": ["labels": [LockdownSettings.namespaceLabel: "true"]]]
        )

        let tenant = uniqueName("tenant")
        var object = KubeObject(apiVersion: "v1", kind: "Namespace", name: tenant)
        object.labels = [LockdownSettings.namespaceLabel: "true"]
        _ = try await client.create(.namespaces, object)
        defer { Task { [client] in try? await client?.delete(.namespaces, name: tenant) } }

        // Another installation's policy, in the same namespace, with the managed-by label but not ours.
        var foreign = KubeObject(
            apiVersion: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            name: "other-installation",
            namespace: tenant
        )
        foreign.labels = ProxyWorkload.managedByLabels.merging([ProxyWorkload.installationLabel: "someone-else"]) {
            $1
        }
        foreign["spec"] = ["podSelector": [:], "policyTypes": ["Egress"]]
        _ = try await client.create(.networkPolicies, foreign)

        let policyName = options.settings.lockdown.policyName
        try await eventually("the lockdown NetworkPolicy in \(tenant)") {
            (try? await self.client.get(.networkPolicies, name: policyName, namespace: tenant)) != nil
        }
        let policy = try await client.get(.networkPolicies, name: policyName, namespace: tenant)
        XCTAssertEqual(policy[path: "spec", "policyTypes"], ["Egress"])
        let peers = policy[path: "spec", "egress"]?.arrayValue ?? []
        XCTAssertEqual(peers.count, 3, "DNS, the proxy, in-cluster CIDRs: \(peers)")
        XCTAssertEqual(policy.labels[ProxyWorkload.installationLabel], namespace)
        try await waitUntilQuiet(running)
        do {
            _ = try await client.get(.networkPolicies, name: policyName, namespace: namespace)
            XCTFail("the operator locked its own namespace down, the proxy's way out included")
        } catch let error as KubeError where error.code == .notFound {}

        // Opt out: the policy goes, the other installation's stays.
        _ = try await client.patch(
            .namespaces,
            name: tenant,
            patch: ["metadata": ["labels": [LockdownSettings.namespaceLabel: nil]]]
        )
        try await eventually("the lockdown NetworkPolicy in \(tenant) to be deleted") {
            do {
                _ = try await self.client.get(.networkPolicies, name: policyName, namespace: tenant)
                return false
            } catch let error as KubeError where error.code == .notFound {
                return true
            }
        }
        let survivor = try await client.get(.networkPolicies, name: "other-installation", namespace: tenant)
        XCTAssertEqual(survivor.name, "other-installation")
    }
}
