import Manifests
import Testing

/// Drives the planner the way the operator does: plan, "apply" the plan to the snapshot, plan again.
struct ReconcilePlanTests {
    static let github = EgressHost(name: "github", spec: .init(host: "api.github.com"))

    private func apply(_ plan: ReconcilePlan, to snapshot: inout ClusterSnapshot) {
        snapshot.appliedAllowList = plan.allowList
        snapshot.dnsHosts = plan.dnsHosts
        for (name, status) in plan.statusUpdates {
            if let index = snapshot.egressHosts.firstIndex(where: { $0.metadata.name == name }) {
                snapshot.egressHosts[index].status = status
            }
        }
    }

    @Test("a new host reaches the allow-list before DNS, and DNS only once the proxy is available")
    func additionOrder() {
        var snapshot = ClusterSnapshot(egressHosts: [Self.github], proxyAvailable: false, now: "t1")
        let first = ReconcilePlan(snapshot)
        #expect(first.allowList.hosts.map(\.host) == ["api.github.com"])
        #expect(first.dnsHosts == [])
        #expect(first.statusUpdates["github"]?.conditions?.map(\.status) == [.true, .false, .false])
        apply(first, to: &snapshot)

        // The allow-list is applied but the proxy is not available: still no DNS.
        #expect(ReconcilePlan(snapshot).dnsHosts == [])

        snapshot.proxyAvailable = true
        snapshot.now = "t2"
        let second = ReconcilePlan(snapshot)
        #expect(second.dnsHosts == ["api.github.com"])
        let conditions = second.statusUpdates["github"]?.conditions ?? []
        #expect(conditions.map(\.type) == ["Accepted", "Programmed", "Ready"])
        #expect(conditions.allSatisfy { $0.status == .true })
        // Accepted did not change, so its transition time stays; the others moved now.
        #expect(conditions.map(\.lastTransitionTime) == ["t1", "t2", "t2"])
        #expect(second.statusUpdates["github"]?.internalURL == "http://api.github.com.egress.local")
        apply(second, to: &snapshot)

        // Converged: nothing to write.
        let third = ReconcilePlan(snapshot)
        #expect(third.statusUpdates.isEmpty)
        #expect(third.allowList == snapshot.appliedAllowList)
        #expect(third.dnsHosts == snapshot.dnsHosts)
    }

    @Test("another controller's condition is neither compared nor written: a converged status stays converged")
    func foreignConditionsAreLeftAlone() {
        var snapshot = ClusterSnapshot(egressHosts: [Self.github], proxyAvailable: true, now: "t1")
        apply(ReconcilePlan(snapshot), to: &snapshot)
        apply(ReconcilePlan(snapshot), to: &snapshot)
        #expect(ReconcilePlan(snapshot).statusUpdates.isEmpty)

        // What server-side apply leaves after a policy engine adds its own condition between the operator's.
        let foreign = Condition(
            type: "PolicyCompliant",
            status: .true,
            reason: "Compliant",
            message: "checked by another controller",
            lastTransitionTime: "t0"
        )
        snapshot.egressHosts[0].status?.conditions?.insert(foreign, at: 1)
        snapshot.now = "t2"
        #expect(ReconcilePlan(snapshot).statusUpdates.isEmpty)

        // A change of the operator's own conditions is still written, with only its own conditions.
        snapshot.proxyAvailable = false
        let update = ReconcilePlan(snapshot).statusUpdates["github"]
        #expect(update?.conditions?.map(\.type) == ["Accepted", "Programmed", "Ready"])
        #expect(update?.conditions?.last?.reason == "ProxyUnavailable")
    }

