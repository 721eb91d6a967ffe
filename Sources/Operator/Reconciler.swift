import Foundation
import KubeAPI
import Logging
import Manifests
import Synchronization

/// One reconcile pass: read the caches, plan with the pure `ReconcilePlan`, apply the difference.
///
/// Writes go in the order the plan requires: the proxy workload, its TLS Secret and allow-list first, then DNS,
/// then status. Owned objects are written with server-side apply under one field manager, and only when the
/// cached object lacks what we want (so a converged cluster costs no writes); the CoreDNS Corefile, which other
/// people own, is updated (PUT) from the cached object with only the managed block changed, guarded by its
/// resourceVersion.
final class Reconciler: Sendable {
    let client: KubeClient
    let options: OperatorOptions
    let caches: Caches
    let logger: Logger
    let events: EventRecorder
    let servesPDB: Bool
    /// What the proxy pods say they have loaded (nil: `Ready` does not wait for them).
    let proxyLoad: ProxyLoadMonitor?
    /// Objects this process has applied once: the first pass re-asserts everything (settings may have changed).
    private let appliedOnce = Mutex<Set<String>>([])
    /// The status the last pass planned for each EgressHost whose status must change.
    private let pendingStatus = Mutex<[String: EgressHost.Status]>([:])
    /// The hosts whose status the last pass found current, with what it was planned from.
    private let settledStatuses = Mutex(ReconcilePlan.SettledStatuses())
    /// The hosts by readiness a pass counted that then ended in an error (DNS it could not write, a proxy object
    /// the API server refused), with no summary to carry them (`takeBlockedHostsByReadiness`).
    private let blockedHostsByReadiness = Mutex<[String: Int]?>(nil)
    /// Which ConfigMap and Secret values the proxy could not load as TLS material, by content.
    private let tlsMaterialCheck = Mutex(TLSMaterialCheck())
    /// The decoded EgressHosts and their plan, kept from pass to pass (one pass runs at a time).
    private let egressHostIndex = Mutex(EgressHostIndex())
    /// Answers of pure functions of large inputs, by input (see `LastResult`).
    private let corefileImportsOverride = LastResult<String, Bool>()
    private let corefileLoadsReload = LastResult<String, Bool>()
    private let corefileHosts = LastResult<String, [String]>()
    private let overrideHosts = LastResult<String, [String]>()
    private let corefileEdit = LastResult<CorefileEdit, CorefileEditor.Edit>()
    /// The allow-list's JSON text, and the lines it was made of: comparing two lists is cheaper than encoding one,
    /// and the next list's text reuses the lines of the entries it shares with this one.
    private let allowListEncoding = Mutex<AllowList.Encoding?>(nil)
    /// The stored allow-list, decoded: it changes only when this operator writes it.
    private let appliedAllowLists = LastResult<String, AllowList?>()

    private struct CorefileEdit: Equatable, Sendable {
        var hosts: [String]
        var corefile: String
    }

    init(
        client: KubeClient,
        options: OperatorOptions,
        caches: Caches,
        servesPDB: Bool,
        proxyLoad: ProxyLoadMonitor?,
        events: EventRecorder,
        logger: Logger
    ) {
        self.client = client
        self.options = options
        self.caches = caches
        self.servesPDB = servesPDB
        self.proxyLoad = proxyLoad
        self.events = events
        self.logger = logger
    }

    var settings: OperatorSettings { options.settings }

    static let statusConcurrency = 16

    struct Summary: Sendable {
        var writes = 0
        var managedHosts = 0
        var statusPending = false
        /// EgressHosts by why they are not Ready (see `ReconcilePlan.readinessReason`).
        var hostsByReadiness: [String: Int] = [:]
    }

