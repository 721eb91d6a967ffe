import Foundation
import Testing
import Yams

@testable import Manifests

struct ManifestTests {
    /// `config/` is generated; this is the drift check that also runs in CI's test command.
    @Test("committed config/ matches the generators")
    func configIsUpToDate() throws {
        let config = Golden.repositoryRoot.appendingPathComponent("config")
        for file in ConfigBundle.files() {
            let committed = try? String(contentsOf: config.appendingPathComponent(file.path), encoding: .utf8)
            #expect(
                committed == file.text,
                "config/\(file.path) is stale: run `swift run egress-operator manifests --output config`"
            )
        }
    }

    @Test func proxyWorkloadDefault() throws {
        try Golden.check(
            ConfigBundle.header + YAML.renderStream(ProxyWorkload.objects(OperatorSettings())),
            "proxy-default.yaml"
        )
    }

    @Test func proxyWorkloadCustomised() throws {
        var settings = OperatorSettings()
        settings.namespace = "platform-egress"
        settings.proxy.replicas = 3
        settings.proxy.port = 18080
        settings.proxy.suffix = "egress.internal"
        settings.proxy.podAnnotations = [:]
        settings.proxy.clientNamespaceLabels = ["egress.dev/client": "true"]
        settings.proxy.logPaths = true
        settings.proxy.accessLog = false
        settings.proxy.autoscaling = ProxySettings.Autoscaling(maxReplicas: 12, targetCPUUtilizationPercentage: 60)
        try Golden.check(YAML.renderStream(ProxyWorkload.objects(settings)), "proxy-customised.yaml")
        let deployment = ProxyWorkload.objects(settings)[1]
        #expect(deployment["spec"]?["template"]?["metadata"]?["annotations"] == nil)
    }

    /// With autoscaling the Deployment asks for what the autoscaler last chose (the live value), kept within the
    /// bounds, and the minimum when it does not exist yet; without, for the setting whatever runs.
    @Test(arguments: [(nil, 3), (1, 3), (3, 3), (7, 7), (12, 12), (40, 12)] as [(Int?, Int)])
    func autoscaledReplicasFollowTheAutoscaler(current: Int?, expected: Int) {
        var proxy = ProxySettings()
        proxy.replicas = 3
        #expect(ProxyWorkload.replicas(proxy, currentReplicas: current) == 3)
        proxy.autoscaling = ProxySettings.Autoscaling(maxReplicas: 12)
        #expect(ProxyWorkload.replicas(proxy, currentReplicas: current) == expected)
        var settings = OperatorSettings()
        settings.proxy = proxy
        let objects = ProxyWorkload.objects(settings, currentReplicas: current)
        #expect(objects.first { $0["kind"] == "Deployment" }?["spec"]?["replicas"] == .int(expected))
        let autoscaler = objects.first { $0["kind"] == "HorizontalPodAutoscaler" }
        #expect(autoscaler?["spec"]?["minReplicas"] == 3 && autoscaler?["spec"]?["maxReplicas"] == 12)
        #expect(ProxyWorkload.objects(OperatorSettings()).allSatisfy { $0["kind"] != "HorizontalPodAutoscaler" })
    }

    @Test func lockdownPolicy() throws {
        try Golden.check(
            YAML.render(ProxyWorkload.lockdownPolicy(namespace: "payments", OperatorSettings())),
            "lockdown.yaml"
        )
    }

    /// A meshed client's Linkerd proxy connects to the target pod's Linkerd inbound port, not the target port: the
    /// proxy's policy admits it, and lockdown lets pods reach it, only while the proxy pods are meshed.
    @Test(arguments: [true, false])
    func meshedProxiesAdmitLinkerdsInboundPort(meshed: Bool) {
        var settings = OperatorSettings()
        if !meshed { settings.proxy.podAnnotations = [:] }
        func rule(_ rules: JSON?, _ index: Int) -> JSON? {
            guard case .array(let rules) = rules, rules.indices.contains(index) else { return nil }
            return rules[index]
        }
        let policy = ProxyWorkload.objects(settings).first { $0["kind"] == "NetworkPolicy" }
        let clientPorts = rule(policy?["spec"]?["ingress"], 0)?["ports"]
        let lockdown = ProxyWorkload.lockdownPolicy(namespace: "payments", settings)
        let lockdownPorts = rule(lockdown["spec"]?["egress"], 1)?["ports"]
        let expected: JSON =
            meshed
            ? [["protocol": "TCP", "port": 8080], ["protocol": "TCP", "port": 4143]]
            : [["protocol": "TCP", "port": 8080]]
        #expect(clientPorts == expected)
        #expect(lockdownPorts == expected)
    }

    /// Every container we ship runs non-root, read-only, without capabilities.
    @Test func securityDefaults() throws {
        let deployments = (OperatorWorkload.objects(OperatorSettings()) + ProxyWorkload.objects(OperatorSettings()))
            .filter { $0["kind"] == "Deployment" }
        #expect(deployments.count == 2)
        for deployment in deployments {
            let pod = try #require(deployment["spec"]?["template"]?["spec"])
            #expect(pod["securityContext"]?["runAsNonRoot"] == true)
            guard case .array(let containers) = pod["containers"] else { Issue.record("no containers"); continue }
            for container in containers {
                let security = container["securityContext"]
                #expect(security?["readOnlyRootFilesystem"] == true)
                #expect(security?["allowPrivilegeEscalation"] == false)
                #expect(security?["capabilities"]?["drop"] == ["ALL"])
                #expect(container["readinessProbe"] != nil && container["livenessProbe"] != nil)
                #expect(container["resources"]?["limits"]?["memory"] != nil)
            }
        }
    }

    @Test func generatedYAMLParses() throws {
        for file in ConfigBundle.files() {
            let documents = try Yams.load_all(yaml: file.text).map { $0 }
            #expect(!documents.isEmpty, "\(file.path)")
        }
    }
}

