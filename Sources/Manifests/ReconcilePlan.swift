/// Everything the operator knows at one moment, read from its informers' caches.
public struct ClusterSnapshot: Sendable {
    public var egressHosts: [EgressHost]
    public var material: TLSMaterial
    /// The allow-list the proxy's ConfigMap holds now (nil: none yet, or unreadable).
    public var appliedAllowList: AllowList?
    /// The hosts the CoreDNS rules route now (from the managed block or the override snippet).
    public var dnsHosts: [String]
    /// Whether the proxy Deployment has available replicas running the current template.
    public var proxyAvailable: Bool
    /// RFC 3339 time for new condition transitions; the caller owns the clock.
    public var now: String
    /// Something about DNS the user must know even when hosts are programmed (e.g. CoreDNS lacks `reload`).
    public var dnsWarning: String?
    /// Whether one DNS rule routes every name under the suffix (`--dns-rules suffix`). DNS then has nothing to
    /// withdraw before a host leaves the allow-list: the proxy is the only enforcement point.
    public var dnsRoutesEveryName: Bool
    /// What the ready proxy pods say they have loaded; nil when the operator does not ask them (`Ready` then
    /// follows `Programmed` and the Deployment's availability alone).
    public var proxyLoad: ProxyLoad?

    public init(
        egressHosts: [EgressHost],
        material: TLSMaterial = TLSMaterial(),
        appliedAllowList: AllowList? = nil,
        dnsHosts: [String] = [],
        proxyAvailable: Bool = false,
        now: String,
        dnsWarning: String? = nil,
        dnsRoutesEveryName: Bool = false,
        proxyLoad: ProxyLoad? = nil
    ) {
        self.egressHosts = egressHosts
        self.material = material
        self.appliedAllowList = appliedAllowList
        self.dnsHosts = dnsHosts
        self.proxyAvailable = proxyAvailable
        self.now = now
        self.dnsWarning = dnsWarning
        self.dnsRoutesEveryName = dnsRoutesEveryName
        self.proxyLoad = proxyLoad
    }
}

/// The desired state for one reconcile pass, in the order the operator applies it.
///
/// DNS must never route a name the proxy does not yet allow, or the application sees a 403 for a host it was
/// promised; and a removed host must leave DNS before it leaves the allow-list. The plan is level-triggered: each
/// pass moves one safe step from what is applied now, and the writes it causes trigger the next pass:
/// - the allow-list holds every accepted host, plus hosts DNS still routes (they leave the allow-list only after
///   they have left DNS);
/// - DNS routes an accepted host only once the applied allow-list has it and the proxy is available, and drops a
///   host as soon as it is no longer accepted.
public struct ReconcilePlan: Sendable {
    public var allowList: AllowList
    public var tlsSecretData: [String: String]
    public var dnsHosts: [String]
    /// Status per EgressHost name, only for objects whose status must change.
    public var statusUpdates: [String: EgressHost.Status]
    /// How many EgressHosts there are by ``readinessReason(verdict:programmed:proxyAvailable:)`` (with the
    /// statuses, so empty until `planStatuses`).
    public var hostsByReadiness: [String: Int] = [:]
    /// How many programmed hosts wait for the proxy pods to load them (with the statuses): while there are any, the
    /// operator keeps asking the pods.
    public var hostsAwaitingProxyLoad = 0
    public var verdicts: [String: HostVerdict]

    public init(
        _ snapshot: ClusterSnapshot,
        suffix: String = HostName.reservedSuffix,
        tlsMountPath: String = ProxySettings.defaultTLSMountPath
    ) {
        self.init(
            snapshot,
            egressPlan: EgressPlan(
                egressHosts: snapshot.egressHosts,
                material: snapshot.material,
                tlsMountPath: tlsMountPath
            ),
            suffix: suffix
        )
    }

