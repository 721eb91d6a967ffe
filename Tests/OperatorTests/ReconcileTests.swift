import Foundation
import Manifests
import Prometheus
import Synchronization
import XCTest

@testable import KubeAPI
@testable import Operator

/// The operator in this process against the real API server: what it writes, in which order, and what it reports.
final class ReconcileTests: OperatorTestCase {
    /// Create, update, delete → the allow-list and the Corefile converge; the user's own Corefile lines survive
    /// 100 passes (and every Corefile rewrite among them) byte for byte.
    func testConvergesAndKeepsTheUsersCorefileLines() async throws {
        try await createCoreDNS(CorefileFixtures.commentsAndQuotes)
        let running = try await startOperator()
        try await setProxyAvailable(2)

        let (first, second, third) = (uniqueHost("a"), uniqueHost("b"), uniqueHost("c"))
        let (one, two) = (uniqueName("eh"), uniqueName("eh"))
        try await createEgressHost(one, host: first)
        try await createEgressHost(two, host: second)
        try await waitForConvergence([first, second])

        // Update: the host of `two` changes; the old one leaves DNS, then the allow-list.
        _ = try await client.patch(Self.egressHosts, name: two, patch: ["spec": ["host": .string(third)]])
        try await waitForConvergence([first, third])

        // Delete.
        try await deleteEgressHost(one)
        try await waitForConvergence([third])
        let afterDelete = try await corefile()
        XCTAssertEqual(Self.outsideManagedBlock(afterDelete), Self.outsideManagedBlock(originalCorefile))
        try await assertCoreDNSKeepsWhatIsNotOurs()

        // 100 passes: each label change is an event and a pass; every 10th also adds or removes a host, so the
        // managed block is rewritten 10 times among them.
        let toggled = uniqueName("eh")
        let toggledHost = uniqueHost("t")
        for index in 1...100 {
            let before = running.service.passes
            if index % 10 == 0 {
                if index % 20 == 10 {
                    try await createEgressHost(toggled, host: toggledHost)
                    try await waitForConvergence([third, toggledHost])
                } else {
                    try await deleteEgressHost(toggled)
                    try await waitForConvergence([third])
                }
            } else {
                try await touch(two, "\(index)")
            }
            try await eventually("reconcile pass \(index) (passes so far: \(before))") {
                running.service.passes > before
            }
            let text = try await corefile()
            XCTAssertEqual(
                Self.outsideManagedBlock(text),
                Self.outsideManagedBlock(originalCorefile),
                "the user's Corefile lines changed after pass \(index):\n\(text)"
            )
        }
        XCTAssertGreaterThanOrEqual(running.service.passes, 100)
        try await assertCoreDNSKeepsWhatIsNotOurs()
    }

    /// Deleting the last EgressHost removes the managed block: the Corefile is the original, byte for byte.
    func testDeletingTheLastEgressHostRestoresTheOriginalCorefile() async throws {
        try await createCoreDNS()
        try await startOperator()
        try await setProxyAvailable(1)
        let (name, host) = (uniqueName("eh"), uniqueHost("last"))
        try await createEgressHost(name, host: host)
        try await waitForConvergence([host])
        let withBlock = try await corefile()
        XCTAssertNotEqual(withBlock, originalCorefile)

        try await deleteEgressHost(name)
        let last = Mutex("")
        try await eventually("the Corefile to be the original again", observed: { last.withLock { $0 } }) {
            let text = try await corefile()
            last.withLock { $0 = text }
            return text == originalCorefile
        }
        try await eventually("the allow-list to be empty") { try await allowListHosts().isEmpty }
        try await assertCoreDNSKeepsWhatIsNotOurs()
    }

    /// Suffix mode: one rule routes every name while any host is allowed. Deleting the last host takes two steps,
    /// each started by the write of the one before: the rule goes, then the allow-list entry.
    func testSuffixModeRemovesTheRuleThenTheAllowListEntry() async throws {
        try await createCoreDNS()
        try await startOperatorWithProxy(dnsRules: .suffix)
        let (name, host) = (uniqueName("eh"), uniqueHost("suffix"))
        try await createEgressHost(name, host: host)
        try await eventually("the allow-list to have the host") { try await allowListHosts() == [host] }
        try await eventually("the Corefile to route every name") { try await corefileHosts() == ["*"] }
        try await waitForCondition(name, "Programmed", .true)

        try await deleteEgressHost(name)
        try await eventually("the Corefile to be the original again") { try await corefile() == originalCorefile }
        try await eventually("the allow-list to be empty") { try await allowListHosts().isEmpty }
    }