struct SchemaTests {
    /// The Swift types are the source of truth: every field they encode is in the schema, and the schema has
    /// nothing they do not encode.
    @Test func schemaPropertiesMatchCodingKeys() throws {
        let full = EgressHost(
            name: "full",
            spec: .init(
                host: "api.example.com",
                port: 443,
                tls: .init(
                    caBundle: .init(kind: .secret, name: "ca", key: "ca.crt"),
                    clientCertificate: .init(name: "client"),
                    serverName: "api.example.com",
                    insecureSkipVerify: false
                ),
                addresses: ["192.0.2.1"],
                allowPrivateAddresses: false,
                timeouts: .init(connect: "1s", responseHeaders: "2s", idle: "3s")
            ),
            status: .init(
                observedGeneration: 1,
                conditions: [
                    .init(
                        type: "Ready",
                        status: .true,
                        reason: "Ready",
                        message: "ok",
                        lastTransitionTime: "2026-01-01T00:00:00Z",
                        observedGeneration: 1
                    )
                ],
                internalURL: "http://api.example.com.egress.local"
            )
        )
        var encoded = try JSON(encoding: full)
        // metadata is the API server's, not ours to describe.
        encoded = encoded.setting("metadata", to: [:])
        let schema = try #require(
            CRD.egressHost()["spec"]?["versions"].flatMap { if case .array(let v) = $0 { v.first } else { nil } }
        )
        let root = try #require(schema["schema"]?["openAPIV3Schema"])
        compare(encoded, root, path: "")
    }

    private func compare(_ value: JSON, _ schema: JSON, path: String) {
        switch value {
        case .object(let members):
            guard case .object(let properties)? = schema["properties"] else {
                if path != ".metadata" { Issue.record("\(path): object without properties in the schema") }
                return
            }
            let schemaKeys = Set(properties.map(\.key))
            let valueKeys = Set(members.map(\.key))
            #expect(schemaKeys == valueKeys, "\(path): schema \(schemaKeys.sorted()) vs Swift \(valueKeys.sorted())")
            for member in members {
                if let property = schema["properties"]?[member.key] {
                    compare(member.value, property, path: path + "." + member.key)
                }
            }
        case .array(let values):
            #expect(schema["type"] == "array", "\(path)")
            if let first = values.first, let items = schema["items"] { compare(first, items, path: path + "[]") }
        case .string: #expect(schema["type"] == "string", "\(path)")
        case .int: #expect(schema["type"] == "integer", "\(path)")
        case .bool: #expect(schema["type"] == "boolean", "\(path)")
        case .null: break
        }
    }

    @Test func crdGolden() throws {
        try Golden.check(YAML.render(CRD.egressHost()), "crd.yaml")
    }
}

