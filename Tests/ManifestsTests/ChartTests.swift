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