    @Test("a host whose status was current is skipped while its inputs repeat, and planned again when one changes")
    func settledStatusesAreSkippedUntilAnInputChanges() {
        var github = Self.github
        github.metadata.resourceVersion = "1"
        var snapshot = ClusterSnapshot(egressHosts: [github], proxyAvailable: true, now: "t1")
        var settled = ReconcilePlan.SettledStatuses()
        func withoutStatuses() -> ReconcilePlan {
            let egressPlan = EgressPlan(egressHosts: snapshot.egressHosts, material: snapshot.material)
            return ReconcilePlan(snapshot, egressPlan: egressPlan, statuses: false)
        }
        func plan() -> ReconcilePlan {
            var plan = withoutStatuses()
            plan.planStatuses(snapshot, settled: &settled)
            #expect(plan.statusUpdates == ReconcilePlan(snapshot).statusUpdates, "the memo never changes the answer")
            #expect(plan.hostsByReadiness == ReconcilePlan(snapshot).hostsByReadiness, "nor the counts")
            #expect(plan.hostsByReadiness.values.reduce(0, +) == snapshot.egressHosts.count)
            return plan
        }
        // Converge, each stored status a new resourceVersion.
        for version in 2...4 {
            let step = plan()
            apply(step, to: &snapshot)
            snapshot.egressHosts[0].metadata.resourceVersion = String(version)
        }
        #expect(plan().statusUpdates.isEmpty)

        // A stored status that no longer matches, with the same resourceVersion, is what only the memo would miss:
        // it cannot happen (any write to the object moves its resourceVersion), so it shows that the host was
        // skipped.
        let converged = snapshot.egressHosts[0].status
        snapshot.egressHosts[0].status = nil
        var skipping = withoutStatuses()
        skipping.planStatuses(snapshot, settled: &settled)
        #expect(skipping.statusUpdates.isEmpty)
        #expect(skipping.hostsByReadiness == ["Ready": 1], "a skipped host is still counted")
        snapshot.egressHosts[0].status = converged

        // Each input change plans the host again: the proxy going away, then a new resourceVersion.
        snapshot.proxyAvailable = false
        #expect(plan().statusUpdates["github"]?.conditions?.last?.reason == "ProxyUnavailable")
        snapshot.proxyAvailable = true
        #expect(plan().statusUpdates.isEmpty)
        snapshot.egressHosts[0].status = nil
        snapshot.egressHosts[0].metadata.resourceVersion = "5"
        #expect(plan().statusUpdates["github"] == converged)
    }

    @Test("a deleted host leaves DNS before it leaves the allow-list")
    func removalOrder() {
        var snapshot = ClusterSnapshot(
            egressHosts: [],
            appliedAllowList: AllowList(hosts: [.init(host: "api.github.com", port: 8443)]),
            dnsHosts: ["api.github.com"],
            proxyAvailable: true,
            now: "t1"
        )
        let first = ReconcilePlan(snapshot)
        #expect(first.dnsHosts == [])
        // The routed host keeps its last applied entry, unchanged, for one more step.
        #expect(first.allowList.hosts == [.init(host: "api.github.com", port: 8443)])
        apply(first, to: &snapshot)
        let second = ReconcilePlan(snapshot)
        #expect(second.allowList.hosts == [])
    }

    @Test("with one rule for every name, a deleted host leaves the allow-list at once")
    func removalUnderASuffixRule() {
        let kept = EgressHost(name: "kept", spec: .init(host: "api.github.com"))
        let snapshot = ClusterSnapshot(
            egressHosts: [kept],
            appliedAllowList: AllowList(hosts: [.init(host: "api.github.com"), .init(host: "api.stripe.com")]),
            dnsHosts: ["api.github.com", "api.stripe.com"],
            proxyAvailable: true,
            now: "t1",
            dnsRoutesEveryName: true
        )
        let plan = ReconcilePlan(snapshot)
        #expect(plan.allowList.hosts.map(\.host) == ["api.github.com"])
        #expect(plan.dnsHosts == ["api.github.com"])
    }

    @Test func rejectedObjectsSayWhy() {
        let invalid = EgressHost(name: "bad", spec: .init(host: "api.github.com:443"))
        let plan = ReconcilePlan(ClusterSnapshot(egressHosts: [invalid], now: "t"))
        let status = plan.statusUpdates["bad"]
        #expect(status?.conditions?.first?.reason == "InvalidSpec")
        #expect(status?.conditions?.first?.message.contains("spec.port") == true)
        #expect(status?.conditions?.dropFirst().allSatisfy { $0.reason == "NotAccepted" } == true)
        #expect(status?.internalURL == nil)
        #expect(plan.allowList.hosts.isEmpty)
    }