    func reconcile() async throws -> Summary {
        var summary = Summary()
        blockedHostsByReadiness.withLock { $0 = nil }
        let material = material()
        let (egressHosts, egressPlan) = planEgressHosts(material: material)
        let deployment = caches.owned[.deployments]?.get(name: settings.proxy.name, namespace: settings.namespace)
        let proxyAvailable = (deployment?[path: "status", "availableReplicas"]?.intValue ?? 0) > 0
        let dns: DNSState
        // No CoreDNS ConfigMap: DNS routes nothing of ours, so the proxy and its allow-list can still be written;
        // only DNS waits (the pass fails at that step, and the hosts say why).
        var dnsMissing: OperatorError?
        do {
            dns = try currentDNS()
        } catch let error as OperatorError where error.isCoreDNSMissing {
            dnsMissing = error
            dns = DNSState(
                mode: .corefile,
                corefileHosts: [],
                overrideHosts: [],
                overrideSnippet: "",
                suffixRules: options.dnsRules == .suffix
            )
        } catch {
            reportDNSBlocked(by: error, egressHosts, egressPlan, routed: nil, proxyAvailable: proxyAvailable)
            throw error
        }
        let appliedAllowList = caches.configMaps.get(
            name: settings.proxy.allowListConfigMapName,
            namespace: settings.namespace
        )?[path: "data", ProxySettings.allowListKey]?.stringValue.flatMap { text in
            appliedAllowLists(text) { try? AllowList.decode(Array($0.utf8)) }
        }
        var snapshot = ClusterSnapshot(
            egressHosts: egressHosts,
            material: material,
            appliedAllowList: appliedAllowList,
            dnsHosts: dns.hosts(appliedAllowList: appliedAllowList),
            proxyAvailable: proxyAvailable,
            now: Date.now.formatted(.iso8601),
            dnsWarning: dns.warning,
            dnsRoutesEveryName: dns.routesEveryName,
            proxyLoad: proxyLoad?.current
        )
        var plan = reconcilePlan(snapshot, egressPlan)

        // 1. The proxy workload and what it mounts. DNS may only point at a proxy that has the hosts. A workload
        //    object the API server refuses (an admission webhook, a quota, an immutable field edited by hand) does
        //    not hold back the allow-list, whose removals are how access is revoked: the pass goes on, and fails
        //    with that error at its end.
        let currentReplicas = deployment?[path: "spec", "replicas"]?.intValue
        var workloadError: (any Error)? = nil
        for object in ProxyWorkload.objects(settings, currentReplicas: currentReplicas)
        where servesPDB || object["kind"] != "PodDisruptionBudget" {
            do {
                summary.writes += try await applyIfNeeded(object)
            } catch let error as KubeError {
                logger.error(
                    "cannot write a proxy object; the allow-list and DNS are still written",
                    metadata: ["kind": "\(object["kind"]?.stringValue ?? "")", "error": "\(error)"]
                )
                workloadError = workloadError ?? error
            }
        }
        summary.writes += try await applyIfNeeded(tlsSecret(plan.tlsSecretData))
        // While a new allow-list is being written, plan DNS as if it were stored (what a successful write makes
        // true) and prepare the Corefile edit: with thousands of rules the edit takes as long as the write.
        let (allowList, current) = (plan.allowList, snapshot)
        async let storedPlan = allowList != appliedAllowList ? planOnceStored(allowList, current, egressPlan, dns) : nil
        let allowListWrites = try await applyIfNeeded(allowListConfigMap(plan.allowList))
        summary.writes += allowListWrites
        summary.writes += try await applyLockdownPolicies()
        summary.writes += try await deleteUnwantedOwnedObjects()
        if allowListWrites > 0, let text = allowListEncoding.withLock({ $0?.list == plan.allowList ? $0?.text : nil }) {
            // The next pass reads back this text; decoding what encoding gave is the same list (tested).
            appliedAllowLists.remember(text, plan.allowList)
        }
        if allowListWrites > 0, let stored = await storedPlan {
            // The new allow-list is now stored: plan DNS from it in this pass rather than waiting for the next.
            snapshot = stored.snapshot
            plan = stored.plan
        }
        summary.managedHosts = plan.dnsHosts.count

        // 2. DNS, only for hosts in a stored allow-list.
        do {
            if let dnsMissing { throw dnsMissing }
            summary.writes += try await writeDNS(plan.dnsHosts, current: dns)
        } catch {
            // DNS was read: what it routes now (in the applied allow-list) is known; nothing, if another server
            // block takes the suffix's names.
            let applied = Set(snapshot.appliedAllowList?.hostNames ?? [])
            let routed =
                (error as? CorefileError)?.leavesRulesUnused == true
                ? [] : Set(snapshot.dnsHosts).intersection(applied)
            reportDNSBlocked(by: error, egressHosts, egressPlan, routed: routed, proxyAvailable: proxyAvailable)
            throw error
        }
        // Statuses from the final plan only, once DNS is written: with thousands of hosts planning them takes longer
        // than many a write, and nothing else waits for them.
        settledStatuses.withLock { plan.planStatuses(snapshot, suffix: settings.proxy.suffix, settled: &$0) }
        summary.hostsByReadiness = plan.hostsByReadiness
        proxyLoad?.setAwaiting(plan.hostsAwaitingProxyLoad > 0)

        // 3. Status and Events are written by the status worker (`writeStatuses`), so that thousands of status
        //    writes never hold back the next allow-list or DNS change.
        pendingStatus.withLock { pending in
            pending = plan.statusUpdates
            summary.statusPending = !pending.isEmpty
        }
        if let workloadError {
            // The pass did its work but ends in an error: its counts are still true (see `reportDNSBlocked`).
            blockedHostsByReadiness.withLock { $0 = plan.hostsByReadiness }
            throw workloadError
        }
        return summary
    }

