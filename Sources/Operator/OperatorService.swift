import Foundation
import KubeAPI
import Logging
import Manifests
import Metrics
import ServiceLifecycle
import Synchronization

/// The operator as a `Service`: informers feed a work queue, one worker reconciles while this replica leads.
///
/// Every informer event enqueues the same key, because each pass computes the whole desired state: a burst of a
/// thousand EgressHost creations coalesces into a few passes (and a few Corefile writes), not a thousand.
public final class OperatorService: Service, Sendable {
    /// What a worker does: bring the cluster's configuration (proxy, allow-list, DNS) to the desired state, or
    /// write the statuses the last configuration pass planned. Two keys, two workers: status writes for thousands
    /// of hosts never delay the next configuration change.
    enum WorkKey: Hashable, Sendable {
        case configuration
        case status
    }

    let client: KubeClient
    let options: OperatorOptions
    let logger: Logger
    let metrics: OperatorMetrics
    private let queue = WorkQueue<WorkKey>()
    private let heapTrim = HeapTrim()
    private let state = Mutex(State())

    private struct State {
        var caches: Caches?
        var leading = false
        var passes = 0
    }

    /// - Parameter metricsFactory: where the operator's metrics go (the global metrics system by default).
    public init(
        client: KubeClient,
        options: OperatorOptions,
        logger: Logger,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.client = client
        self.options = options
        self.logger = logger
        self.metrics = OperatorMetrics(factory: metricsFactory)
    }

    /// nil when ready (caches synced); otherwise why not, for `/readyz`.
    public var notReadyReason: String? {
        state.withLock { state in
            guard let caches = state.caches else { return "starting" }
            return caches.synced ? nil : "caches not synced"
        }
    }

    public var isLeader: Bool { state.withLock { $0.leading } }

    /// Reconcile passes completed by this process (for tests and logs).
    public var passes: Int { state.withLock { $0.passes } }

