import Manifests
import Metrics

/// The operator's metrics (swift-metrics API; exported by swift-prometheus from the admin server), made through an
/// injected factory: the executable's is the global one, a test's reads its own registry.
struct OperatorMetrics: Sendable {
    let reconcileSuccess: Counter
    let reconcileRetry: Counter
    let reconcileTerminal: Counter
    let reconcileDuration: Timer
    let apiWrites: Counter
    let queueDepth: Gauge
    let managedHosts: Gauge
    let leader: Gauge
    /// `egress_operator_egresshosts{reason}`: EgressHosts by why they are not Ready (`Ready` when they are), as the
    /// leader last planned them; zero on a replica that does not lead, so a summed or max'd series stays true.
    private let egressHosts: [String: Gauge]

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        func reconciles(_ result: String) -> Counter {
            Counter(label: "egress_operator_reconciles_total", dimensions: [("result", result)], factory: factory)
        }
        reconcileSuccess = reconciles("success")
        reconcileRetry = reconciles("error")
        reconcileTerminal = reconciles("terminal")
        reconcileDuration = Timer(
            label: "egress_operator_reconcile_duration_seconds",
            preferredDisplayUnit: .seconds,
            factory: factory
        )
        apiWrites = Counter(label: "egress_operator_api_writes_total", factory: factory)
        queueDepth = Gauge(label: "egress_operator_workqueue_depth", factory: factory)
        managedHosts = Gauge(label: "egress_operator_managed_hosts", factory: factory)
        leader = Gauge(label: "egress_operator_leader", factory: factory)
        egressHosts = Dictionary(
            uniqueKeysWithValues: ReconcilePlan.readinessReasons.map { reason in
                (
                    reason,
                    Gauge(label: "egress_operator_egresshosts", dimensions: [("reason", reason)], factory: factory)
                )
            }
        )
    }

    /// Records every reason, those with no host as zero.
    func recordEgressHosts(_ byReadiness: [String: Int]) {
        for (reason, gauge) in egressHosts { gauge.record(byReadiness[reason] ?? 0) }
    }
}
