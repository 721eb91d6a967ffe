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

    public init(
        egressHosts: [EgressHost],
        material: TLSMaterial = TLSMaterial(),
        appliedAllowList: AllowList? = nil,
        dnsHosts: [String] = [],
        proxyAvailable: Bool = false,
        now: String,
        dnsWarning: String? = nil,
        dnsRoutesEveryName: Bool = false
    ) {
        self.egressHosts = egressHosts
        self.material = material
        self.appliedAllowList = appliedAllowList
        self.dnsHosts = dnsHosts
        self.proxyAvailable = proxyAvailable
        self.now = now
        self.dnsWarning = dnsWarning
        self.dnsRoutesEveryName = dnsRoutesEveryName
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
        let accepted = Set(plan.hosts)
        let currentDNS = Set(snapshot.dnsHosts)
        let appliedEntries = Dictionary(
            (snapshot.appliedAllowList?.hosts ?? []).map { ($0.host, $0) },
            uniquingKeysWith: { first, _ in first }
        )

        // Hosts still routed by DNS but no longer accepted keep their last applied entry for one more step (unless
        // one rule routes every name: then no step of DNS ever withdraws a single host).
        var entries = plan.allowList.hosts
        if !snapshot.dnsRoutesEveryName {
            for host in currentDNS.subtracting(accepted).sorted() {
                if let entry = appliedEntries[host] { entries.append(entry) }
            }
        }
        allowList = AllowList(hosts: entries)
        tlsSecretData = plan.tlsSecretData

        let proxyHas = snapshot.proxyAvailable ? Set(appliedEntries.keys) : []
        // Keep what is routed and still accepted; add what the running proxy already allows.
        dnsHosts = accepted.filter { currentDNS.contains($0) || proxyHas.contains($0) }.sorted()
        verdicts = plan.verdicts

        statusUpdates = [:]
        if statuses { planStatuses(snapshot, suffix: suffix) }
    }

    /// Plans `statusUpdates`: the status of every EgressHost whose status must change.
    public mutating func planStatuses(_ snapshot: ClusterSnapshot, suffix: String = HostName.reservedSuffix) {
        var updates: [String: EgressHost.Status] = [:]
        let routed = Set(dnsHosts)
        let applied = Set((snapshot.appliedAllowList?.hosts ?? []).map(\.host))
        // By index: binding each element would copy whole EgressHosts.
        for index in snapshot.egressHosts.indices {
            let name = snapshot.egressHosts[index].metadata.name
            guard let verdict = verdicts[name] else { continue }
            let host = snapshot.egressHosts[index].spec.host
            let status = Self.status(
                for: snapshot.egressHosts[index],
                verdict: verdict,
                programmed: routed.contains(host) && applied.contains(host) && verdict.isAccepted,
                proxyAvailable: snapshot.proxyAvailable,
                now: snapshot.now,
                suffix: suffix,
                dnsWarning: snapshot.dnsWarning
            )
            if status != snapshot.egressHosts[index].status { updates[name] = status }
        }
        statusUpdates = updates
    }

    static func status(
        for egressHost: EgressHost,
        verdict: HostVerdict,
        programmed: Bool,
        proxyAvailable: Bool,
        now: String,
        suffix: String,
        dnsWarning: String? = nil
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
            conditions.append(
                proxyAvailable
                    ? condition(
                        "Ready",
                        true,
                        "Ready",
                        "reachable at \(EgressHost.internalURL(host: egressHost.spec.host, suffix: suffix))"
                    )
                    : condition(
                        "Ready",
                        false,
                        "ProxyUnavailable",
                        "the egress proxy Deployment has no available replicas"
                    )
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