    @Test func insecureSkipVerifyIsAWarningCondition() {
        let insecure = EgressHost(
            name: "lab",
            spec: .init(host: "lab.example.com", tls: .init(insecureSkipVerify: true))
        )
        let plan = ReconcilePlan(ClusterSnapshot(egressHosts: [insecure], now: "t"))
        #expect(plan.statusUpdates["lab"]?.conditions?.last?.type == "InsecureSkipVerify")
        #expect(plan.allowList.hosts.first?.tls.insecureSkipVerify == true)
    }

    /// While DNS cannot be written (a Corefile the editor refuses, no CoreDNS ConfigMap, a refused write) the hosts
    /// waiting for it say why, not `Pending`; a host programmed for its generation is left alone, and one not
    /// accepted says so as always.
    @Test func hostsWaitingForDNSSayWhyItCannotBeWritten() {
        var programmed = EgressHost(name: "programmed", spec: .init(host: "a.example.com"))
        programmed.metadata.generation = 2
        var changed = EgressHost(name: "changed", spec: .init(host: "b.example.com"))
        changed.metadata.generation = 3
        let new = EgressHost(name: "new", spec: .init(host: "c.example.com"))
        let invalid = EgressHost(name: "invalid", spec: .init(host: "d.example.com:443"))
        var snapshot = ClusterSnapshot(egressHosts: [programmed, changed], proxyAvailable: true, now: "t1")
        for _ in 0..<3 { apply(ReconcilePlan(snapshot), to: &snapshot) }
        // `changed` was programmed for its generation 2; its spec moved on since.
        snapshot.egressHosts[1].metadata.generation = 4
        snapshot.egressHosts += [new, invalid]
        let plan = ReconcilePlan(snapshot)

        let problem = "Corefile line 3: unbalanced braces"
        let (updates, counts) = ReconcilePlan.statusesWhileDNSIsBlocked(
            snapshot.egressHosts,
            verdicts: plan.verdicts,
            routed: nil,
            problem: problem,
            proxyAvailable: true,
            now: "t2",
            suffix: HostName.reservedSuffix
        )
        #expect(updates.keys.sorted() == ["changed", "invalid", "new"])
        #expect(updates["invalid"]?.conditions?.first?.reason == "InvalidSpec")
        #expect(counts == ["Ready": 1, "DNSNotWritable": 2, "InvalidSpec": 1])
        // When DNS could be read, what it routes decides: `changed` is routed (its new spec kept its name).
        let (knowing, knownCounts) = ReconcilePlan.statusesWhileDNSIsBlocked(
            snapshot.egressHosts,
            verdicts: plan.verdicts,
            routed: ["a.example.com", "b.example.com"],
            problem: problem,
            proxyAvailable: true,
            now: "t2",
            suffix: HostName.reservedSuffix
        )
        #expect(knowing.keys.sorted() == ["invalid", "new"])
        #expect(knownCounts == ["Ready": 2, "DNSNotWritable": 1, "InvalidSpec": 1])
        for name in ["changed", "new"] {
            let conditions = updates[name]?.conditions ?? []
            #expect(conditions.map(\.type) == ["Accepted", "Programmed", "Ready"])
            #expect(conditions.dropFirst().allSatisfy { $0.status == .false && $0.reason == "DNSNotWritable" })
            #expect(conditions.last?.message == "cannot route DNS to it: \(problem)")
        }
    }

    @Test("the proxy going away keeps DNS but drops Ready")
    func proxyUnavailable() {
        var snapshot = ClusterSnapshot(egressHosts: [Self.github], proxyAvailable: true, now: "t1")
        for _ in 0..<3 { apply(ReconcilePlan(snapshot), to: &snapshot) }
        #expect(snapshot.dnsHosts == ["api.github.com"])
        snapshot.proxyAvailable = false
        let plan = ReconcilePlan(snapshot)
        #expect(plan.dnsHosts == ["api.github.com"])
        #expect(plan.statusUpdates["github"]?.conditions?.last?.reason == "ProxyUnavailable")
    }