struct AllowListTests {
    static let material = TLSMaterial(
        configMaps: ["partner-ca": ["ca.crt": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"]],
        secrets: ["partner-client-cert": ["tls.crt": "CERT", "tls.key": "KEY"]]
    )

    @Test func planFromSamples() throws {
        let plan = EgressPlan(egressHosts: Samples.all.map(\.host), material: Self.material)
        #expect(plan.verdicts.values.allSatisfy { $0.isAccepted })
        #expect(plan.hosts == ["*.googleapis.com", "api.github.com", "api.stripe.com", "payments.partner.example.com"])
        try Golden.check(plan.allowList.encoded(), "allowlist.json")
        #expect(
            plan.tlsSecretData.keys.sorted() == [
                "partner-payments.ca.crt", "partner-payments.tls.crt", "partner-payments.tls.key",
            ]
        )
        // The proxy's reader accepts what the planner writes.
        #expect(try AllowList.decode(Array(plan.allowList.encoded().utf8)) == plan.allowList)
    }

    /// Text made by reusing the lines of the previous list is the text made from scratch, through random
    /// additions, removals and changes anywhere in the list (the empty list included).
    @Test func anEncodingReusingThePreviousOneIsTheSameText() throws {
        var generator = SystemRandomNumberGenerator()
        var previous: AllowList.Encoding?
        var entries: [String: AllowList.Entry] = [:]
        for _ in 0..<200 {
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let host = "h\(Int.random(in: 0..<15, using: &generator)).example.com"
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: entries[host] = nil
                case 1: entries[host] = AllowList.Entry(host: host)
                default: entries[host] = AllowList.Entry(host: host, port: Int.random(in: 1...9, using: &generator))
                }
            }
            let list = AllowList(hosts: Array(entries.values))
            let encoding = list.encoding(reusing: previous)
            #expect(encoding.text == list.encoded())
            #expect(encoding.list == list)
            #expect(try AllowList.decode(Array(encoding.text.utf8)) == list)
            previous = encoding
        }
    }

    /// A host order is a hint for speed: any order of the objects gives the same plan.
    @Test func theHostOrderChangesNothingButTheCost() {
        var hosts = Samples.all.map(\.host)
        var conflicting = EgressHost(name: "zz-conflict", spec: .init(host: "api.github.com", port: 8443))
        conflicting.metadata.creationTimestamp = "2027-01-01T00:00:00Z"
        hosts.append(conflicting)
        hosts.append(EgressHost(name: "invalid", spec: .init(host: "api.github.com", port: 0)))
        let assessments = hosts.map { EgressPlan.assess($0.spec, name: $0.metadata.name, material: Self.material) }
        let unordered = EgressPlan(egressHosts: hosts, assessments: assessments)
        #expect(unordered == EgressPlan(egressHosts: hosts, material: Self.material))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let order = Array(hosts.indices).shuffled(using: &generator)
            #expect(EgressPlan(egressHosts: hosts, assessments: assessments, hostOrder: order) == unordered)
        }
    }

    @Test func olderObjectWinsAHostConflict() {
        var older = EgressHost(name: "zz-older", spec: .init(host: "api.github.com"))
        older.metadata.creationTimestamp = "2026-01-01T00:00:00Z"
        var newer = EgressHost(name: "aa-newer", spec: .init(host: "api.github.com", port: 8443))
        newer.metadata.creationTimestamp = "2026-02-01T00:00:00Z"
        let plan = EgressPlan(egressHosts: [newer, older], material: TLSMaterial())
        #expect(plan.verdicts["zz-older"]?.isAccepted == true)
        #expect(plan.verdicts["aa-newer"]?.outcome == .hostConflict(owner: "zz-older"))
        #expect(plan.allowList.hosts.map(\.port) == [443])
    }

    /// Only a valid object whose TLS material resolves claims its host: an older one that is invalid or lacks its
    /// Secret does not block a newer one, and whatever the input order, every newer valid claimant conflicts.
    @Test(arguments: [false, true])
    func aHostGoesToItsOldestValidClaim(reversed: Bool) {
        func host(_ name: String, _ month: Int, _ spec: EgressHost.Spec) -> EgressHost {
            var object = EgressHost(name: name, spec: spec)
            object.metadata.creationTimestamp = "2026-0\(month)-01T00:00:00Z"
            return object
        }
        let missing = EgressHost.TLS(caBundle: .init(kind: .secret, name: "absent"))
        let hosts = [
            host("invalid", 1, .init(host: "api.github.com", port: 0)),
            host("no-secret", 2, .init(host: "api.github.com", tls: missing)),
            host("winner", 3, .init(host: "api.github.com")),
            host("later", 4, .init(host: "api.github.com", port: 8443)),
            host("later-no-secret", 5, .init(host: "api.github.com", tls: missing)),
        ]
        let plan = EgressPlan(egressHosts: reversed ? hosts.reversed() : hosts, material: TLSMaterial())
        #expect(plan.verdicts["invalid"]?.acceptedReason.reason == "InvalidSpec")
        #expect(plan.verdicts["no-secret"]?.acceptedReason.reason == "MissingSecret")
        #expect(plan.verdicts["winner"]?.isAccepted == true)
        #expect(plan.verdicts["later"]?.outcome == .hostConflict(owner: "winner"))
        #expect(plan.verdicts["later-no-secret"]?.outcome == .hostConflict(owner: "winner"))
        #expect(plan.allowList.hosts.map(\.port) == [443])
    }

    @Test func missingMaterialAndInvalidSpecsAreReportedNotProgrammed() {
        let hosts = [
            EgressHost(
                name: "no-ca",
                spec: .init(host: "a.example.com", tls: .init(caBundle: .init(kind: .secret, name: "absent")))
            ),
            EgressHost(
                name: "wrong-key",
                spec: .init(
                    host: "b.example.com",
                    tls: .init(caBundle: .init(kind: .configMap, name: "partner-ca", key: "other.crt"))
                )
            ),
            EgressHost(
                name: "half-client",
                spec: .init(host: "c.example.com", tls: .init(clientCertificate: .init(name: "half")))
            ),
            EgressHost(name: "bad", spec: .init(host: "https://d.example.com")),
        ]
        let material = TLSMaterial(configMaps: Self.material.configMaps, secrets: ["half": ["tls.crt": "CERT"]])
        let plan = EgressPlan(egressHosts: hosts, material: material)
        #expect(plan.hosts.isEmpty)
        #expect(plan.verdicts["no-ca"]?.acceptedReason.reason == "MissingSecret")
        #expect(plan.verdicts["no-ca"]?.acceptedReason.message == "Secret absent not found")
        #expect(plan.verdicts["wrong-key"]?.acceptedReason.message == "ConfigMap partner-ca has no key other.crt")
        #expect(plan.verdicts["half-client"]?.acceptedReason.message == "Secret half needs tls.crt and tls.key")
        #expect(plan.verdicts["bad"]?.acceptedReason.reason == "InvalidSpec")
        #expect(plan.tlsSecretData.isEmpty)
    }

    /// Material that is there but that the operator found it could not load: refused on the host's own status,
    /// with where the material is and what is wrong with it; the other hosts are planned as before.
    @Test func unusableMaterialIsReportedNotProgrammed() {
        let hosts = [
            EgressHost(
                name: "bad-ca",
                spec: .init(host: "a.example.com", tls: .init(caBundle: .init(kind: .configMap, name: "partner-ca")))
            ),
            EgressHost(
                name: "bad-client",
                spec: .init(host: "b.example.com", tls: .init(clientCertificate: .init(name: "partner-client-cert")))
            ),
            EgressHost(name: "plain", spec: .init(host: "c.example.com")),
        ]
        var material = Self.material
        material.unusableCertificates["ConfigMap/partner-ca/ca.crt"] = "is not a PEM certificate bundle"
        material.unusableClientCertificates["partner-client-cert"] = "tls.key is not the private key"
        let plan = EgressPlan(egressHosts: hosts, material: material)
        #expect(plan.hosts == ["c.example.com"])
        #expect(
            plan.verdicts["bad-ca"]?.outcome
                == .unusableMaterial("ConfigMap partner-ca key ca.crt: is not a PEM certificate bundle")
        )
        #expect(plan.verdicts["bad-ca"]?.acceptedReason.reason == "InvalidTLSMaterial")
        #expect(
            plan.verdicts["bad-client"]?.outcome
                == .unusableMaterial("Secret partner-client-cert: tls.key is not the private key")
        )
        #expect(plan.tlsSecretData.isEmpty)

        // A value of the same Secret that no host uses as a CA bundle does not matter.
        material.unusableClientCertificates = [:]
        material.unusableCertificates["Secret/partner-client-cert/tls.key"] = "is not a PEM certificate bundle"
        #expect(EgressPlan(egressHosts: hosts, material: material).verdicts["bad-client"]?.isAccepted == true)
    }

    @Test("a CA bundle or client certificate named by many hosts is stored once, and each host's entry points at it")
    func sharedTLSFilesAreStoredOnce() throws {
        let hosts = ["a", "b", "c"].map { name in
            EgressHost(
                name: name,
                spec: .init(
                    host: "\(name).example.com",
                    tls: .init(
                        caBundle: .init(kind: .configMap, name: "partner-ca"),
                        clientCertificate: .init(name: "partner-client-cert")
                    )
                )
            )
        }
        let plan = EgressPlan(egressHosts: hosts, material: Self.material, tlsMountPath: "/tls")
        #expect(plan.verdicts.values.allSatisfy { $0.isAccepted })
        #expect(plan.tlsSecretData.keys.sorted() == ["a.ca.crt", "a.tls.crt", "a.tls.key"])
        for entry in plan.allowList.hosts {
            #expect(entry.tls.caFile == "/tls/a.ca.crt", "\(entry.host)")
            #expect(entry.tls.clientCertificateFile == "/tls/a.tls.crt", "\(entry.host)")
            #expect(entry.tls.clientKeyFile == "/tls/a.tls.key", "\(entry.host)")
        }
        // Every file an entry names is in the Secret with the content its own object referenced.
        let ca = try #require(Self.material.configMaps["partner-ca"]?["ca.crt"])
        #expect(plan.tlsSecretData["a.ca.crt"] == ca)
    }

    @Test("TLS material that would take the proxy's Secret past its size limit is refused on that host alone")
    func oversizedTLSMaterialIsRefusedPerHost() {
        let bundle = String(repeating: "A", count: 400_000)
        let material = TLSMaterial(configMaps: [
            "one": ["ca.crt": bundle], "two": ["ca.crt": bundle + "B"], "three": ["ca.crt": bundle + "C"],
        ])
        let hosts = ["one", "two", "three", "one-again"].map { name in
            EgressHost(
                name: name,
                spec: .init(
                    host: "\(name).example.com",
                    tls: .init(caBundle: .init(kind: .configMap, name: name == "one-again" ? "one" : name))
                )
            )
        }
        let plan = EgressPlan(egressHosts: hosts, material: material)
        // In the objects' order: one and two fit, three does not, one-again names one's file.
        #expect(plan.hosts == ["one-again.example.com", "one.example.com", "two.example.com"])
        #expect(plan.verdicts["three"]?.acceptedReason.reason == "TLSMaterialTooLarge")
        #expect(plan.tlsSecretData.values.reduce(0) { $0 + $1.utf8.count } <= 1_000_000)
        #expect(Set(plan.tlsSecretData.keys) == ["one.ca.crt", "two.ca.crt"])
        #expect(plan.allowList.hosts.first?.tls.caFile?.hasSuffix("/one.ca.crt") == true)
    }

    /// The planner's size estimate of an entry never falls short of its line in the document, and is close for a
    /// plain host (so the cap does not turn away hosts that would fit).
    @Test func anEntrysEstimatedSizeBoundsItsLine() {
        let entries: [AllowList.Entry] = [
            .init(host: "api.github.com"),
            .init(host: "*.googleapis.com", port: 8443),
            .init(
                host: "partner.example.com",
                port: 65535,
                tls: .init(
                    caFile: "/etc/egress-proxy/tls/partner.ca.crt",
                    clientCertificateFile: "/etc/egress-proxy/tls/partner.tls.crt",
                    clientKeyFile: "/etc/egress-proxy/tls/partner.tls.key",
                    serverName: "partner-internal.example.com",
                    insecureSkipVerify: true
                ),
                addresses: ["192.0.2.1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"],
                allowPrivateAddresses: true,
                timeouts: .init(connectMillis: 2_147_483_647, responseHeadersMillis: 999_999_999_999, idleMillis: 1)
            ),
        ]
        for entry in entries {
            let line = entry.compactJSON.serialized.utf8.count + 2  // and ",\n"
            #expect(entry.estimatedEncodedBytes >= line, "\(entry.host)")
        }
        let plain = AllowList.Entry(host: "api.github.com")
        #expect(plain.estimatedEncodedBytes - (plain.compactJSON.serialized.utf8.count + 2) <= 2)
        // One timeout changed is counted as one, not three (hosts would be refused that fit).
        let oneTimeout = AllowList.Entry(host: "api.github.com", timeouts: .init(connectMillis: 10_000))
        #expect(oneTimeout.estimatedEncodedBytes - (oneTimeout.compactJSON.serialized.utf8.count + 2) <= 30)
    }

    /// An allow-list that would pass the ConfigMap's size limit keeps the oldest hosts and refuses the newest on
    /// their own status (a write of the whole list would fail, and every change after it, removals included); a
    /// removal makes room for the next.
    @Test func hostsBeyondTheAllowListsLimitAreRefusedNewestFirst() throws {
        let label = { (c: Character) in String(repeating: c, count: 60) }
        func egressHost(_ i: Int) -> EgressHost {
            var object = EgressHost(
                name: "h\(i)",
                spec: .init(host: "\(i).\(label("a")).\(label("b")).\(label("c")).example.com")
            )
            object.metadata.creationTimestamp = "2026-01-01T00:00:00Z"
            return object
        }
        // Created in index order (the name breaks ties of one timestamp by age: "h10" < "h9", so zero-padded).
        var hosts = (0..<6_000).map { i in
            var object = egressHost(i)
            object.metadata.name = String(format: "h%05d", i)
            return object
        }
        let plan = EgressPlan(egressHosts: hosts.shuffled(), material: TLSMaterial())
        let refused = hosts.filter { plan.verdicts[$0.metadata.name]?.acceptedReason.reason == "AllowListTooLarge" }
        #expect(refused.count > 500 && refused.count < 2_000, "\(refused.count) refused")
        let firstRefused = try #require(refused.first.flatMap { hosts.firstIndex(of: $0) })
        #expect(refused == Array(hosts[firstRefused...]), "the newest are refused, all of them after the first")
        #expect(plan.allowList.encoded().utf8.count <= 1_000_000)
        #expect(plan.allowList.hosts.count == hosts.count - refused.count)

        // A refused host's TLS files are not in the proxy's Secret.
        var newest = hosts[hosts.count - 1]
        newest.spec.tls = .init(caBundle: .init(kind: .configMap, name: "newest-ca"))
        let withCA = EgressPlan(
            egressHosts: hosts.dropLast() + [newest],
            material: TLSMaterial(configMaps: ["newest-ca": ["ca.crt": "PEM"]])
        )
        #expect(withCA.verdicts[newest.metadata.name]?.acceptedReason.reason == "AllowListTooLarge")
        #expect(withCA.tlsSecretData.isEmpty)

        hosts.removeFirst(10)
        let after = EgressPlan(egressHosts: hosts, material: TLSMaterial())
        #expect(after.verdicts[hosts[firstRefused - 10].metadata.name]?.isAccepted == true, "room made by removals")
        #expect(after.allowList.hosts.count >= plan.allowList.hosts.count - 10)
    }

    @Test("an object name too long to key its TLS files is an invalid spec, not a failing Secret write")
    func objectNameTooLongForTLSFileKeys() {
        let longest = String(repeating: "n", count: 245)
        let spec = EgressHost.Spec(
            host: "a.example.com",
            tls: .init(caBundle: .init(kind: .configMap, name: "partner-ca"))
        )
        let plan = EgressPlan(
            egressHosts: [
                EgressHost(name: longest, spec: spec),
                EgressHost(name: longest + "x", spec: spec),
                EgressHost(name: longest + "y", spec: .init(host: "b.example.com")),
            ],
            material: Self.material
        )
        #expect(plan.verdicts[longest]?.isAccepted == true)
        #expect(plan.verdicts[longest + "x"]?.acceptedReason.reason == "InvalidSpec")
        #expect(
            plan.verdicts[longest + "x"]?.acceptedReason.message.hasPrefix("metadata.name: must be at most 245") == true
        )
        #expect(plan.verdicts[longest + "y"]?.isAccepted == true, "no TLS files, no limit")
    }

    /// Each document fails to decode with an error that mentions the expected text.
    static func expectDecodingFails(_ cases: [(document: String, expected: String)]) {
        for (document, expected) in cases {
            #expect {
                _ = try AllowList.decode(Array(document.utf8))
            } throws: { error in
                "\(error)".contains(expected)
            }
        }
    }

    @Test func readerRejectsBadDocuments() {
        let cases: [(String, String)] = [
            (#"{"apiVersion":"v0","kind":"AllowList","hosts":[]}"#, "unsupported"),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"10.0.0.1","port":443}]}"#,
                "IP addresses"
            ),
            ("not json", "invalid JSON at byte 0"),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"port":443}]}"#,
                "hosts[0].host is required"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","port":"443"}]}"#,
                "hosts[0].port must be an integer"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","tls":[]}]}"#,
                "hosts[0].tls must be an object"
            ),
            // What the proxy could never use: every request to the host would fail.
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","addresses":["localhost"]}]}"#,
                #"host "a.example.com": address "localhost" is not an IPv4 or IPv6 address"#
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"*.example.com","addresses":["192.0.2.1"]}]}"#,
                "addresses cannot be combined with a wildcard host"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","tls":{"serverName":""}}]}"#,
                #"tls.serverName "" is not a DNS name"#
            ),
        ]
        Self.expectDecodingFails(cases)
        let duplicate = AllowList(hosts: [.init(host: "a.example.com"), .init(host: "a.example.com")]).encoded()
        #expect(throws: AllowListError.self) { try AllowList.decode(Array(duplicate.utf8)) }
    }

    /// Entries are read while the document is parsed; the errors still come in the order of a whole-document read.
    @Test func readerReportsProblemsInDocumentOrder() {
        let cases: [(String, String)] = [
            (#"{"apiVersion":"v0","kind":"AllowList","hosts":[{"port":1}]}"#, "unsupported"),
            (#"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"port":1}] x"#, "invalid JSON"),
            (#"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":{}}"#, "hosts must be an array"),
            (
                #"{"hosts":[{"host":"a.example.com"},{"host":"b.example.com","tls":{"caFile":1}}],"kind":"AllowList","apiVersion":"egress.dev/v1alpha1"}"#,
                "hosts[1].tls.caFile must be a string"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"b.example.com"},{"host":"a.example.com"},{"host":"b.example.com"}]}"#,
                #"host "b.example.com" is listed twice"#
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","port":0}]}"#,
                "port 0 is out of range"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","timeouts":{"connectMillis":0}}]}"#,
                "timeouts.connectMillis must be at least 1, not 0"
            ),
            (
                #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"a.example.com","timeouts":{"idleMillis":-5}}]}"#,
                "timeouts.idleMillis must be at least 1, not -5"
            ),
        ]
        Self.expectDecodingFails(cases)
    }

    @Test func hostTableFindsAndReportsDuplicates() {
        let hosts = (0..<1_000).map { "host\($0).example.com" } + ["host7.example.com"]
        var table = HostTable(capacity: hosts.count)
        for (index, host) in hosts.enumerated().dropLast() {
            #expect(table.insert(host[...], index: index) { hosts[$0][...] } == nil)
        }
        #expect(table.insert(hosts[1_000][...], index: 1_000) { hosts[$0][...] } == 7)
        #expect(table.find("host7.example.com", keyAt: { hosts[$0][...] }) == 1_000)
        #expect(table.find("host999.example.com", keyAt: { hosts[$0][...] }) == 999)
        #expect(table.find("host1000.example.com", keyAt: { hosts[$0][...] }) == nil)
        #expect(HostTable(capacity: 0).find("a.example.com", keyAt: { hosts[$0][...] }) == nil)
    }
}