    /// The snapshot and plan once `allowList` is stored, with its Corefile edit made (the edit is remembered for
    /// `writeDNS`).
    private func planOnceStored(
        _ allowList: AllowList,
        _ snapshot: ClusterSnapshot,
        _ egressPlan: EgressPlan,
        _ dns: DNSState
    ) -> (snapshot: ClusterSnapshot, plan: ReconcilePlan) {
        var snapshot = snapshot
        snapshot.appliedAllowList = allowList
        let plan = reconcilePlan(snapshot, egressPlan)
        if dns.mode == .corefile, let corefile = dns.corefile, let editor = try? options.corefileEditor() {
            _ = try? makeEdit(CorefileEdit(hosts: plan.dnsHosts, corefile: corefile), editor)
        }
        return (snapshot, plan)
    }

    func forgetPendingStatuses() { pendingStatus.withLock { $0 = [:] } }

    /// Whether statuses are waiting for the status worker (a failed pass may have planned some: see
    /// `reportDNSBlocked`).
    var hasPendingStatus: Bool { pendingStatus.withLock { !$0.isEmpty } }

    /// When DNS cannot be written for a reason retrying will not fix soon, the hosts waiting for it say why in their
    /// status (the pass itself fails, and the queue retries it): not `Pending` with nothing else to go on.
    private func reportDNSBlocked(
        by error: any Error,
        _ egressHosts: [EgressHost],
        _ egressPlan: EgressPlan,
        routed: Set<String>?,
        proxyAvailable: Bool
    ) {
        guard let problem = Self.dnsProblem(error) else { return }
        let (updates, byReadiness) = ReconcilePlan.statusesWhileDNSIsBlocked(
            egressHosts,
            verdicts: egressPlan.verdicts,
            routed: routed,
            problem: problem,
            proxyAvailable: proxyAvailable,
            now: Date.now.formatted(.iso8601),
            suffix: settings.proxy.suffix
        )
        // Added to what earlier passes planned and is not written yet (a host routed by the last pass keeps its
        // Programmed update); and no status counts as settled any more, so the first pass after the fix plans
        // every host again, even before the echo of these writes reaches the cache.
        pendingStatus.withLock { $0.merge(updates) { $1 } }
        settledStatuses.withLock { $0 = ReconcilePlan.SettledStatuses() }
        blockedHostsByReadiness.withLock { $0 = byReadiness }
    }

    /// What the last pass counted by readiness if it ended in an error (once; nil otherwise).
    func takeBlockedHostsByReadiness() -> [String: Int]? {
        blockedHostsByReadiness.withLock { counts in
            defer { counts = nil }
            return counts
        }
    }

    /// What keeps DNS from being written, for errors a user must act on: a Corefile the editor cannot edit, no
    /// CoreDNS ConfigMap, or a write the API server refuses (RBAC, validation, e.g. a ConfigMap over 1 MiB).
    static func dnsProblem(_ error: any Error) -> String? {
        switch error {
        case let error as CorefileError:
            return "\(error)"
        case let error as OperatorError where error.isCoreDNSMissing:
            return error.description
        case let error as KubeError where [.forbidden, .invalid, .badRequest].contains(error.code):
            return error.description
        default:
            return nil
        }
    }