    /// With the snapshot's `EgressPlan` already made: it depends only on the EgressHosts and the TLS material, so a
    /// pass that plans again after writing the allow-list reuses it (with thousands of hosts it is most of a plan).
    ///
    /// With `statuses: false` the plan leaves `statusUpdates` empty until `planStatuses` fills it: a pass that
    /// plans twice needs statuses only from the second plan.
    public init(
        _ snapshot: ClusterSnapshot,
        egressPlan plan: EgressPlan,
        suffix: String = HostName.reservedSuffix,
        statuses: Bool = true
    ) {
        // Sorted lists of names walked side by side, not sets: with thousands of hosts every pass plans this once
        // or twice, and building the sets was most of it.
        let planned = SortedNames(plan.hosts)
        let appliedEntries = snapshot.appliedAllowList?.hosts ?? []
        let applied = SortedNames(snapshot.appliedAllowList?.hostNames ?? [])
        let currentDNS = SortedNames(snapshot.dnsHosts)

        // Hosts still routed by DNS but no longer accepted keep their last applied entry for one more step (unless
        // one rule routes every name: then no step of DNS ever withdraws a single host).
        allowList = plan.allowList
        if !snapshot.dnsRoutesEveryName {
            // Usually none, so a set of them costs nothing; the applied entries may be in any order.
            let lingering = Set(currentDNS.subtracting(planned))
            if !lingering.isEmpty {
                var seen = Set<String>()
                let kept = appliedEntries.filter { lingering.contains($0.host) && seen.insert($0.host).inserted }
                allowList = AllowList(hosts: plan.allowList.hosts + kept)
            }
        }
        tlsSecretData = plan.tlsSecretData

        // Keep what is routed and still accepted; add what the running proxy already allows. In the plan's order
        // (sorted), so this is sorted too.
        var (routed, allowed) = (currentDNS.lookup(), applied.lookup())
        dnsHosts = planned.names.filter {
            routed.contains($0) || (snapshot.proxyAvailable && allowed.contains($0))
        }
        verdicts = plan.verdicts

        statusUpdates = [:]
        if statuses { planStatuses(snapshot, suffix: suffix) }
    }

    /// Plans `statusUpdates`: the status of every EgressHost whose status must change.
    public mutating func planStatuses(_ snapshot: ClusterSnapshot, suffix: String = HostName.reservedSuffix) {
        var settled = SettledStatuses()
        planStatuses(snapshot, suffix: suffix, settled: &settled)
    }

    /// The inputs of the hosts whose status needed no change, from one pass to the next. Building a status to
    /// compare it with the stored one was the largest part of a pass with thousands of hosts, and nearly every host
    /// has the same inputs as in the pass before.
    public struct SettledStatuses: Sendable {
        fileprivate struct Shared: Equatable {
            var proxyAvailable: Bool
            var suffix: String
            var dnsWarning: String?
        }
        /// Per host: the object's resourceVersion (its spec, generation and stored status), its verdict and whether
        /// it is programmed. The clock needs no place here: it is read only for a condition that changes.
        fileprivate struct Inputs: Equatable {
            var resourceVersion: String
            var verdict: HostVerdict
            var programmed: Bool
            /// Why the proxy pods do not route it yet (see `ProxyLoad.waiting(for:)`), nil when they do.
            var awaitingLoad: String?
        }
        fileprivate var shared: Shared?
        fileprivate var byName: [String: Inputs] = [:]
        /// The last pass's DNS hosts and applied allow-list hosts, and the set of those in both. They rarely change
        /// between passes: comparing the lists (names that usually share storage) costs far less than checking
        /// their order, intersecting them and hashing 5,000 names into a new set, which together were a third of
        /// planning the statuses.
        fileprivate var routed: (dns: [String], applied: [String], both: Set<String>)?

        public init() {}
    }