    public func run() async throws {
        let servesPDB = await discoverPDB()
        let caches = Caches(
            client: client,
            settings: options.settings,
            servesPDB: servesPDB,
            watchesProxyPods: options.confirmProxyLoad,
            logger: logger
        )
        state.withLock { $0.caches = caches }
        let proxyLoad = caches.proxyPods.map { ProxyLoadMonitor(pods: $0, logger: logger) }
        let reconciler = Reconciler(
            client: client,
            options: options,
            caches: caches,
            servesPDB: servesPDB,
            proxyLoad: proxyLoad,
            events: EventRecorder(
                client: client,
                component: options.fieldManager,
                instance: options.identity,
                logger: logger
            ),
            logger: logger
        )
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for informer in caches.all {
                    group.addTask { await informer.run() }
                    // Echoes of our own writes do start a pass: the writes of one step are what trigger the next
                    // (a removed host leaves DNS in one pass and the allow-list in the next).
                    let ignoring = informer === caches.egressHosts ? Self.onlyStatusChanged : nil
                    group.addTask {
                        for await _ in informer.changes(ignoring: ignoring) { await self.queue.add(.configuration) }
                    }
                }
                group.addTask { await self.resync() }
                group.addTask {
                    for informer in caches.all { try? await informer.waitForSync() }
                    guard !Task.isCancelled else { return }
                    self.logger.info("caches synced", metadata: ["informers": "\(caches.all.count)"])
                    await self.lead { await self.work(reconciler, proxyLoad: proxyLoad) }
                }
            }
        }
        await queue.shutdown()
    }

    /// A write of an EgressHost's status alone (mostly the status worker's own) changes nothing a configuration
    /// pass plans from, so it starts none, as controller-runtime's `GenerationChangedPredicate` would have it. Any
    /// other difference in metadata (labels, annotations, deletion) still counts.
    static func onlyStatusChanged(_ old: KubeObject, _ new: KubeObject) -> Bool {
        guard old["spec"] == new["spec"] else { return false }
        var (oldMetadata, newMetadata) = (old.metadata, new.metadata)
        oldMetadata["resourceVersion"] = nil
        newMetadata["resourceVersion"] = nil
        return oldMetadata == newMetadata
    }

    private func lead(_ work: @escaping @Sendable () async -> Void) async {
        guard options.leaderElection else {
            setLeading(true)
            await work()
            return
        }
        let elector = LeaderElector(
            client: client,
            namespace: options.settings.namespace,
            name: options.leaseName,
            identity: options.identity,
            timing: .init(
                leaseDuration: options.leaseDuration,
                renewDeadline: options.renewDeadline,
                retryPeriod: options.retryPeriod
            ),
            logger: logger,
            onLeadershipChange: { self.setLeading($0) }
        )
        await elector.run(lead: work)
    }

    private func setLeading(_ leading: Bool) {
        state.withLock { $0.leading = leading }
        metrics.leader.record(leading ? 1 : 0)
        // Only the leader plans: a replica that stops leading must not keep reporting its last counts.
        if !leading { metrics.recordEgressHosts([:]) }
    }

    /// The worker: one pass at a time, with the queue deciding retries.
    private func work(_ reconciler: Reconciler, proxyLoad: ProxyLoadMonitor?) async {
        // A new leader starts from a full pass, and with no statuses planned in an earlier term: another leader
        // may have written newer ones since.
        reconciler.forgetPendingStatuses()
        await queue.add(.configuration)
        await withDiscardingTaskGroup { group in
            if let proxyLoad {
                // Only the leader asks the proxy pods: its passes are the ones that use the answers.
                group.addTask { await proxyLoad.run { await self.queue.add(.configuration) } }
            }
            for _ in 0..<2 {
                group.addTask { await self.worker(reconciler) }
            }
        }
    }

    private func worker(_ reconciler: Reconciler) async {
        await withDiscardingTaskGroup { group in
            while let key = await queue.next() {
                guard !Task.isCancelled else {
                    // Hand the key back, or it stays "processing" forever and a later term (after losing and
                    // regaining the lease) could never process it again.
                    _ = await queue.done(key, .success)
                    break
                }
                let outcome = await process(key, reconciler)
                let action = await queue.done(key, outcome)
                let depth = await queue.depth
                metrics.queueDepth.record(depth)
                if depth == 0 { heapTrim.queueWentIdle() }
                if case .requeue(let delay) = action {
                    group.addTask {
                        try? await Task.sleep(for: delay)
                        await self.queue.add(key)
                    }
                }
            }
            group.cancelAll()
        }
    }

    private func process(_ key: WorkKey, _ reconciler: Reconciler) async -> WorkQueueState<WorkKey>.Outcome {
        switch key {
        case .configuration:
            return await reconcileOnce(reconciler)
        case .status:
            do {
                let written = try await reconciler.writeStatuses { [metrics] in metrics.apiWrites.increment() }
                // Status writes start no pass (`onlyStatusChanged`), so their echoes would pile up in the
                // EgressHost cache for the next change to absorb: thousands after a burst. One pass after the batch
                // absorbs them while nothing waits on it, and writes nothing if nothing else changed.
                if written > 0 { await queue.add(.configuration) }
                return .success
            } catch is CancellationError {
                return .success
            } catch {
                logger.warning("status write failed; retrying with backoff", metadata: ["error": "\(error)"])
                return Self.retry(after: error)
            }
        }
    }

    private func reconcileOnce(_ reconciler: Reconciler) async -> WorkQueueState<WorkKey>.Outcome {
        let clock = ContinuousClock()
        let start = clock.now
        defer {
            let elapsed = start.duration(to: clock.now).components
            metrics.reconcileDuration.recordNanoseconds(
                elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
            )
        }
        do {
            let summary = try await reconciler.reconcile()
            state.withLock { $0.passes += 1 }
            metrics.reconcileSuccess.increment()
            metrics.apiWrites.increment(by: summary.writes)
            metrics.managedHosts.record(summary.managedHosts)
            metrics.recordEgressHosts(summary.hostsByReadiness)
            if summary.statusPending { await queue.add(.status) }
            if summary.writes > 0 {
                logger.info(
                    "reconciled",
                    metadata: ["writes": "\(summary.writes)", "hosts": "\(summary.managedHosts)"]
                )
            }
            return .success
        } catch let error as CorefileError {
            // The Corefile is not ours to fix: report it and wait for someone to change it.
            metrics.reconcileTerminal.increment()
            logger.error("cannot edit the CoreDNS Corefile", metadata: ["error": "\(error)"])
            if let counts = reconciler.takeBlockedHostsByReadiness() { metrics.recordEgressHosts(counts) }
            if reconciler.hasPendingStatus { await queue.add(.status) }
            return .terminal
        } catch is CancellationError {
            return .success
        } catch {
            metrics.reconcileRetry.increment()
            logger.warning("reconcile failed; retrying with backoff", metadata: ["error": "\(error)"])
            if let counts = reconciler.takeBlockedHostsByReadiness() { metrics.recordEgressHosts(counts) }
            if reconciler.hasPendingStatus { await queue.add(.status) }
            return Self.retry(after: error)
        }
    }

    /// A retry, no sooner than the API server asked for (`Retry-After`).
    static func retry(after error: any Error) -> WorkQueueState<WorkKey>.Outcome {
        if let after = (error as? KubeError)?.retryAfter { return .throttled(retryAfter: after) }
        return .retry
    }

    private func resync() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: options.resyncPeriod)
            await queue.add(.configuration)
        }
    }

    /// `policy/v1` PodDisruptionBudgets are not served by old clusters (1.20): skip the PDB there, and say so.
    private func discoverPDB() async -> Bool {
        do {
            let served = try await client.isServed(apiVersion: "policy/v1", kind: "PodDisruptionBudget")
            if !served {
                logger.warning("policy/v1 PodDisruptionBudget is not served by this cluster: the proxy gets no PDB")
            }
            return served
        } catch {
            logger.warning("API discovery failed; assuming policy/v1 is served", metadata: ["error": "\(error)"])
            return true
        }
    }
}
