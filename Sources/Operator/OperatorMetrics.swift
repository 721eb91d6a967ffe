import Metrics

/// The operator's metrics (swift-metrics API; exported by swift-prometheus from the admin server).
struct OperatorMetrics: Sendable {
    let reconcileSuccess = Counter(label: "egress_operator_reconciles_total", dimensions: [("result", "success")])
    let reconcileRetry = Counter(label: "egress_operator_reconciles_total", dimensions: [("result", "error")])
    let reconcileTerminal = Counter(label: "egress_operator_reconciles_total", dimensions: [("result", "terminal")])
    let reconcileDuration = Timer(label: "egress_operator_reconcile_duration_seconds", preferredDisplayUnit: .seconds)
    let apiWrites = Counter(label: "egress_operator_api_writes_total")
    let queueDepth = Gauge(label: "egress_operator_workqueue_depth")
    let managedHosts = Gauge(label: "egress_operator_managed_hosts")
    let leader = Gauge(label: "egress_operator_leader")
}