    /// `Programmed` is the operator's writes; `Ready` also waits for every ready proxy pod to have loaded the host's
    /// entry as it is (the kubelet copies a new allow-list in at its next sync). Once Ready, a host stays so while
    /// pods miss an answer; it waits again after it stopped being Ready, and after its spec changed (for the new
    /// version of its entry).
    @Test func readyWaitsForTheProxyPods() {
        var github = Self.github
        github.metadata.generation = 1
        var snapshot = ClusterSnapshot(egressHosts: [github], proxyAvailable: true, now: "t1", proxyLoad: ProxyLoad())
        /// A pod that has `entries` (the applied ones by default).
        func pod(
            _ name: String,
            _ entries: [AllowList.Entry]? = nil,
            unusable: [String: String] = [:]
        )
            -> ProxyLoad.Pod
        {
            let report = ProxyLoadReport(AllowList(hosts: entries ?? snapshot.appliedAllowList?.hosts ?? []))
            return ProxyLoad.Pod(name: name, answer: .loaded(entries: report.entries, unusable: unusable))
        }
        /// Arguments first, then the write: `pod` reads the snapshot that `proxyLoad?.pods[i] = …` would hold.
        func setPod(_ index: Int, _ pod: ProxyLoad.Pod) { snapshot.proxyLoad?.pods[index] = pod }
        func ready() -> Condition? { snapshot.egressHosts[0].status?.conditions?.first { $0.type == "Ready" } }
        func step() -> ReconcilePlan {
            let plan = ReconcilePlan(snapshot)
            apply(plan, to: &snapshot)
            return plan
        }
        for _ in 0..<3 { _ = step() }
        #expect(snapshot.dnsHosts == ["api.github.com"], "the pods hold back Ready, not DNS")
        #expect(snapshot.egressHosts[0].status?.conditions?.first { $0.type == "Programmed" }?.status == .true)
        #expect(ready()?.status == .false && ready()?.reason == "Propagating")
        #expect(ready()?.message.contains("report what they have loaded") == true, "no pod has answered yet")
        var plan = step()
        #expect(plan.hostsAwaitingProxyLoad == 1 && plan.hostsByReadiness == ["Propagating": 1])

        snapshot.proxyLoad = ProxyLoad(pods: [pod("proxy-b", []), pod("proxy-a")])
        _ = step()
        #expect(ready()?.reason == "Propagating")
        #expect(ready()?.message.hasSuffix("the new allow-list: proxy-b has not loaded it yet") == true)

        setPod(1, pod("proxy-b", unusable: ["api.github.com": "no CA file"]))
        _ = step()
        #expect(ready()?.message.hasSuffix("proxy-b: no CA file") == true)

        setPod(1, pod("proxy-b"))
        plan = step()
        #expect(ready()?.status == .true && ready()?.reason == "Ready")
        #expect(plan.hostsAwaitingProxyLoad == 0 && plan.hostsByReadiness == ["Ready": 1])

        // Ready stays while a pod misses an answer (or a new pod has not been asked yet).
        snapshot.proxyLoad?.pods[1] = .init(name: "proxy-b", answer: .unanswered("timed out"))
        plan = step()
        #expect(plan.statusUpdates.isEmpty && plan.hostsAwaitingProxyLoad == 0)

        // Once it was not Ready (the proxy went away), it waits for the pods again.
        snapshot.proxyAvailable = false
        _ = step()
        #expect(ready()?.reason == "ProxyUnavailable")
        snapshot.proxyAvailable = true
        _ = step()
        #expect(ready()?.reason == "Propagating")
        #expect(ready()?.message.hasSuffix("proxy-b: timed out") == true)
        setPod(1, pod("proxy-b"))
        _ = step()
        #expect(ready()?.reason == "Ready")

        // A new spec (generation 2): the pods still route the earlier version of the entry, so not Ready for it.
        let before = snapshot.appliedAllowList?.hosts ?? []
        snapshot.egressHosts[0].spec.port = 8443
        snapshot.egressHosts[0].metadata.generation = 2
        for _ in 0..<2 { _ = step() }
        #expect(snapshot.appliedAllowList?.hosts.first?.port == 8443)
        #expect(ready()?.reason == "Propagating" && ready()?.observedGeneration == 2)
        #expect(
            ready()?.message.hasSuffix("proxy-a has an earlier version of it; proxy-b has an earlier version of it")
                == true
        )
        snapshot.proxyLoad = ProxyLoad(pods: [pod("proxy-a"), pod("proxy-b", before)])
        _ = step()
        #expect(ready()?.message.hasSuffix("proxy-b has an earlier version of it") == true)
        setPod(1, pod("proxy-b"))
        _ = step()
        #expect(ready()?.reason == "Ready" && ready()?.observedGeneration == 2)