struct AllowListEncodingTests {
    @Test func everyFieldRoundTrips() throws {
        let list = AllowList(hosts: [
            .init(
                host: "lab.example.com",
                port: 8443,
                tls: .init(serverName: "lab.internal.example.com", insecureSkipVerify: true),
                addresses: ["127.0.0.1", "::1"],
                allowPrivateAddresses: true,
                timeouts: .init(connectMillis: 1, responseHeadersMillis: 2, idleMillis: 3)
            ),
            .init(host: "plain.example.com"),
        ])
        #expect(try AllowList.decode(Array(list.encoded().utf8)) == list)
        #expect(list.encoded().contains(#"{"host":"plain.example.com"}"#))
        #expect(
            AllowList(hosts: []).encoded() == #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[]}"#
                + "\n"
        )
        #expect(try AllowList.decode(Array(AllowList(hosts: []).encoded().utf8)).hosts.isEmpty)
    }

    @Test func allowListSortsByHostKeepingTheOrderOfEqualHosts() {
        let entries: [AllowList.Entry] = [
            .init(host: "b.example.com"), .init(host: "a.example.com", port: 1), .init(host: "c.example.com"),
            .init(host: "a.example.com", port: 2),
        ]
        #expect(
            AllowList(hosts: entries).hosts.map { "\($0.host):\($0.port)" } == [
                "a.example.com:1", "a.example.com:2", "b.example.com:443", "c.example.com:443",
            ]
        )
        let sorted = AllowList(hosts: entries).hosts
        #expect(AllowList(hosts: sorted).hosts == sorted)
        #expect(
            AllowList(hosts: sorted).hostNames == ["a.example.com", "a.example.com", "b.example.com", "c.example.com"]
        )
    }
}