    /// Suffix mode: the one rule routes every name whatever the allow-list holds, so a deleted host leaves the
    /// allow-list at once while the others keep the rule.
    func testSuffixModeDropsADeletedHostWhileOthersRemain() async throws {
        try await createCoreDNS()
        try await startOperatorWithProxy(dnsRules: .suffix)
        let (kept, keptHost) = (uniqueName("eh-kept"), uniqueHost("kept"))
        let (gone, goneHost) = (uniqueName("eh-gone"), uniqueHost("gone"))
        try await createEgressHost(kept, host: keptHost)
        try await createEgressHost(gone, host: goneHost)
        try await eventually("the allow-list to have both hosts") {
            try await allowListHosts() == [keptHost, goneHost]
        }
        try await eventually("the Corefile to route every name") { try await corefileHosts() == ["*"] }

        try await deleteEgressHost(gone)
        try await eventually("the deleted host to leave the allow-list") {
            try await allowListHosts() == [keptHost]
        }
        let routed = try await corefileHosts()
        XCTAssertEqual(routed, ["*"])
    }

    /// CoreDNS `custom` mode (k3s, AKS), which `auto` picks because the Corefile imports `*.override` files: the
    /// rules go to the `egress-operator.override` key of `coredns-custom`; its other keys and the Corefile stay as
    /// they were; a deleted host leaves the snippet, then the allow-list.
    func testCustomModeWritesOnlyTheOverrideKey() async throws {
        try await createCoreDNS(CorefileFixtures.k3s)
        let usersServer = "example.org:53 {\n    forward . 10.0.0.1\n}\n"
        try await createCustomConfigMap(["users.server": .string(usersServer)])
        try await startOperatorWithProxy(coreDNSMode: .auto)

        let (name, host) = (uniqueName("eh"), uniqueHost("custom"))
        try await createEgressHost(name, host: host)
        try await eventually("the override key to route the host") { try await overrideHosts().hosts == [host] }
        try await waitForCondition(name, "Programmed", .true)
        let withHost = try await overrideHosts()
        XCTAssertEqual(withHost.data?["users.server"], .string(usersServer), "another key of coredns-custom changed")
        let corefileNow = try await corefile()
        XCTAssertEqual(corefileNow, originalCorefile, "custom mode must leave the Corefile alone")

        try await deleteEgressHost(name)
        try await eventually("the override key to route nothing") { try await overrideHosts().hosts.isEmpty }
        try await eventually("the allow-list to be empty") { try await allowListHosts().isEmpty }
        let afterDelete = try await overrideHosts()
        XCTAssertEqual(afterDelete.data?["users.server"], .string(usersServer))
    }

    /// Restarted with another suffix, the operator still recognises the block it wrote under the old one (it
    /// routes nothing under the new suffix) and replaces it, instead of stopping at a block it cannot read.
    func testASuffixChangeReplacesTheBlockWrittenUnderTheOldOne() async throws {
        try await createCoreDNS()
        let first = try await startOperator()
        try await setProxyAvailable(1)
        let (name, host) = (uniqueName("eh"), uniqueHost("moved"))
        try await createEgressHost(name, host: host)
        try await waitForCondition(name, "Programmed", .true)
        await first.stop()

        var options = self.options()
        options.settings.proxy.suffix = "egress.internal"
        try await startOperator(options)
        try await eventually("the Corefile to route \(host) under the new suffix") {
            try await corefile().contains("rewrite stop name exact \(host).egress.internal. ")
        }
        try await eventually("Ready with the new internal URL") {
            try await egressHost(name).status?.internalURL == "http://\(host).egress.internal"
        }
        let text = try await corefile()
        XCTAssertFalse(text.contains(".egress.local."), text)
    }

    /// A `coredns-custom` that the Corefile does not import (left over on a kubeadm cluster) is not where `auto`
    /// writes: CoreDNS would never read the rules there. Forced into `custom` mode, the operator says so in
    /// `Programmed`.
    func testAutoModeIgnoresACustomConfigMapTheCorefileDoesNotImport() async throws {
        try await createCoreDNS()
        try await createCustomConfigMap()
        try await startOperatorWithProxy(coreDNSMode: .auto)
        let (name, host) = (uniqueName("eh"), uniqueHost("leftover"))
        try await createEgressHost(name, host: host)
        try await eventually("the Corefile to route the host") { try await corefileHosts().contains(host) }
        try await waitForCondition(name, "Programmed", .true)
        let override = try await overrideHosts()
        XCTAssertEqual(override.hosts, [], "rules written where CoreDNS does not read them")
    }

