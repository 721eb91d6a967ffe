import Foundation
import Prometheus
import XCTest

@testable import Operator

/// The operator's metrics as Prometheus reads them, from a registry of the test's own.
final class OperatorMetricsTests: OperatorTestCase {
    /// EgressHosts are counted by why they are not Ready (`Ready` when they are), every reason present, zero
    /// included, so that an alert on a reason sees it go back to zero; and every operator metric the chart's
    /// dashboard and alerts query is in the exposition.
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

        try await expectEgressHostCounts(
            registry,
            ["Ready": 1, "MissingSecret": 1, "Pending": 0, "InvalidTLSMaterial": 0, "DNSNotWritable": 0]
        )

        // Every operator metric the chart's dashboard and alerts query is one the operator exports.
        let exposition = registry.emitToString()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        for file in ["dashboards/egress.json", "alerts/egress.rules.yaml"] {
            let path = repository.appendingPathComponent("charts/egress-operator").appendingPathComponent(file)
            let text = try String(contentsOf: path, encoding: .utf8)
            let names = Set(text.matches(of: /egress_operator_[a-z_]+/).map { String($0.output) })
            XCTAssertFalse(names.isEmpty, "\(file) names no operator metric")
            for name in names {
                let family = name.replacing(/_(bucket|sum|count)$/, with: "")
                XCTAssertTrue(
                    exposition.contains("# TYPE \(family) "),
                    "\(file) queries \(family), which the operator does not export"
                )
            }
        }

        // The partner's host fixed, by removing its TLS reference: both Ready, MissingSecret back to zero.
        _ = try await client.patch(Self.egressHosts, name: partner, patch: ["spec": ["tls": .null]])
        try await waitForCondition(partner, "Ready", .true)
        try await expectEgressHostCounts(registry, ["Ready": 2, "MissingSecret": 0])
    }
}
