import Prometheus
import XCTest

@testable import Operator

/// The operator's metrics as Prometheus reads them, from a registry of the test's own.
final class OperatorMetricsTests: OperatorTestCase {
    /// EgressHosts are counted by why they are not Ready (`Ready` when they are), every reason present, zero
    /// included, so that an alert on a reason sees it go back to zero.
    func testEgressHostsAreCountedByReadiness() async throws {
        try await createCoreDNS()
        let registry = PrometheusCollectorRegistry()
        try await startOperator(metricsFactory: PrometheusMetricsFactory(registry: registry))
        try await setProxyAvailable(1)
        let (good, partner) = (uniqueName("eh"), uniqueName("eh"))
        try await createEgressHost(good, host: uniqueHost("good"))
        try await createEgressHost(
            partner,
            host: uniqueHost("partner"),
            tls: ["caBundle": ["kind": "ConfigMap", "name": "absent-ca"]]
        )
        try await waitForCondition(good, "Ready", .true)
        try await waitForCondition(partner, "Accepted", .false, reason: "MissingSecret")

        func expectCounts(_ counts: [String: Int]) async throws {
            try await eventually("egress_operator_egresshosts to read \(counts)", observed: { registry.emitToString() })
            {
                let text = registry.emitToString()
                return counts.allSatisfy { reason, count in
                    text.contains("egress_operator_egresshosts{reason=\"\(reason)\"} \(count).0\n")
                }
            }
        }
        try await expectCounts(["Ready": 1, "MissingSecret": 1, "Pending": 0, "InvalidTLSMaterial": 0])
        XCTAssertTrue(registry.emitToString().contains("egress_operator_reconciles_total{result=\"success\"}"))

        // The partner's host fixed, by removing its TLS reference: both Ready, MissingSecret back to zero.
        _ = try await client.patch(Self.egressHosts, name: partner, patch: ["spec": ["tls": .null]])
        try await waitForCondition(partner, "Ready", .true)
        try await expectCounts(["Ready": 2, "MissingSecret": 0])
    }
}