    /// Without the `reload` plugin CoreDNS applies the rules only after a restart; a plugin's own `reload` option
    /// (`hosts … { reload 15s }`) is not the plugin, and `Programmed` says so.
    func testACorefileWithoutTheReloadPluginIsReported() async throws {
        let withoutReload = CorefileFixtures.kubeadm.replacingOccurrences(of: "    reload\n", with: "")
            .replacingOccurrences(
                of: "    loop\n",
                with: "    loop\n    hosts /etc/coredns/NodeHosts {\n        reload 15s\n    }\n"
            )
        XCTAssertFalse(withoutReload.contains("\n    reload\n"))
        try await createCoreDNS(withoutReload)
        try await startOperatorWithProxy()
        let name = uniqueName("eh")
        try await createEgressHost(name, host: uniqueHost("noreload"))
        try await eventually("Programmed to warn that CoreDNS has no reload plugin") {
            try await self.condition(name, "Programmed")?.message.contains("no `reload` plugin") == true
        }
    }

    /// DNS the operator cannot write shows in the status of the hosts waiting for it, with the reason (not
    /// `Pending` and a log line), and they are programmed once it is fixed: first no CoreDNS ConfigMap, then a
    /// Corefile the editor refuses, then a good one. `egress_operator_egresshosts` counts them the same way.
    func testHostsWaitingForDNSSayWhyUntilItCanBeWritten() async throws {
        let registry = PrometheusCollectorRegistry()
        try await startOperator(metricsFactory: PrometheusMetricsFactory(registry: registry))
        try await setProxyAvailable(1)
        let (name, host) = (uniqueName("eh"), uniqueHost("blocked"))
        try await createEgressHost(name, host: host)
        try await waitForCondition(name, "Programmed", .false, reason: "DNSNotWritable")
        try await expectEgressHostCounts(registry, ["DNSNotWritable": 1, "Pending": 0, "Ready": 0])
        let missing = try await condition(name, "Ready")
        XCTAssertEqual(missing?.reason, "DNSNotWritable")
        XCTAssertTrue(
            missing?.message.contains("coredns with key Corefile not found") == true,
            "\(String(describing: missing))"
        )

        try await createCoreDNS("example.org:53 {\n    forward . 8.8.8.8\n}\n")
        try await eventually("the status to name the Corefile's problem") {
            try await self.condition(name, "Programmed")?.message.contains("no server block for '.'") == true
        }

        _ = try await client.patch(
            .configMaps,
            name: "coredns",
            namespace: dnsNamespace,
            patch: ["data": ["Corefile": .string(CorefileFixtures.kubeadm)]]
        )
        try await waitForCondition(name, "Programmed", .true)
        let routed = try await corefileHosts()
        XCTAssertEqual(routed, [host])
        try await expectEgressHostCounts(registry, ["DNSNotWritable": 0, "Ready": 1])
    }

    /// A server block added for a zone holding the suffix (`local:53`) takes its names from the rules in `.`: hosts
    /// already routed are not routed any more, and say so, until the block goes.
    func testABlockTakingTheSuffixUnroutesEveryHost() async throws {
        try await createCoreDNS()
        try await startOperatorWithProxy()
        let (name, host) = (uniqueName("eh"), uniqueHost("taken"))
        try await createEgressHost(name, host: host)
        try await waitForCondition(name, "Ready", .true)
        let corefile = try await corefile()
        _ = try await client.patch(
            .configMaps,
            name: "coredns",
            namespace: dnsNamespace,
            patch: ["data": ["Corefile": .string(corefile + "local:53 {\n    forward . 10.0.0.53\n}\n")]]
        )
        try await waitForCondition(name, "Ready", .false, reason: "DNSNotWritable")
        let message = try await condition(name, "Programmed")?.message ?? ""
        XCTAssertTrue(message.contains("also serves the egress suffix"), message)
        _ = try await client.patch(
            .configMaps,
            name: "coredns",
            namespace: dnsNamespace,
            patch: ["data": ["Corefile": .string(corefile)]]
        )
        try await waitForCondition(name, "Ready", .true)
    }

