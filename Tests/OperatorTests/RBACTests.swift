import ControlPlaneTesting
import Foundation
import KubeAPI
import Manifests
import XCTest

@testable import Operator

/// The permissions the operator ships with (`RBAC.objects`, which `config/rbac` and the chart are made from) are
/// enough for everything it does, against the real API server's authorizer: the operator runs as its own
/// ServiceAccount, with a token the API server issued for it (TokenRequest), not as the tests' admin.
final class RBACTests: OperatorTestCase {
    /// Every feature that reads or writes something on: leader election (Lease), the proxy workload with an
    /// autoscaler, a CA bundle ConfigMap copied into the TLS Secret, CoreDNS, lockdown policies in an opted-in
    /// namespace, status, Events, and the proxy pods asked what they have loaded. The host becomes Ready, and the
    /// operator logged no refusal from the API server.
    func testTheOperatorDoesItsWholeJobWithOnlyTheRBACItShips() async throws {
        try await createCoreDNS()
        var options = self.options()
        // The ClusterRole and its binding are cluster-scoped and named after the operator: unique to this test.
        options.settings.name = uniqueName("egress-operator")
        options.leaderElection = true
        options.confirmProxyLoad = true
        options.settings.lockdown.enabled = true
        options.settings.proxy.autoscaling = ProxySettings.Autoscaling(maxReplicas: 3)
        // The proxy's files (the kubelet's volumes) live in a directory of the test's.
        let proxy = try await startLocalProxy()
        options.settings.proxy.tlsMountPath = "\(proxy.directory)/tls"
        let operatorClient = try await serviceAccountClient(options.settings)

        // The token is the ServiceAccount's, and the ServiceAccount is held to its rules.
        do {
            _ = try await operatorClient.list(.secrets, namespace: "kube-system")
            XCTFail("the operator's ServiceAccount can read Secrets in kube-system")
        } catch let error as KubeError where error.code == .forbidden {}
        // Of CoreDNS's namespace it reads the two CoreDNS ConfigMaps, by name, and nothing else.
        do {
            _ = try await operatorClient.list(.configMaps, namespace: dnsNamespace)
            XCTFail("the operator's ServiceAccount can list every ConfigMap in CoreDNS's namespace")
        } catch let error as KubeError where error.code == .forbidden {}

        let running = try await startOperator(options, client: operatorClient)

        let tenant = uniqueName("tenant")
        var namespaceObject = KubeObject(apiVersion: "v1", kind: "Namespace", name: tenant)
        namespaceObject.labels = [LockdownSettings.namespaceLabel: "true"]
        _ = try await client.create(.namespaces, namespaceObject)
        addTeardownBlock { [client] in try? await client?.delete(.namespaces, name: tenant) }

        let bundle = uniqueName("partner-ca")
        var configMap = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: bundle, namespace: namespace)
        configMap["data"] = ["ca.crt": .string(try selfSignedPEM("partner CA").certificate)]
        _ = try await client.create(.configMaps, configMap)
        let partner = uniqueName("partner")
        try await createEgressHost(
            partner,
            host: uniqueHost("payments"),
            tls: ["caBundle": ["kind": "ConfigMap", "name": .string(bundle), "key": "ca.crt"]]
        )

        try await setProxyAvailable(1)
        try await createProxyPod(uniqueName("proxy"), adminPort: proxy.adminPort)
        try await waitForCondition(partner, "Programmed", .true)
        // The kubelet's sync, of the TLS Secret (the CA bundle the allow-list names) and then of the allow-list.
        let tls = try await client.get(.secrets, name: "\(Self.proxyName)-tls", namespace: namespace)
        XCTAssertEqual(tls[path: "data"]?.objectValue?.count, 1, "the CA bundle is in the proxy's TLS Secret")
        try syncTLS(tls, into: options.settings.proxy.tlsMountPath)
        try await sync(proxy)
        try await waitForCondition(partner, "Ready", .true, reason: "Ready")

        let policy = try await client.get(
            .networkPolicies,
            name: options.settings.lockdown.policyName,
            namespace: tenant
        )
        XCTAssertEqual(policy.labels[ProxyWorkload.installationLabel], namespace)
        _ = try await waitForProxyObject(.horizontalPodAutoscalers)
        let lease = try await client.get(.leases, name: options.leaseName, namespace: namespace)
        XCTAssertEqual(lease[path: "spec", "holderIdentity"]?.stringValue, options.identity)
        try await eventually("an Event about \(partner)") {
            let events = try await self.client.list(.events, namespace: "default")
            return events.items.contains { $0[path: "involvedObject", "name"]?.stringValue == partner }
        }
        let refusals = running.logs.all.filter { "\($0.message) \($0.metadata)".lowercased().contains("forbidden") }
        XCTAssertTrue(refusals.isEmpty, "the API server refused the operator: \(refusals.map(\.message))")
    }

    /// The operator's ServiceAccount with the RBAC objects it ships (applied by the admin), and a client that
    /// authenticates with a token the API server issued for that ServiceAccount.
    func serviceAccountClient(_ settings: OperatorSettings) async throws -> KubeClient {
        let account = KubeObject(apiVersion: "v1", kind: "ServiceAccount", name: settings.name, namespace: namespace)
        _ = try await client.create(.serviceAccounts, account)
        for object in RBAC.objects(settings) {
            let object = try KubeObject(JSONValue(parsing: Data(object.serialized.utf8)))
            let kind = object.kind ?? ""
            let resource = Resource(
                group: "rbac.authorization.k8s.io",
                version: "v1",
                name: kind.lowercased() + "s",
                kind: kind,
                namespaced: !kind.hasPrefix("Cluster")
            )
            _ = try await client.apply(resource, object, fieldManager: "operator-tests", force: true)
            if object.namespace == nil {
                let name = object.name ?? ""
                addTeardownBlock { [client] in try? await client?.delete(resource, name: name) }
            }
        }
        var request = KubeObject(apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", name: settings.name)
        request["spec"] = ["expirationSeconds": 3600]
        let issued = try await client.create(
            .serviceAccounts,
            request,
            namespace: namespace,
            subresourceOf: settings.name,
            subresource: "token"
        )
        let token = try XCTUnwrap(issued[path: "status", "token"]?.stringValue)
        var config = try TestCluster.adminConfig()
        config.credentials = .bearerToken(token)
        return try await TestCluster.client(config)
    }
}