    /// `planStatuses`, skipping hosts whose inputs are what they were when `settled` last found their status
    /// current, and updating `settled` for the next pass.
    public mutating func planStatuses(
        _ snapshot: ClusterSnapshot,
        suffix: String = HostName.reservedSuffix,
        settled: inout SettledStatuses
    ) {
        let shared = SettledStatuses.Shared(
            proxyAvailable: snapshot.proxyAvailable,
            suffix: suffix,
            dnsWarning: snapshot.dnsWarning
        )
        // Updated in place (taken out, so it is not copied): a host still settled costs one lookup, not an insert
        // into a new map. Names of deleted objects may stay behind until the map is rebuilt below; they match
        // nothing, as a resourceVersion is never reused.
        var next = settled.shared == shared ? settled.byName : [:]
        let lastRouted = settled.routed
        settled = SettledStatuses()
        var updates: [String: EgressHost.Status] = [:]
        // Routed and in the applied allow-list: one set, from two sorted lists, or the last pass's for the same lists.
        let appliedHosts = snapshot.appliedAllowList?.hostNames ?? []
        let routedAndApplied: Set<String>
        if let lastRouted, lastRouted.dns == dnsHosts, lastRouted.applied == appliedHosts {
            routedAndApplied = lastRouted.both
        } else {
            routedAndApplied = Set(SortedNames(dnsHosts).intersection(SortedNames(appliedHosts)))
        }
        // By index: binding each element would copy whole EgressHosts.
        var byReadiness: [String: Int] = [:]
        var awaitingLoadCount = 0
        // The planned entry of each host (what its current spec makes), found only if some host is checked against
        // what the pods report: a pass may plan statuses before its new allow-list is written, and pods that still
        // route the applied (earlier) version must not make a changed host Ready for its new generation.
        let planned = allowList
        var plannedEntries: [String: Int]?
        func plannedEntry(_ host: String) -> AllowList.Entry? {
            if plannedEntries == nil {
                plannedEntries = Dictionary(planned.hosts.indices.map { (planned.hosts[$0].host, $0) }) { first, _ in
                    first
                }
            }
            return plannedEntries?[host].map { planned.hosts[$0] }
        }
        for index in snapshot.egressHosts.indices {
            let name = snapshot.egressHosts[index].metadata.name
            guard let verdict = verdicts[name] else { continue }
            let host = snapshot.egressHosts[index].spec.host
            let programmed = routedAndApplied.contains(host) && verdict.isAccepted
            // Asked of the pods only on the way to Ready for this generation: once Ready, a host stays so until its
            // spec changes (pods started later load the whole list, and a pod that misses one answer has not lost
            // the host); after a change, Ready waits for every pod to have the new version of its entry.
            var awaitingLoad: String?
            if programmed, snapshot.proxyAvailable, let load = snapshot.proxyLoad,
                !Self.isReadyForItsGeneration(snapshot.egressHosts[index]), let entry = plannedEntry(host)
            {
                awaitingLoad = load.waiting(for: entry)
            }
            if awaitingLoad != nil { awaitingLoadCount += 1 }
            byReadiness[
                Self.readinessReason(
                    verdict: verdict,
                    programmed: programmed,
                    proxyAvailable: snapshot.proxyAvailable,
                    awaitingLoad: awaitingLoad != nil
                ),
                default: 0
            ] += 1
            let inputs = snapshot.egressHosts[index].metadata.resourceVersion.map {
                SettledStatuses.Inputs(
                    resourceVersion: $0,
                    verdict: verdict,
                    programmed: programmed,
                    awaitingLoad: awaitingLoad
                )
            }
            if let inputs, next[name] == inputs { continue }
            let status = Self.status(
                for: snapshot.egressHosts[index],
                verdict: verdict,
                programmed: programmed,
                proxyAvailable: snapshot.proxyAvailable,
                awaitingLoad: awaitingLoad,
                now: snapshot.now,
                suffix: suffix,
                dnsWarning: snapshot.dnsWarning
            )
            if status != snapshot.egressHosts[index].status?.operatorOwned {
                updates[name] = status
                next[name] = nil
            } else {
                next[name] = inputs
            }
        }
        if next.count > 2 * snapshot.egressHosts.count + 64 {
            let names = Set(snapshot.egressHosts.map(\.metadata.name))
            next = next.filter { names.contains($0.key) }
        }
        statusUpdates = updates
        hostsByReadiness = byReadiness
        hostsAwaitingProxyLoad = awaitingLoadCount
        settled.shared = shared
        settled.byName = next
        settled.routed = (dnsHosts, appliedHosts, routedAndApplied)
    }