    /// A status field the operator stops setting while another field manager also owns it stays (server-side apply
    /// leaves it): the operator's write cannot converge the status, and must not start a pass that plans the same
    /// write again, without end.
    func testAStatusFieldAnotherManagerOwnsDoesNotLoopTheOperator() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        try await setProxyAvailable(1)
        let (name, host) = (uniqueName("eh"), uniqueHost("shared"))
        try await createEgressHost(name, host: host)
        try await waitForCondition(name, "Ready", .true)
        // Someone else sets the same internalURL through the status subresource: both managers own it now.
        var edit = KubeObject(apiVersion: EgressHost.apiVersion, kind: EgressHost.kind, name: name)
        edit["status"] = ["internalURL": .string("http://\(host).egress.local")]
        _ = try await client.applyStatus(Self.egressHosts, edit, fieldManager: "kubectl-edit", force: true)
        // Not accepted any more: the operator's status has no internalURL, the stored one keeps it.
        _ = try await client.patch(
            Self.egressHosts,
            name: name,
            patch: ["spec": ["tls": ["caBundle": ["kind": "ConfigMap", "name": "absent", "key": "ca.crt"]]]]
        )
        try await waitForCondition(name, "Accepted", .false, reason: "MissingSecret")
        let stored = try await egressHost(name).status?.internalURL
        XCTAssertEqual(stored, "http://\(host).egress.local")
        try await waitUntilQuiet(running)
    }

    func testCustomModeWarnsWhenTheCorefileDoesNotImportOverrides() async throws {
        try await createCoreDNS()
        try await createCustomConfigMap()
        try await startOperatorWithProxy(coreDNSMode: .custom)
        let (name, host) = (uniqueName("eh"), uniqueHost("unread"))
        try await createEgressHost(name, host: host)
        try await eventually("the override key to route the host") { try await overrideHosts().hosts == [host] }
        try await eventually("Programmed to warn that CoreDNS does not read the rules") {
            try await self.condition(name, "Programmed")?.message.contains("imports no *.override files") == true
        }
    }

    /// `custom` mode with suffix rules: the override key holds the one rule, and a deleted host leaves the allow-list
    /// at once while another keeps the rule.
    func testCustomModeWithSuffixRules() async throws {
        try await createCoreDNS(CorefileFixtures.k3s)
        try await createCustomConfigMap()
        try await startOperatorWithProxy(dnsRules: .suffix, coreDNSMode: .auto)
        let (kept, keptHost) = (uniqueName("eh-kept"), uniqueHost("kept"))
        let (gone, goneHost) = (uniqueName("eh-gone"), uniqueHost("gone"))
        try await createEgressHost(kept, host: keptHost)
        try await createEgressHost(gone, host: goneHost)
        try await eventually("the override key to hold the suffix rule") {
            try await overrideHosts(dnsRules: .suffix).hosts == ["*"]
        }
        try await eventually("the allow-list to have both hosts") {
            try await allowListHosts() == [keptHost, goneHost]
        }

        try await deleteEgressHost(gone)
        try await eventually("the deleted host to leave the allow-list") {
            try await allowListHosts() == [keptHost]
        }
        let rule = try await overrideHosts(dnsRules: .suffix).hosts
        XCTAssertEqual(rule, ["*"])
        let corefileNow = try await corefile()
        XCTAssertEqual(corefileNow, originalCorefile)
    }

    /// Two objects claim one host: the older wins, the newer is refused with HostConflict (and wins once the
    /// older one is gone).
    func testHostConflictIsReportedOnTheNewerObject() async throws {
        try await createCoreDNS()
        try await startOperator()
        try await setProxyAvailable(1)
        let host = uniqueHost("shared")
        // Names sort the other way round from ages: a name tie-break could not make this test pass.
        let (older, newer) = (uniqueName("z-older"), uniqueName("a-newer"))
        let created = try await createEgressHost(older, host: host)
        try await waitForCondition(older, "Accepted", .true)
        // creationTimestamp has one-second resolution: make sure the newer object is really newer.
        let olderTime = created[path: "metadata", "creationTimestamp"]?.stringValue ?? ""
        try await eventually("the clock to pass \(olderTime)") {
            Date.now.formatted(.iso8601) > olderTime
        }
        try await Task.sleep(for: .seconds(1))
        try await createEgressHost(newer, host: host)

        try await waitForCondition(newer, "Accepted", .false, reason: "HostConflict")
        let message = try await condition(newer, "Accepted")?.message ?? ""
        XCTAssertTrue(message.contains(older), "the conflict message should name the winner: \(message)")
        try await waitForCondition(newer, "Programmed", .false, reason: "NotAccepted")
        let olderAccepted = try await condition(older, "Accepted")
        XCTAssertEqual(olderAccepted?.status, .true)
        try await waitForCondition(older, "Programmed", .true)
        try await waitForConvergence([host])

        try await deleteEgressHost(older)
        try await waitForCondition(newer, "Accepted", .true)
        try await waitForCondition(newer, "Programmed", .true)
    }

    /// A CA bundle ConfigMap that does not exist yet: MissingSecret; once it exists but holds no certificate the
    /// proxy could load: InvalidTLSMaterial; once it holds one, the host is accepted and programmed, and the bundle
    /// is copied into the proxy's TLS Secret.
    func testMissingOrUnusableCABundleIsReportedUntilFixed() async throws {
        try await createCoreDNS()
        try await startOperator()
        try await setProxyAvailable(1)
        let (name, host, bundle) = (uniqueName("eh"), uniqueHost("partner"), uniqueName("partner-ca"))
        try await createEgressHost(
            name,
            host: host,
            tls: ["caBundle": ["kind": "ConfigMap", "name": .string(bundle), "key": "ca.crt"]]
        )
        try await waitForCondition(name, "Accepted", .false, reason: "MissingSecret")
        let message = try await condition(name, "Accepted")?.message ?? ""
        XCTAssertTrue(message.contains(bundle), "the message should name the missing ConfigMap: \(message)")
        // `kubectl get eh` prints the cause, from the API server's own table of the object.
        let printedMissing = try await printedReason(name)
        XCTAssertEqual(printedMissing, "MissingSecret")
        var (allowed, routed) = (try await allowListHosts(), try await corefileHosts())
        XCTAssertFalse(allowed.contains(host))
        XCTAssertFalse(routed.contains(host))

        var configMap = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: bundle, namespace: namespace)
        configMap["data"] = ["ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]
        configMap = try await client.create(.configMaps, configMap)
        try await waitForCondition(name, "Accepted", .false, reason: "InvalidTLSMaterial")
        let invalid = try await condition(name, "Accepted")?.message ?? ""
        XCTAssertTrue(
            invalid.hasPrefix("ConfigMap \(bundle) key ca.crt: is not a PEM certificate bundle"),
            "the message should say where the bundle is and what is wrong with it: \(invalid)"
        )
        let printedInvalid = try await printedReason(name)
        XCTAssertEqual(printedInvalid, "InvalidTLSMaterial")
        (allowed, routed) = (try await allowListHosts(), try await corefileHosts())
        XCTAssertFalse(allowed.contains(host))
        XCTAssertFalse(routed.contains(host))

        let pem = try selfSignedPEM("partner CA").certificate
        configMap["data"] = ["ca.crt": .string(pem)]
        _ = try await client.replace(.configMaps, configMap)

        try await waitForCondition(name, "Accepted", .true)
        try await waitForCondition(name, "Programmed", .true)
        try await waitForConvergence([host])
        let secret = try await client.get(.secrets, name: "\(Self.proxyName)-tls", namespace: namespace)
        let copied = secret[path: "data", "\(name).ca.crt"]?.stringValue.flatMap { Data(base64Encoded: $0) }
        XCTAssertEqual(copied.map { String(decoding: $0, as: UTF8.self) }, pem)
        let entry = try await allowList()?.hosts.first { $0.host == host }
        XCTAssertEqual(entry?.tls.caFile, "\(ProxySettings.defaultTLSMountPath)/\(name).ca.crt")
        try await waitForCondition(name, "Ready", .true)
        let printedReady = try await printedReason(name)
        XCTAssertNil(printedReady, "a Ready host has no reason to print")

        // TLS material no host names any more leaves the proxy's Secret (a revoked client key must not linger).
        try await deleteEgressHost(name)
        try await eventually("the deleted host's CA bundle to leave the proxy's TLS Secret") {
            let secret = try await self.client.get(.secrets, name: "\(Self.proxyName)-tls", namespace: self.namespace)
            return secret[path: "data", "\(name).ca.crt"] == nil
        }
    }

    /// The `Reason` cell the API server prints for an EgressHost (`kubectl get eh`), from its Table rendering of
    /// the CRD's printer columns; nil when empty.
    private func printedReason(_ name: String) async throws -> String? {
        let response = try await client.execute(
            .GET,
            try client.objectPath(Self.egressHosts, namespace: nil, name: name),
            accept: "application/json;as=Table;v=v1;g=meta.k8s.io"
        )
        let body = try await response.body.collect(upTo: 1 << 20)
        let table = try body.withUnsafeReadableBytes { try JSONValue(parsing: $0) }
        let columns = table["columnDefinitions"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        let column = try XCTUnwrap(columns.firstIndex(of: "Reason"), "no Reason column in \(columns)")
        return table["rows"]?.arrayValue?.first?["cells"]?.arrayValue?[column].stringValue
    }

    /// Owned objects deleted or edited by hand come back.
    func testOwnedObjectsAreRestored() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        let deployment = try await waitForDeployment()
        let service = try await waitForProxyObject(.services)
        let wantedReplicas = deployment[path: "spec", "replicas"]?.intValue
        let wantedArgs = deployment[path: "spec", "template", "spec", "containers"]?.arrayValue?.first?["args"]
        XCTAssertEqual(wantedReplicas, running.service.options.settings.proxy.replicas)
        XCTAssertNotNil(wantedArgs)

        // Delete the Service: it is recreated (a new uid).
        try await client.delete(.services, name: Self.proxyName, namespace: namespace)
        try await eventually("the proxy Service to be recreated") {
            let current = try? await client.get(.services, name: Self.proxyName, namespace: namespace)
            return current != nil && current?.uid != service.uid
        }

        // Scale the Deployment and change its first argument: both are reverted.
        _ = try await client.patch(
            .deployments,
            name: Self.proxyName,
            namespace: namespace,
            patch: [
                ["op": "replace", "path": "/spec/replicas", "value": 7],
                ["op": "replace", "path": "/spec/template/spec/containers/0/args/0", "value": "--edited-by-hand"],
            ],
            type: .json,
            fieldManager: "kubectl-edit"
        )
        let last = Mutex("")
        try await eventually(
            "the proxy Deployment's replicas and args to be restored",
            observed: { last.withLock { $0 } }
        ) {
            let current = try await client.get(.deployments, name: Self.proxyName, namespace: namespace)
            let replicas = current[path: "spec", "replicas"]?.intValue
            let args = current[path: "spec", "template", "spec", "containers"]?.arrayValue?.first?["args"]
            last.withLock {
                $0 = "replicas \(replicas.map(String.init) ?? "nil"), args \(args.map { "\($0)" } ?? "nil")"
            }
            return replicas == wantedReplicas && args == wantedArgs
        }

        // The ServiceAccount too.
        try await client.delete(.serviceAccounts, name: Self.proxyName, namespace: namespace)
        try await eventually("the proxy ServiceAccount to be recreated") {
            (try? await client.get(.serviceAccounts, name: Self.proxyName, namespace: namespace)) != nil
        }
    }

    /// A proxy object the API server refuses to update (here a Deployment whose immutable selector is not the
    /// operator's) does not hold back the allow-list: hosts are added, and removed, all the same.
    func testARefusedProxyObjectDoesNotHoldBackTheAllowList() async throws {
        try await createCoreDNS()
        var deployment = KubeObject(apiVersion: "apps/v1", kind: "Deployment", name: Self.proxyName)
        deployment.metadata["namespace"] = .string(namespace)
        deployment["spec"] = [
            "selector": ["matchLabels": ["app": "not-the-proxy"]],
            "template": [
                "metadata": ["labels": ["app": "not-the-proxy"]],
                "spec": ["containers": [["name": "placeholder", "image": "example.invalid/placeholder"]]],
            ],
        ]
        _ = try await client.create(.deployments, deployment)
        let running = try await startOperator()
        let (name, host) = (uniqueName("eh"), uniqueHost("revocable"))
        try await createEgressHost(name, host: host)
        try await eventually("the host in the allow-list") { try await allowListHosts().contains(host) }
        try await client.delete(Self.egressHosts, name: name)
        try await eventually("the host out of the allow-list") { try await !allowListHosts().contains(host) }
        XCTAssertTrue(running.logs.contains("cannot write a proxy object"))
    }

    /// What another field manager adds to a field the operator sets whole is taken out again: a Service selector
    /// label (the Service would select no proxy pod while every host said Ready), a port, a label the proxy
    /// NetworkPolicy would have to match (it would no longer apply to the proxy), a data key in the allow-list
    /// ConfigMap (mounted into every proxy pod). Server-side apply alone keeps what another manager owns.
    func testWhatOthersAddToFieldsTheOperatorSetsWholeIsRemoved() async throws {
        try await createCoreDNS()
        try await startOperator()
        let allowList = ProxySettings().allowListConfigMapName
        _ = try await waitForProxyObject(.services)
        _ = try await waitForProxyObject(.networkPolicies)
        try await eventually("the allow-list ConfigMap") {
            (try? await client.get(.configMaps, name: allowList, namespace: namespace)) != nil
        }
        let service = try await client.get(.services, name: Self.proxyName, namespace: namespace)
        let ports = service[path: "spec", "ports"]?.arrayValue ?? []
        let edits: [(Resource, String, JSONValue)] = [
            (.services, Self.proxyName, ["spec": ["selector": ["hijack": "yes"]]]),
            (
                .services, Self.proxyName,
                ["spec": ["ports": .array(ports + [["name": "extra", "port": 9999, "targetPort": 9999]])]]
            ),
            (
                .networkPolicies, Self.proxyName,
                [
                    "spec": [
                        "podSelector": [
                            "matchLabels": ["hijack": "yes"],
                            "matchExpressions": [["key": "hijack", "operator": "Exists"]],
                        ]
                    ]
                ]
            ),
            (.configMaps, allowList, ["data": ["foreign": "x"]]),
        ]
        for (resource, name, patch) in edits {
            _ = try await client.patch(
                resource,
                name: name,
                namespace: namespace,
                patch: patch,
                fieldManager: "kubectl-patch"
            )
        }
        let last = Mutex("")
        try await eventually("the additions to be removed", observed: { last.withLock { $0 } }) {
            let service = try await client.get(.services, name: Self.proxyName, namespace: namespace)
            let policy = try await client.get(.networkPolicies, name: Self.proxyName, namespace: namespace)
            let configMap = try await client.get(.configMaps, name: allowList, namespace: namespace)
            let selector = service[path: "spec", "selector", "hijack"]
            let portCount = service[path: "spec", "ports"]?.arrayValue?.count
            let matchLabels =
                policy[path: "spec", "podSelector", "matchLabels", "hijack"]
                ?? policy[path: "spec", "podSelector", "matchExpressions"]
            let foreign = configMap[path: "data", "foreign"]
            last.withLock {
                $0 =
                    "selector \(String(describing: selector)), ports \(String(describing: portCount)), "
                    + "matchLabels \(String(describing: matchLabels)), data \(String(describing: foreign))"
            }
            return selector == nil && portCount == ports.count && matchLabels == nil && foreign == nil
        }
    }

    /// Allow-list before DNS, verified from the writes themselves (a watch on both ConfigMaps records every
    /// version; resourceVersions are etcd revisions, so they order writes across objects): DNS does not route a
    /// host while the proxy is unavailable even though the allow-list has it, and when both are written the
    /// allow-list write comes first.
    func testAllowListIsWrittenBeforeDNS() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        _ = try await waitForDeployment()
        let recorder = WriteRecorder()
        let watchClient = try await extraClient()
        background(
            recorder.start(
                watchClient,
                [
                    ("allowlist", namespace, "\(Self.proxyName)-allowlist", ProxySettings.allowListKey),
                    ("corefile", dnsNamespace, "coredns", "Corefile"),
                ]
            )
        )
        try await eventually("both watches to be open") { recorder.opened == 2 }

        // The proxy is unavailable: the allow-list gets the host, DNS does not.
        let (early, earlyName) = (uniqueHost("early"), uniqueName("eh"))
        try await createEgressHost(earlyName, host: early)
        try await eventually("the allow-list to contain \(early)") { try await allowListHosts().contains(early) }
        try await waitForCondition(earlyName, "Programmed", .false, reason: "Pending")
        // A few more passes, each of which sees the applied allow-list: still no DNS for the host.
        for index in 1...3 {
            let before = running.service.passes
            try await touch(earlyName, "\(index)")
            try await eventually("another reconcile pass") { running.service.passes > before }
            let routed = try await corefileHosts()
            XCTAssertFalse(routed.contains(early), "DNS routes \(early) although the proxy Deployment is unavailable")
        }
        let programmed = try await condition(earlyName, "Programmed")
        XCTAssertTrue(programmed?.message.contains("Deployment") ?? false, "\(String(describing: programmed))")

        // The proxy becomes available: DNS follows.
        try await setProxyAvailable(2)
        try await waitForConvergence([early])
        try await waitForCondition(earlyName, "Programmed", .true)

        // With the proxy available, a new host is written to both within moments: the order must still hold.
        let (late, lateName) = (uniqueHost("late"), uniqueName("eh"))
        try await createEgressHost(lateName, host: late)
        try await waitForConvergence([early, late])
        try await waitForCondition(lateName, "Programmed", .true)

        for host in [early, late] {
            let allowListWrite = try XCTUnwrap(recorder.firstRevision("allowlist", containing: host))
            let dnsWrite = try XCTUnwrap(recorder.firstRevision("corefile", containing: host))
            XCTAssertLessThan(
                allowListWrite,
                dnsWrite,
                "\(host): the Corefile (revision \(dnsWrite)) was written before the allow-list (\(allowListWrite))"
            )
        }
    }

    /// The Deployment's availability (written by the test) drives Ready; back to zero makes Ready False with
    /// reason ProxyUnavailable while the host stays programmed.
    /// Once every status is written the operator goes quiet. The status worker asks for a pass after each batch it
    /// writes (to absorb the echoes); that pass must find nothing more to write, or status writes and passes would
    /// feed each other for ever.
    func testAConvergedClusterGoesQuiet() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        try await setProxyAvailable(2)
        let names = (0..<3).map { _ in uniqueName("eh") }
        for name in names { try await createEgressHost(name, host: uniqueHost("quiet")) }
        for name in names { try await waitForCondition(name, "Ready", .true, reason: "Ready") }

        try await waitUntilQuiet(running)
        for name in names {
            let status = try await egressHost(name).status
            XCTAssertEqual(status?.conditions?.first { $0.type == "Ready" }?.status, .true)
        }
    }

    /// A condition another controller adds (a policy engine, say) is its own: the operator neither removes it nor
    /// counts it as a difference, which would make every pass write the status again, for ever.
    func testAnotherControllersConditionIsLeftAlone() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        try await setProxyAvailable(2)
        let name = uniqueName("eh")
        try await createEgressHost(name, host: uniqueHost("foreign"))
        try await waitForCondition(name, "Ready", .true, reason: "Ready")

        var object = KubeObject(apiVersion: EgressHost.apiVersion, kind: EgressHost.kind, name: name)
        object["status"] = [
            "conditions": [
                [
                    "type": "PolicyCompliant", "status": "True", "reason": "Compliant", "message": "checked",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                ]
            ]
        ]
        _ = try await client.apply(Self.egressHosts, object, fieldManager: "policy-engine", subresource: "status")
        // A status write starts no pass; another host does, and plans every status again.
        let other = uniqueName("eh")
        try await createEgressHost(other, host: uniqueHost("foreign"))
        try await waitForCondition(other, "Ready", .true, reason: "Ready")

        try await waitUntilQuiet(running)
        let types = try await egressHost(name).status?.conditions?.map(\.type) ?? []
        XCTAssertEqual(Set(types), ["Accepted", "Programmed", "Ready", "PolicyCompliant"])
    }

    func testProxyAvailabilityDrivesReady() async throws {
        try await createCoreDNS()
        try await startOperator()
        let (name, host) = (uniqueName("eh"), uniqueHost("ready"))
        try await createEgressHost(name, host: host)
        try await waitForCondition(name, "Accepted", .true)
        try await waitForCondition(name, "Ready", .false, reason: "Pending")

        try await setProxyAvailable(2)
        try await waitForCondition(name, "Ready", .true, reason: "Ready")
        try await waitForCondition(name, "Programmed", .true)
        let object = try await egressHost(name)
        XCTAssertEqual(object.status?.internalURL, "http://\(host).egress.local")
        XCTAssertEqual(object.status?.observedGeneration, object.metadata.generation)

        try await setProxyAvailable(0)
        try await waitForCondition(name, "Ready", .false, reason: "ProxyUnavailable")
        let programmed = try await condition(name, "Programmed")
        XCTAssertEqual(programmed?.status, .true, "a host stays programmed while the proxy is down")
        let routed = try await corefileHosts()
        XCTAssertTrue(routed.contains(host))

        try await setProxyAvailable(1)
        try await waitForCondition(name, "Ready", .true, reason: "Ready")
    }

    /// policy/v1 PodDisruptionBudgets: on a server that does not serve them (1.20) the operator says so once and
    /// reconciles everything else; where they are served, it applies one.
    func testPodDisruptionBudgetFollowsDiscovery() async throws {
        try await createCoreDNS()
        let running = try await startOperator()
        let served = try await client.isServed(apiVersion: "policy/v1", kind: "PodDisruptionBudget")
        _ = try await waitForDeployment()
        try await eventually("the allow-list ConfigMap and a completed pass") {
            try await allowList() != nil && running.service.passes > 0
        }
        let (name, host) = (uniqueName("eh"), uniqueHost("pdb"))
        try await createEgressHost(name, host: host)
        try await setProxyAvailable(1)
        try await waitForConvergence([host])
        let warnings = running.logs.all.filter { $0.message.contains("PodDisruptionBudget is not served") }
        if served {
            XCTAssertTrue(warnings.isEmpty)
            try await eventually("the proxy PodDisruptionBudget") {
                (try? await client.get(.podDisruptionBudgets, name: Self.proxyName, namespace: namespace)) != nil
            }
        } else {
            XCTAssertEqual(warnings.count, 1, "the missing PDB API should be logged once")
            XCTAssertFalse(
                running.logs.all.contains { $0.message.contains("reconcile failed") },
                "a missing PDB API must not make reconciles fail"
            )
        }
        XCTAssertFalse(running.task.isCancelled)
    }
}