struct JSONReaderTests {
    @Test func readsWhatTheSerializerWrites() throws {
        let value: JSON = [
            "s": "quote\" backslash\\ newline\n tab\t ctrl\u{01} é 🚀", "n": -42, "big": 9_007_199_254_740_993,
            "t": true, "f": false, "z": nil, "a": [1, [2, [:]], []], "o": ["k": "v"],
        ]
        #expect(try JSONReader.parse(Array(value.serialized.utf8)) == value)
    }

    @Test func escapesAndWhitespace() throws {
        let text = " { \"a\" : [ \"\\u00e9\\ud83d\\ude80\\/\" , 0 ] } \n"
        #expect(try JSONReader.parse(Array(text.utf8)) == ["a": ["é🚀/", 0]])
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "1.5", "1e3", "\"unterminated", "tru", "[1] x", "\"\\ud800\"",
        "99999999999999999999",
    ])
    func rejects(_ text: String) {
        #expect(throws: AllowListError.self) { try JSONReader.parse(Array(text.utf8)) }
    }

    @Test func streamsOnlyTheFirstTopLevelArrayOfTheKey() throws {
        let text = #"{"n":{"hosts":[9]},"hosts":[1,{"a":[2]}],"hosts":[3]}"#
        var streamed: [String] = []
        let document = try JSONReader.parse(Array(text.utf8), streaming: "hosts") { index, value in
            streamed.append("\(index):\(value.serialized)")
        }
        #expect(streamed == ["0:1", #"1:{"a":[2]}"#])
        #expect(document == .object([("n", ["hosts": [9]]), ("hosts", []), ("hosts", [3])]))
    }
}