    /// The plan without statuses (`planStatuses` adds them once, from the final plan of a pass).
    private func reconcilePlan(_ snapshot: ClusterSnapshot, _ egressPlan: EgressPlan) -> ReconcilePlan {
        ReconcilePlan(snapshot, egressPlan: egressPlan, suffix: settings.proxy.suffix, statuses: false)
    }

    /// Writes the statuses the last pass planned, a few at a time, with an Event for every transition. A status
    /// the cache already shows is skipped; one a newer pass replaced meanwhile stays pending for the next call.
    /// `written` is called after each write, so that a batch of thousands shows in the metrics as it goes. Returns
    /// how many statuses were written.
    @discardableResult
    func writeStatuses(written: @escaping @Sendable () -> Void = {}) async throws -> Int {
        let pending = pendingStatus.withLock { $0 }
        let updates = pending.sorted { $0.key < $1.key }.compactMap {
            name,
            status -> (String, EgressHost.Status, KubeObject, EgressHost.Status?)? in
            guard let object = caches.egressHosts.get(name: name), object.deletionTimestamp == nil else { return nil }
            // Decoded once: compared here, and the Event's "from" after the write.
            let current = EgressHostIndex.status(of: object)
            return current == status ? nil : (name, status, object, current ?? nil)
        }
        var unconverged = 0
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for (index, (name, status, object, old)) in updates.enumerated() {
                if index >= Self.statusConcurrency, try await group.next() == false { unconverged += 1 }
                group.addTask {
                    let converged = try await self.writeStatus(name: name, status)
                    written()
                    await self.events.recordTransitions(of: object, from: old, to: status)
                    return converged
                }
            }
            for try await converged in group where !converged { unconverged += 1 }
        }
        pendingStatus.withLock { current in
            for (name, status) in pending where current[name] == status { current[name] = nil }
        }
        // A write that left the status different from the plan would be planned, and written, again by the pass it
        // starts, and so on without end: it is not counted.
        return updates.count - unconverged
    }

    // MARK: - Reading

    /// The EgressHosts (those not being deleted) and their plan, paying only for what changed since the last pass.
    private func planEgressHosts(material: TLSMaterial) -> (hosts: [EgressHost], plan: EgressPlan) {
        // Taken out of the lock while this pass works on it, so that it is updated in place, not copied.
        var index = egressHostIndex.withLock { index in
            defer { index = EgressHostIndex() }
            return index
        }
        defer { egressHostIndex.withLock { [index] in $0 = index } }
        index.update(caches.egressHosts.delta(since: index.revision)) { object in
            do {
                return try object.decode(EgressHost.self)
            } catch {
                logger.warning(
                    "cannot decode EgressHost",
                    metadata: ["name": "\(object.name ?? "")", "error": "\(error)"]
                )
                return nil
            }
        }
        return index.plan(
            material: material,
            tlsMountPath: settings.proxy.tlsMountPath,
            suffix: settings.proxy.suffix
        )
    }

    /// The ConfigMaps and Secrets EgressHosts may reference, without the operator's own allow-list and TLS Secret:
    /// they are no one's CA bundle, they grow with the host count, and each write of them would otherwise look like
    /// new material and force a full re-plan.
    private func material() -> TLSMaterial {
        var material = TLSMaterial()
        for object in caches.configMaps.unorderedList() where object.name != settings.proxy.allowListConfigMapName {
            material.configMaps[object.name ?? ""] = object["data"]?.objectValue?.compactMapValues(\.stringValue) ?? [:]
        }
        for object in caches.secrets.unorderedList() where object.name != settings.proxy.tlsSecretName {
            let data = object["data"]?.objectValue ?? [:]
            material.secrets[object.name ?? ""] = data.compactMapValues { value in
                value.stringValue.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
            }
        }
        tlsMaterialCheck.withLock { $0.check(&material) }
        return material
    }

    /// What DNS routes now, and where the operator's rules live in this cluster.
    struct DNSState: Sendable {
        enum Mode: Sendable { case corefile, custom }
        var mode: Mode
        var corefileObject: KubeObject? = nil
        var corefile: String? = nil
        var corefileHosts: [String]
        var overrideHosts: [String]
        /// The override key's text as stored (rewritten when it differs from what the hosts give, e.g. written
        /// under other settings).
        var overrideSnippet: String
        var warning: String? = nil
        var suffixRules: Bool

        /// The hosts DNS routes. In suffix mode the one rule routes every name, so the proxy's applied allow-list
        /// says which of them are really reachable.
        func hosts(appliedAllowList: AllowList?) -> [String] {
            guard suffixRules else { return routed }
            return routesEveryName ? appliedAllowList?.hostNames ?? [] : []
        }

        var routesEveryName: Bool { suffixRules && routed == ["*"] }

        private var routed: [String] { mode == .corefile ? corefileHosts : overrideHosts }
    }

    private func currentDNS() throws -> DNSState {
        let coreDNS = settings.coreDNS
        let corefileObject = caches.corefileConfigMap.get(name: coreDNS.configMapName, namespace: coreDNS.namespace)
        let corefile = corefileObject?[path: "data", coreDNS.corefileKey]?.stringValue
        let custom = caches.customConfigMap.get(name: coreDNS.customConfigMapName, namespace: coreDNS.namespace)
        let editor = try options.corefileEditor()
        let imports = try corefile.map { try corefileImportsOverride($0, CorefileEditor.importsOverrideFiles) }
        let mode: DNSState.Mode
        switch coreDNS.mode {
        case .corefile: mode = .corefile
        case .custom: mode = .custom
        case .auto:
            // The Corefile says what CoreDNS loads: a `coredns-custom` it does not import (left over, or made for
            // another distribution) would hold rules CoreDNS never reads. Without a Corefile to read, its presence
            // is the only hint.
            mode = imports ?? (custom != nil) ? .custom : .corefile
        }
        if mode == .corefile && corefile == nil {
            throw OperatorError.coreDNSMissing(
                "ConfigMap \(coreDNS.namespace)/\(coreDNS.configMapName) with key \(coreDNS.corefileKey) not found"
            )
        }
        let snippet = custom?[path: "data", CoreDNSSettings.overrideKey]?.stringValue ?? ""
        var warning: String?
        if let corefile, try !corefileLoadsReload(corefile, CorefileEditor.loadsReload) {
            warning = "the Corefile has no `reload` plugin: CoreDNS applies changes only after a restart"
        }
        if mode == .custom, imports == false {
            warning =
                "the Corefile imports no *.override files: CoreDNS does not read the rules in "
                + "\(coreDNS.namespace)/\(coreDNS.customConfigMapName)"
        }
        return DNSState(
            mode: mode,
            corefileObject: corefileObject,
            corefile: corefile,
            corefileHosts: try corefile.map { try corefileHosts($0, editor.managedHosts(in:)) } ?? [],
            overrideHosts: try overrideHosts(snippet, editor.managedHosts(inOverrideSnippet:)),
            overrideSnippet: snippet,
            warning: warning,
            suffixRules: options.dnsRules == .suffix
        )
    }

    // MARK: - Writing

    /// Server-side applies `desired` unless the cache shows every field of it already in place.
    private func applyIfNeeded(_ desired: JSON) async throws -> Int {
        let resource = try Self.resource(of: desired)
        let name = desired["metadata"]?["name"]?.stringValue ?? ""
        let namespace = desired["metadata"]?["namespace"]?.stringValue
        let identity = "\(resource)/\(namespace ?? "")/\(name)"
        let cached = cache(for: resource)?.get(name: name, namespace: namespace)
        let firstTime = appliedOnce.withLock { !$0.contains(identity) }
        let removal = Self.removalPatch(cached?.json, desired)
        if !firstTime, let cached, removal == nil, Self.contains(cached.json, desired) {
            return 0
        }
        // Sent as the text it serializes to: parsing an allow-list of thousands of hosts only to encode it again was
        // a visible share of a pass. Force: these objects are ours; a hand edit to a field we set is reverted, not a
        // conflict.
        try await client.apply(
            resource,
            name: name,
            namespace: namespace,
            json: Data(desired.serialized.utf8),
            fieldManager: options.fieldManager,
            force: true
        )
        appliedOnce.withLock { _ = $0.insert(identity) }
        logger.debug("applied", metadata: ["object": "\(identity)"])
        guard let removal else { return 1 }
        _ = try await client.patch(
            resource,
            name: name,
            namespace: namespace,
            patch: removal,
            fieldManager: options.fieldManager
        )
        logger.info("removed what others added to fields the operator sets whole", metadata: ["object": "\(identity)"])
        return 2
    }

    private func cache(for resource: Resource) -> Informer? {
        switch resource {
        case .configMaps: caches.configMaps
        case .secrets: caches.secrets
        case .networkPolicies: caches.networkPolicies
        default: caches.owned[resource]
        }
    }

    private func tlsSecret(_ files: [String: String]) -> JSON {
        Kube.object(
            "v1",
            "Secret",
            metadata: Kube.metadata(
                name: settings.proxy.tlsSecretName,
                namespace: settings.namespace,
                labels: ProxyWorkload.ownedLabels(settings)
            ),
            [("type", "Opaque"), ("data", JSON(files.mapValues { Data($0.utf8).base64EncodedString() }))]
        )
    }

    private func allowListConfigMap(_ allowList: AllowList) -> JSON {
        Kube.object(
            "v1",
            "ConfigMap",
            metadata: Kube.metadata(
                name: settings.proxy.allowListConfigMapName,
                namespace: settings.namespace,
                labels: ProxyWorkload.ownedLabels(settings)
            ),
            [("data", [ProxySettings.allowListKey: .string(encoded(allowList))])]
        )
    }

    private func encoded(_ allowList: AllowList) -> String {
        allowListEncoding.withLock { last in
            if let last, last.list == allowList { return last.text }
            let encoding = allowList.encoding(reusing: last)
            last = encoding
            return encoding.text
        }
    }

    private func applyLockdownPolicies() async throws -> Int {
        guard let namespaces = caches.lockdownNamespaces else { return 0 }
        var writes = 0
        for namespace in namespaces.list() where namespace.deletionTimestamp == nil && !isOwnNamespace(namespace) {
            writes += try await applyIfNeeded(ProxyWorkload.lockdownPolicy(namespace: namespace.name ?? "", settings))
        }
        return writes
    }

    /// The operator's namespace is never locked down, labelled or not: the proxy there is the way out.
    private func isOwnNamespace(_ namespace: KubeObject) -> Bool { namespace.name == settings.namespace }

    /// Owned objects (by label) that the plan no longer wants: deleted, with a precondition so that an object
    /// recreated meanwhile is not removed by mistake.
    private func deleteUnwantedOwnedObjects() async throws -> Int {
        var wanted = Set(
            ProxyWorkload.objects(settings).map {
                "\($0["kind"]?.stringValue ?? "")/\(settings.namespace)/\(settings.proxy.name)"
            }
        )
        for namespace in caches.lockdownNamespaces?.list() ?? [] where !isOwnNamespace(namespace) {
            wanted.insert("NetworkPolicy/\(namespace.name ?? "")/\(settings.lockdown.policyName)")
        }
        var deletes = 0
        for informer in Array(caches.owned.values) + [caches.networkPolicies] {
            for object in informer.list() {
                let identity = "\(informer.resource.kind)/\(object.namespace ?? "")/\(object.name ?? "")"
                guard !wanted.contains(identity), object.deletionTimestamp == nil else { continue }
                do {
                    try await client.delete(
                        informer.resource,
                        name: object.name ?? "",
                        namespace: object.namespace,
                        preconditions: Preconditions(uid: object.uid)
                    )
                    logger.info("deleted unwanted owned object", metadata: ["object": "\(identity)"])
                    deletes += 1
                } catch let error as KubeError where error.code == .notFound || error.code == .conflict {
                    // Gone already, or replaced by a newer object (uid precondition): the next pass sees which.
                    continue
                }
            }
        }
        return deletes
    }

    private func writeDNS(_ hosts: [String], current: DNSState) async throws -> Int {
        let editor = try options.corefileEditor()
        let coreDNS = settings.coreDNS
        var writes = 0
        // The Corefile block: the hosts in corefile mode; removed in custom mode (the mode may have changed).
        if let corefile = current.corefile, let object = current.corefileObject {
            let edit = CorefileEdit(hosts: current.mode == .corefile ? hosts : [], corefile: corefile)
            let result = try makeEdit(edit, editor)
            let (edited, managedHosts) = (result.corefile, result.managedHosts)
            if edited != corefile {
                // The next pass reads back this text: the editor reports the hosts it parses back to, and applying
                // the same hosts again changes nothing (tests hold the editor to both).
                corefileHosts.remember(edited, managedHosts)
                corefileEdit.remember(CorefileEdit(hosts: edit.hosts, corefile: edited), result)
                // The managed block never holds an `import`, so the edit cannot change whether the Corefile has one.
                if let imports = corefileImportsOverride.cached(corefile) {
                    corefileImportsOverride.remember(edited, imports)
                }
                // Nor a `reload`.
                if let reload = corefileLoadsReload.cached(corefile) { corefileLoadsReload.remember(edited, reload) }
                // Replaced whole from the cached object (everything else in it as the server has it), guarded by
                // its resourceVersion: with thousands of rules the API server takes a third of the time a merge
                // patch of the same text costs it, which would re-encode and merge the whole object.
                var updated = object
                updated["data"]?[coreDNS.corefileKey] = .string(edited)
                let written = try await client.replaceReturningVersion(
                    .configMaps,
                    updated,
                    fieldManager: options.fieldManager
                )
                writes += 1
                await waitForCache(caches.corefileConfigMap, toSee: object.key, at: written)
            }
        }
        // The override key: the hosts in custom mode; released in corefile mode.
        let snippet = current.mode == .custom ? try editor.overrideSnippet(hosts: hosts) : ""
        let customExists =
            caches.customConfigMap.get(name: coreDNS.customConfigMapName, namespace: coreDNS.namespace) != nil
        if snippet != current.overrideSnippet || (current.mode == .custom && !customExists) {
            let data: JSON = snippet.isEmpty ? [:] : [CoreDNSSettings.overrideKey: .string(snippet)]
            let object = Kube.object(
                "v1",
                "ConfigMap",
                metadata: Kube.metadata(name: coreDNS.customConfigMapName, namespace: coreDNS.namespace),
                [("data", data)]
            )
            // Only our key is in the apply: other keys of coredns-custom belong to others and stay untouched.
            _ = try await client.apply(
                .configMaps,
                try KubeObject(JSONValue(parsing: Data(object.serialized.utf8))),
                fieldManager: options.fieldManager,
                force: true
            )
            writes += 1
        }
        return writes
    }

    /// The Corefile with `edit.hosts` in its managed block, remembered for the next call with the same input. The
    /// last edit (usually the text we wrote, read back) lets the editor skip parsing a Corefile it wrote itself.
    private func makeEdit(_ edit: CorefileEdit, _ editor: CorefileEditor) throws -> CorefileEditor.Edit {
        let previous = corefileEdit.lastOutput
        return try corefileEdit(edit) { try editor.edit(hosts: $0.hosts, in: $0.corefile, after: previous) }
    }

    /// Read-your-writes for the Corefile: the next pass edits it under a resourceVersion precondition, so it must
    /// start from what we just wrote, not from a cache one event behind (that would be a needless 409 and retry).
    /// Bounded: if the watch is slow, the precondition still protects the edit.
    private func waitForCache(_ informer: Informer, toSee key: ObjectKey, at resourceVersion: String) async {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        while clock.now < deadline, !Task.isCancelled {
            if informer.get(key)?.resourceVersion == resourceVersion { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Applies `status`; returns whether the stored status is now the planned one. It is not when another field
    /// manager owns a status field the operator stopped setting (a hand edit through the status subresource, say):
    /// server-side apply leaves such a field in place.
    private func writeStatus(name: String, _ status: EgressHost.Status) async throws -> Bool {
        var object = KubeObject(apiVersion: EgressHost.apiVersion, kind: EgressHost.kind, name: name)
        object["status"] = try JSONValue(encoding: status)
        do {
            let applied = try await client.applyStatus(
                Caches.egressHostResource,
                object,
                fieldManager: options.fieldManager,
                force: true
            )
            guard EgressHostIndex.status(of: applied) == .some(status) else {
                logger.warning(
                    "the EgressHost's status keeps fields the operator does not set, owned by another field manager",
                    metadata: ["name": "\(name)"]
                )
                return false
            }
        } catch let error as KubeError where error.code == .notFound {
            // Deleted meanwhile: nothing to report on.
        }
        return true
    }

    // MARK: - Helpers

    static func resource(of object: JSON) throws -> Resource {
        switch object["kind"]?.stringValue {
        case "ServiceAccount": .serviceAccounts
        case "Deployment": .deployments
        case "Service": .services
        case "PodDisruptionBudget": .podDisruptionBudgets
        case "HorizontalPodAutoscaler": .horizontalPodAutoscalers
        case "NetworkPolicy": .networkPolicies
        case "ConfigMap": .configMaps
        case "Secret": .secrets
        case let kind: throw OperatorError.internal("no resource for kind \(kind ?? "nil")")
        }
    }

    /// Fields whose value the operator sets whole: a key or element another field manager adds there changes what
    /// the object does (a selector label points the Service at other pods, a data key is mounted into the proxy, a
    /// port opens), and server-side apply keeps what another manager owns, so a pass would apply again forever and
    /// never remove it. A merge patch does (`removalPatch`).
    static let wholeFields: [String: [[String]]] = [
        "ConfigMap": [["data"], ["binaryData"]],
        "Secret": [["data"]],
        "Service": [["spec", "selector"], ["spec", "ports"]],
        // A `matchExpressions` added beside the labels narrows the selection as surely as a label does.
        "NetworkPolicy": [["spec", "podSelector"], ["spec", "podSelector", "matchLabels"]],
    ]

    /// A JSON merge patch taking out of `actual` what it has beyond `desired` in its whole fields (keys set to
    /// null, a list of another length replaced by the operator's, a field the operator does not set at all
    /// removed); nil when there is nothing to take out.
    static func removalPatch(_ actual: JSONValue?, _ desired: JSON) -> JSONValue? {
        guard let actual, let kind = desired["kind"]?.stringValue, let paths = wholeFields[kind] else { return nil }
        var patch: JSONValue? = nil
        for path in paths {
            let wanted = path.reduce(Optional(desired), { $0?[$1] })
            guard let present = path.reduce(Optional(actual), { $0?[$1] }), present != .null else { continue }
            let change: JSONValue
            switch wanted {
            case nil:
                change = .null
            case .object(let members)?:
                let extras = (present.objectValue?.keys ?? []).filter { key in !members.contains { $0.key == key } }
                guard !extras.isEmpty else { continue }
                change = .object(JSONObject(Dictionary(uniqueKeysWithValues: extras.map { ($0, .null) })))
            case .array(let values)?:
                guard let items = present.arrayValue, items.count != values.count,
                    let value = try? JSONDecoder().decode(JSONValue.self, from: Data(wanted!.serialized.utf8))
                else { continue }
                change = value
            default:
                continue
            }
            patch = merged(patch, path[...], change)
        }
        return patch
    }

    /// `patch` with `value` at `path`, objects merged member by member (on the way and at the end).
    private static func merged(_ patch: JSONValue?, _ path: ArraySlice<String>, _ value: JSONValue) -> JSONValue {
        guard let key = path.first else {
            guard let existing = patch?.objectValue, let added = value.objectValue else { return value }
            var members = existing.mapValues { $0 }
            for (name, member) in added.mapValues({ $0 }) { members[name] = merged(members[name], [], member) }
            return .object(JSONObject(members))
        }
        var members = patch?.objectValue.map { $0.mapValues { $0 } } ?? [:]
        members[key] = merged(members[key], path.dropFirst(), value)
        return .object(JSONObject(members))
    }

    /// Whether `actual` already has every field of `desired` (extra fields, e.g. server defaults, are fine).
    static func contains(_ actual: JSONValue?, _ desired: JSON) -> Bool {
        switch desired {
        case .null: return actual == nil || actual == .null
        case .bool(let value): return actual == .bool(value)
        case .int(let value): return actual?.intValue == value
        case .string(let value): return actual?.stringValue == value
        case .array(let values):
            guard let actualValues = actual?.arrayValue, actualValues.count == values.count else { return false }
            return zip(actualValues, values).allSatisfy { contains($0, $1) }
        case .object(let members):
            guard let actualMembers = actual?.objectValue else { return members.isEmpty && actual == nil }
            return members.allSatisfy { contains(actualMembers[$0.key], $0.value) }
        }
    }
}