    /// Why an EgressHost is not Ready, as one word: the reason of its first condition that is false (`Accepted`'s
    /// reason, `Pending`, `ProxyUnavailable` or `Propagating`), or `Ready`. One of `readinessReasons`.
    public static func readinessReason(
        verdict: HostVerdict,
        programmed: Bool,
        proxyAvailable: Bool,
        awaitingLoad: Bool = false
    ) -> String {
        if !verdict.isAccepted { return verdict.acceptedReason.reason }
        if !programmed { return "Pending" }
        if !proxyAvailable { return "ProxyUnavailable" }
        return awaitingLoad ? "Propagating" : "Ready"
    }

    /// The statuses to write while DNS cannot be written (`problem`: the Corefile cannot be edited, CoreDNS's
    /// ConfigMap is missing, or the API server refuses the write). An accepted host DNS does not route yet says why,
    /// instead of `Pending`; a routed one keeps its status, as CoreDNS keeps serving the rules it has; a host not
    /// accepted gets its usual status, which DNS does not change. `routed`: the hosts DNS routes and the applied
    /// allow-list holds, when DNS could be read; nil when it could not (then a host counts as routed if its stored
    /// status says Programmed for its generation).
    ///
    /// Also counts the hosts by readiness as these statuses say (`DNSNotWritable` for the ones DNS does not route),
    /// so that `egress_operator_egresshosts` shows the blockage instead of what the last successful pass counted.
    public static func statusesWhileDNSIsBlocked(
        _ egressHosts: [EgressHost],
        verdicts: [String: HostVerdict],
        routed: Set<String>?,
        problem: String,
        proxyAvailable: Bool,
        now: String,
        suffix: String
    ) -> (updates: [String: EgressHost.Status], hostsByReadiness: [String: Int]) {
        var updates: [String: EgressHost.Status] = [:]
        var byReadiness: [String: Int] = [:]
        for egressHost in egressHosts {
            let name = egressHost.metadata.name
            guard let verdict = verdicts[name] else { continue }
            let isRouted =
                routed?.contains(egressHost.spec.host)
                ?? egressHost.status?.conditions?.contains {
                    $0.type == "Programmed" && $0.status == .true
                        && $0.observedGeneration == egressHost.metadata.generation
                } ?? false
            let reason =
                verdict.isAccepted && !isRouted
                ? Self.dnsNotWritable
                : Self.readinessReason(verdict: verdict, programmed: isRouted, proxyAvailable: proxyAvailable)
            byReadiness[reason, default: 0] += 1
            guard !verdict.isAccepted || !isRouted else { continue }
            let status = Self.status(
                for: egressHost,
                verdict: verdict,
                programmed: false,
                proxyAvailable: proxyAvailable,
                now: now,
                suffix: suffix,
                dnsProblem: problem
            )
            if status != egressHost.status?.operatorOwned { updates[name] = status }
        }
        return (updates, byReadiness)
    }

    /// Whether the stored status says Ready for the object's current generation (its spec as it is).
    static func isReadyForItsGeneration(_ egressHost: EgressHost) -> Bool {
        egressHost.status?.conditions?.contains {
            $0.type == "Ready" && $0.status == .true && $0.observedGeneration == egressHost.metadata.generation
        } ?? false
    }

    /// The reason of a host DNS cannot be routed to because the Corefile cannot be written.
    static let dnsNotWritable = "DNSNotWritable"

    /// Every value `readinessReason` and `statusesWhileDNSIsBlocked` can count (a metric's label values).
    public static let readinessReasons = [
        "Ready", "Pending", "ProxyUnavailable", "Propagating", "InvalidSpec", "HostConflict", "MissingSecret",
        "InvalidTLSMaterial", "TLSMaterialTooLarge", "AllowListTooLarge", dnsNotWritable,
    ]