/// The operator's `KEY=VALUE` flags (proxy pod annotations, client namespace labels).
@Suite struct KeyValuePairTests {
    @Test func emptyValuesAreValuesAndNoneIsNothing() throws {
        let pairs = try OperatorSettings.keyValuePairs(["a=1", "b=", "c=x=y", "none"])
        #expect(pairs == ["a": "1", "b": "", "c": "x=y"])
        #expect(try OperatorSettings.keyValuePairs(["none"]).isEmpty)
    }

    @Test(arguments: ["novalue", "=v", ""])
    func aPairNeedsAKeyAndAnEqualsSign(_ text: String) {
        #expect(throws: OperatorSettings.InvalidKeyValuePair.self) { try OperatorSettings.keyValuePairs([text]) }
    }
}

/// The operator's quantity flags, parsed and written as the API server stores them.
@Suite struct QuantityTests {
    @Test(arguments: [
        ("500m", "500m"), ("0.5", "500m"), ("1", "1"), ("1000m", "1"), ("1500m", "1500m"), ("1.5", "1500m"),
        ("1000", "1k"), ("256Mi", "256Mi"), ("131072Ki", "128Mi"), ("1536Ki", "1536Ki"), ("0.5Gi", "512Mi"),
        ("1024Mi", "1Gi"), ("512", "512"), ("100M", "100M"), ("0.5Ki", "512"), ("128974848", "128974848"),
        ("0", "0"), ("2Ti", "2Ti"),
    ])
    func canonicalForm(_ text: String, _ canonical: String) throws {
        #expect(try #require(Quantity(text)).description == canonical)
    }

    @Test(arguments: [
        "", "1e3", "-1", "+1", "1.2.3", ".5", "5.", "0.1m", "1KI", "Mi", "1 Gi", "10E", "99999999999999999999",
    ])
    func refused(_ text: String) {
        #expect(Quantity(text) == nil)
    }

    @Test func ordersByValue() throws {
        #expect(try #require(Quantity("512Mi")) > #require(Quantity("256Mi")))
        #expect(try #require(Quantity("1Gi")) > #require(Quantity("1G")))
        #expect(try #require(Quantity("0.5")) == #require(Quantity("500m")))
    }
}