        // Without asking the pods, Ready follows Programmed and the Deployment.
        snapshot.proxyLoad = nil
        snapshot.proxyAvailable = false
        _ = step()
        snapshot.proxyAvailable = true
        _ = step()
        #expect(ready()?.reason == "Ready")
    }

    @Test func proxyLoadNamesWhatIsMissing() throws {
        let entry = AllowList.Entry(host: "a.example.com")
        let loaded = ProxyLoad.Answer(ProxyLoadReport(AllowList(hosts: [entry])))
        #expect(ProxyLoad(pods: [.init(name: "p", answer: loaded)]).waiting(for: entry) == nil)
        #expect(ProxyLoad().waiting(for: entry) != nil, "no pod answered: not loaded")
        let olderProxy = ProxyLoad.Pod(name: "old", answer: .noReport)
        #expect(ProxyLoad(pods: [.init(name: "p", answer: loaded), olderProxy]).waiting(for: entry) == nil)
        var changed = entry
        changed.port = 8443
        #expect(
            ProxyLoad(pods: [.init(name: "p", answer: loaded)]).waiting(for: changed)
                == "waiting for the proxy pods to load the new allow-list: p has an earlier version of it"
        )
        let many = ProxyLoad(pods: (1...5).map { .init(name: "p\($0)", answer: .unanswered("refused")) })
        #expect(
            many.waiting(for: entry)
                == "waiting for the proxy pods to load the new allow-list: p1: refused; p2: refused; p3: refused; "
                + "and 2 more"
        )
        let report = ProxyLoadReport(
            AllowList(hosts: [entry, .init(host: "b.example.com")]),
            unusable: ["b.example.com": "no CA"]
        )
        #expect(try ProxyLoadReport.decode(report.encoded()) == report)
        #expect(ProxyLoad.Answer(report) == .loaded(entries: report.entries, unusable: report.unusable))
    }

    /// A fingerprint tells versions of an entry apart, and only them: equal entries agree (a field set to its
    /// default is the same entry), any changed field disagrees.
    @Test func entryFingerprintsFollowTheEntry() {
        let plain = AllowList.Entry(host: "api.github.com")
        #expect(plain.fingerprint == AllowList.Entry(host: "api.github.com", port: 443).fingerprint)
        #expect(plain.fingerprint.count == 16 && plain.fingerprint.allSatisfy(\.isHexDigit))
        var variants = [plain]
        variants.append(AllowList.Entry(host: "api.github.com", port: 8443))
        variants.append(AllowList.Entry(host: "api.gitlab.com"))
        variants.append(AllowList.Entry(host: "api.github.com", addresses: ["192.0.2.1"]))
        variants.append(AllowList.Entry(host: "api.github.com", allowPrivateAddresses: true))
        variants.append(AllowList.Entry(host: "api.github.com", tls: .init(caFile: "/etc/egress-proxy/tls/a.crt")))
        variants.append(AllowList.Entry(host: "api.github.com", tls: .init(insecureSkipVerify: true)))
        #expect(Set(variants.map(\.fingerprint)).count == variants.count)
    }

    /// The counts by readiness (the operator's `egress_operator_egresshosts{reason}`) agree, host for host, with
    /// the conditions the planned statuses hold, at every step of an addition and of the proxy going away; hosts
    /// whose status is already settled are counted too.
    @Test func hostsByReadinessFollowTheConditions() {
        func host(_ name: String, _ month: Int, _ spec: EgressHost.Spec) -> EgressHost {
            var object = EgressHost(name: name, spec: spec)
            object.metadata.creationTimestamp = "2026-0\(month)-01T00:00:00Z"
            return object
        }
        var snapshot = ClusterSnapshot(
            egressHosts: [
                host("github", 1, .init(host: "api.github.com")),
                host("bad", 2, .init(host: "https://x.example.com")),
                host(
                    "no-ca",
                    3,
                    .init(host: "b.example.com", tls: .init(caBundle: .init(kind: .secret, name: "absent")))
                ),
                host("later", 4, .init(host: "api.github.com", port: 8443)),
            ],
            proxyAvailable: false,
            now: "t"
        )
        func reasonsFromConditions() -> [String: Int] {
            var counts: [String: Int] = [:]
            for object in snapshot.egressHosts {
                let conditions = object.status?.conditions ?? []
                let accepted = conditions.first { $0.type == "Accepted" }
                let ready = conditions.first { $0.type == "Ready" }
                let reason = accepted?.status == .false ? accepted?.reason : ready?.reason
                counts[reason ?? "none", default: 0] += 1
            }
            return counts
        }
        var seen: [[String: Int]] = []
        for proxyAvailable in [false, true, true, true, false] {
            snapshot.proxyAvailable = proxyAvailable
            let plan = ReconcilePlan(snapshot)
            apply(plan, to: &snapshot)
            #expect(plan.hostsByReadiness == reasonsFromConditions())
            #expect(Set(plan.hostsByReadiness.keys).isSubset(of: ReconcilePlan.readinessReasons))
            seen.append(plan.hostsByReadiness)
        }
        let rejected = ["InvalidSpec": 1, "MissingSecret": 1, "HostConflict": 1]
        #expect(seen.first == rejected.merging(["Pending": 1]) { $1 })
        #expect(seen.dropLast().last == rejected.merging(["Ready": 1]) { $1 })
        #expect(seen.last == rejected.merging(["ProxyUnavailable": 1]) { $1 })
    }

    /// Every verdict's reason is one the metric declares.
    @Test func everyReadinessReasonIsDeclared() {
        let outcomes: [HostVerdict.Outcome] = [
            .accepted(insecure: false), .accepted(insecure: true), .invalidSpec("x"), .hostConflict(owner: "x"),
            .missingMaterial("x"), .unusableMaterial("x"), .tlsMaterialTooLarge(limit: 1),
            .allowListTooLarge(limit: 1),
        ]
        for outcome in outcomes {
            for (programmed, available) in [(false, false), (false, true), (true, false), (true, true)] {
                for awaitingLoad in [false, true] {
                    let reason = ReconcilePlan.readinessReason(
                        verdict: HostVerdict(outcome),
                        programmed: programmed,
                        proxyAvailable: available,
                        awaitingLoad: awaitingLoad
                    )
                    #expect(ReconcilePlan.readinessReasons.contains(reason), "\(outcome) gives \(reason)")
                }
            }
        }
    }

    /// Statuses planned with the last pass's memo (`SettledStatuses`) are the statuses planned from scratch, through
    /// random steps that change one input at a time: DNS, the applied allow-list, the proxy, or the stored statuses.
    @Test func settledStatusesNeverChangeTheAnswer() {
        var generator = SystemRandomNumberGenerator()
        let pool = (0..<8).map { "h\($0).example.com" }
        func some() -> [String] {
            Array(pool.shuffled(using: &generator).prefix(Int.random(in: 0...8, using: &generator))).sorted()
        }
        var snapshot = ClusterSnapshot(
            egressHosts: pool.enumerated().map {
                var egressHost = EgressHost(name: "eh\($0.offset)", spec: .init(host: $0.element))
                egressHost.metadata.resourceVersion = "1"
                return egressHost
            },
            appliedAllowList: AllowList(hosts: some().map { .init(host: $0) }),
            dnsHosts: some(),
            proxyAvailable: true,
            now: "t"
        )
        var settled = ReconcilePlan.SettledStatuses()
        var version = 1
        for step in 0..<300 {
            switch Int.random(in: 0..<6, using: &generator) {
            case 0: snapshot.dnsHosts = some()
            case 4:
                // What the proxy pods have loaded: not asked, or two pods with some of the hosts.
                snapshot.proxyLoad =
                    Bool.random(using: &generator)
                    ? nil
                    : ProxyLoad(pods: [
                        .init(
                            name: "a",
                            answer: .init(ProxyLoadReport(AllowList(hosts: some().map { .init(host: $0) })))
                        ),
                        .init(
                            name: "b",
                            answer: .init(ProxyLoadReport(AllowList(hosts: some().map { .init(host: $0) })))
                        ),
                    ])
            case 1: snapshot.appliedAllowList = AllowList(hosts: some().map { .init(host: $0) })
            case 2: snapshot.proxyAvailable.toggle()
            case 3:
                // The statuses are written: each write moves the object's resourceVersion.
                let updates = ReconcilePlan(snapshot).statusUpdates
                for index in snapshot.egressHosts.indices {
                    guard let status = updates[snapshot.egressHosts[index].metadata.name] else { continue }
                    version += 1
                    snapshot.egressHosts[index].status = status
                    snapshot.egressHosts[index].metadata.resourceVersion = String(version)
                }
            default: break  // the same inputs again
            }
            let egressPlan = EgressPlan(egressHosts: snapshot.egressHosts, material: snapshot.material)
            var memo = ReconcilePlan(snapshot, egressPlan: egressPlan, statuses: false)
            memo.planStatuses(snapshot, settled: &settled)
            #expect(memo.statusUpdates == ReconcilePlan(snapshot).statusUpdates, "step \(step)")
        }
    }

    /// The plan walks sorted lists side by side; with any inputs (DNS hosts and applied allow-lists out of order or
    /// repeated included) it decides what the same rules over sets decide.
    @Test func sortedWalksDecideWhatSetsDecide() {
        var generator = SystemRandomNumberGenerator()
        let pool = (0..<12).map { "h\($0).example.com" }
        func some(_ count: Int) -> [String] {
            Array(pool.shuffled(using: &generator).prefix(Int.random(in: 0...count, using: &generator)))
        }
        for _ in 0..<300 {
            let egressHosts = some(10).enumerated().map {
                EgressHost(name: "eh\($0.offset)", spec: .init(host: $0.element))
            }
            var applied: AllowList? =
                Bool.random(using: &generator) ? nil : AllowList(hosts: some(10).map { .init(host: $0) })
            if Bool.random(using: &generator) { applied?.hosts.shuffle(using: &generator) }
            var dns = some(10)
            if let repeated = dns.first, Bool.random(using: &generator) { dns.append(repeated) }
            let snapshot = ClusterSnapshot(
                egressHosts: egressHosts,
                appliedAllowList: applied,
                dnsHosts: dns,
                proxyAvailable: Bool.random(using: &generator),
                now: "t",
                dnsRoutesEveryName: Bool.random(using: &generator)
            )
            let plan = ReconcilePlan(snapshot)

            let egressPlan = EgressPlan(egressHosts: egressHosts, material: TLSMaterial())
            let appliedNames = Set(applied?.hostNames ?? [])
            let current = Set(dns)
            var allowList = egressPlan.allowList
            let lingering = current.subtracting(egressPlan.hosts)
            if !snapshot.dnsRoutesEveryName, !lingering.isEmpty {
                var seen = Set<String>()
                let kept = (applied?.hosts ?? []).filter {
                    lingering.contains($0.host) && seen.insert($0.host).inserted
                }
                allowList = AllowList(hosts: allowList.hosts + kept)
            }
            let dnsHosts = egressPlan.hosts.filter {
                current.contains($0) || (snapshot.proxyAvailable && appliedNames.contains($0))
            }
            #expect(plan.allowList == allowList)
            #expect(plan.dnsHosts == dnsHosts)
            for host in egressHosts {
                let programmed = Set(dnsHosts).contains(host.spec.host) && appliedNames.contains(host.spec.host)
                let condition = plan.statusUpdates[host.metadata.name]?.conditions?.first { $0.type == "Programmed" }
                #expect(condition?.status == (programmed ? .true : .false), "\(host.spec.host) in \(snapshot)")
            }
        }
    }
}