/// Every version of some ConfigMaps, with the etcd revision that wrote it.
final class WriteRecorder: Sendable {
    private let writes = Mutex<[(stream: String, revision: Int, text: String)]>([])
    private let openCount = Mutex(0)

    var opened: Int { openCount.withLock { $0 } }

    /// Records (stream, namespace, ConfigMap name, data key) until cancelled.
    func start(_ client: KubeClient, _ targets: [(String, String, String, String)]) -> Task<Void, Never> {
        Task {
            await withDiscardingTaskGroup { group in
                for (stream, namespace, name, key) in targets {
                    group.addTask { await self.record(stream, client, namespace: namespace, name: name, key: key) }
                }
            }
        }
    }

    func record(_ stream: String, _ client: KubeClient, namespace: String, name: String, key: String) async {
        do {
            let events = try await client.watch(
                .configMaps,
                namespace: namespace,
                options: WatchOptions(
                    fieldSelector: "metadata.name=\(name)",
                    allowBookmarks: false,
                    timeoutSeconds: 600
                )
            )
            openCount.withLock { $0 += 1 }
            for try await event in events where event.type == .added || event.type == .modified {
                let revision = Int(event.object.resourceVersion ?? "") ?? -1
                let text = event.object[path: "data", key]?.stringValue ?? ""
                writes.withLock { $0.append((stream, revision, text)) }
            }
        } catch {
            if !(error is CancellationError) && !Task.isCancelled { print("watch of \(name) ended: \(error)") }
        }
    }

    /// The revision of the first recorded version of `stream` that mentions `host` (as a whole name).
    func firstRevision(_ stream: String, containing host: String) -> Int? {
        writes.withLock { writes in
            writes.filter { $0.stream == stream && ($0.text.contains("\"\(host)\"") || $0.text.contains(" \(host).")) }
                .map(\.revision).min()
        }
    }
}