    static func status(
        for egressHost: EgressHost,
        verdict: HostVerdict,
        programmed: Bool,
        proxyAvailable: Bool,
        awaitingLoad: String? = nil,
        now: String,
        suffix: String,
        dnsWarning: String? = nil,
        dnsProblem: String? = nil
    ) -> EgressHost.Status {
        let generation = egressHost.metadata.generation
        let previous = egressHost.status?.conditions ?? []
        func condition(_ type: String, _ value: Bool, _ reason: String, _ message: String) -> Condition {
            let status: Condition.Status = value ? .true : .false
            let old = previous.first { $0.type == type }
            // A transition time moves only when the status does, as metav1.Condition prescribes.
            let time = old?.status == status ? old!.lastTransitionTime : now
            return Condition(
                type: type,
                status: status,
                reason: reason,
                message: message,
                lastTransitionTime: time,
                observedGeneration: generation
            )
        }
        let (acceptedReason, acceptedMessage) = verdict.acceptedReason
        var conditions = [condition("Accepted", verdict.isAccepted, acceptedReason, acceptedMessage)]
        if !verdict.isAccepted {
            conditions.append(condition("Programmed", false, "NotAccepted", "not programmed: \(acceptedReason)"))
            conditions.append(condition("Ready", false, "NotAccepted", "not ready: \(acceptedReason)"))
        } else if !programmed, let dnsProblem {
            let message = "cannot route DNS to it: \(dnsProblem)"
            conditions.append(condition("Programmed", false, Self.dnsNotWritable, message))
            conditions.append(condition("Ready", false, Self.dnsNotWritable, message))
        } else if !programmed {
            let message =
                proxyAvailable
                ? "waiting for the proxy's allow-list to include the host before routing DNS to it"
                : "waiting for the egress proxy Deployment to become available before routing DNS to it"
            conditions.append(condition("Programmed", false, "Pending", message))
            conditions.append(condition("Ready", false, "Pending", message))
        } else {
            let message = "in the proxy's allow-list and in DNS" + (dnsWarning.map { "; warning: \($0)" } ?? "")
            conditions.append(condition("Programmed", true, "Programmed", message))
            let url = EgressHost.internalURL(host: egressHost.spec.host, suffix: suffix)
            conditions.append(
                !proxyAvailable
                    ? condition(
                        "Ready",
                        false,
                        "ProxyUnavailable",
                        "the egress proxy Deployment has no available replicas"
                    )
                    : awaitingLoad.map { condition("Ready", false, "Propagating", $0) }
                        ?? condition("Ready", true, "Ready", "reachable at \(url)")
            )
        }
        if case .accepted(insecure: true) = verdict.outcome {
            conditions.append(
                condition(
                    "InsecureSkipVerify",
                    true,
                    "CertificateVerificationDisabled",
                    "the proxy does not verify this upstream's certificate or name"
                )
            )
        }
        return EgressHost.Status(
            observedGeneration: generation,
            conditions: conditions,
            internalURL: verdict.isAccepted ? EgressHost.internalURL(host: egressHost.spec.host, suffix: suffix) : nil
        )
    }
}

/// Host names sorted ascending without repeats, for walking side by side. Lists the operator plans from are sorted
/// already (allow-list order, or the Corefile block it wrote), so making one is a check, not a sort.
struct SortedNames {
    let names: [String]

    init(_ names: [String]) {
        let sorted = names.indices.dropFirst().allSatisfy { names[$0 - 1] < names[$0] }
        self.names = sorted ? names : Array(Set(names)).sorted()
    }

    /// The names not in `other`, sorted.
    func subtracting(_ other: SortedNames) -> [String] {
        var lookup = other.lookup()
        return names.filter { !lookup.contains($0) }
    }

    /// The names also in `other`, sorted.
    func intersection(_ other: SortedNames) -> [String] {
        var lookup = other.lookup()
        return names.filter { lookup.contains($0) }
    }

    func lookup() -> Lookup { Lookup(names: names) }

    /// Answers `contains` for names asked in ascending order (repeats allowed), in one pass over the list.
    struct Lookup {
        let names: [String]
        private var index = 0

        init(names: [String]) { self.names = names }

        mutating func contains(_ name: String) -> Bool {
            while index < names.count, names[index] < name { index += 1 }
            return index < names.count && names[index] == name
        }
    }
}
