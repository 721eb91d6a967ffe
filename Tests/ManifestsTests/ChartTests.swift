import Foundation
import Testing

@testable import Manifests

@Suite("Helm chart")
struct ChartTests {
    /// The chart's CRD and RBAC rules are generated; this is their drift check.
    @Test("committed chart files match the generators")
    func chartIsUpToDate() throws {
        let chart = Golden.repositoryRoot.appendingPathComponent(ChartBundle.directory)
        for file in ChartBundle.files() {
            let committed = try? String(contentsOf: chart.appendingPathComponent(file.path), encoding: .utf8)
            #expect(
                committed == file.text,
                "\(ChartBundle.directory)/\(file.path) is stale: run `swift run egress-operator manifests --output config --chart \(ChartBundle.directory)`"
            )
        }
    }

    /// The operator's metrics go through the global metrics system, which no test bootstraps, so the names the
    /// dashboard and the alerts query are checked against their definitions (the proxy's are checked against its
    /// real exposition, in ProxyTests).
    @Test("every operator metric the dashboard and the alerts query is one the operator defines")
    func operatorMetricNames() throws {
        let root = Golden.repositoryRoot
        let source = try String(
            contentsOf: root.appendingPathComponent("Sources/Operator/OperatorMetrics.swift"),
            encoding: .utf8
        )
        var queried: Set<String> = []
        for file in ["dashboards/egress.json", "alerts/egress.rules.yaml"] {
            let path = root.appendingPathComponent(ChartBundle.directory).appendingPathComponent(file)
            let text = try String(contentsOf: path, encoding: .utf8)
            for match in text.matches(of: /egress_operator_[a-z_]+/) {
                let family = String(match.output).replacing(/_(bucket|sum|count)$/, with: "")
                queried.insert(family)
                #expect(
                    source.contains("\"\(family)\""),
                    "\(file) queries \(family), which the operator does not define"
                )
            }
        }
        #expect(!queried.isEmpty)
    }

    @Test("the chart installs the same CRD as config/")
    func sameCRD() throws {
        let fromChart = ChartBundle.files().first { $0.path.hasPrefix("crds/") }?.text
        let fromConfig = ConfigBundle.files().first { $0.path.hasPrefix("crd/egresshosts") }?.text
        #expect(fromChart != nil && fromChart == fromConfig)
    }

    @Test("every RBAC rule of config/ appears in the chart's rule templates")
    func sameRules() {
        let rules = ChartBundle.rbacRules(OperatorSettings())
        for name in ["cluster", "namespace", "coredns"] {
            #expect(rules.contains("{{- define \"egress-operator.rules.\(name)\" }}"))
        }
        for rule in RBAC.clusterRules + RBAC.namespaceRules
            + RBAC.coreDNSRules(ChartBundle.templated(CoreDNSSettings()))
        {
            let text = YAML.render(.array([rule.json]))
            #expect(rules.contains(text))
        }
    }
}
