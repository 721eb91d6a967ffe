import KubeAPI
import Logging
import Manifests

/// Kubernetes Events on EgressHosts: every change applied or refused shows up in `kubectl describe eh`.
struct EventRecorder: Sendable {
    let client: KubeClient
    let component: String
    let instance: String
    let logger: Logger

    /// One Event per condition whose status or reason changed.
    func recordTransitions(of object: KubeObject, from old: EgressHost.Status?, to new: EgressHost.Status) async {
        let before = Dictionary((old?.conditions ?? []).map { ($0.type, $0) }) { first, _ in first }
        for condition in new.conditions ?? [] {
            let previous = before[condition.type]
            guard previous?.status != condition.status || previous?.reason != condition.reason else { continue }
            // Pending states are transient: they would only be noise in `describe`.
            guard condition.reason != "Pending" && condition.reason != "NotAccepted" else { continue }
            logger.info(
                "condition changed",
                metadata: [
                    "egresshost": "\(object.name ?? "")", "condition": "\(condition.type)",
                    "status": "\(condition.status.rawValue)", "reason": "\(condition.reason)",
                ]
            )
            let warning =
                condition.type == "InsecureSkipVerify" || (condition.status == .false && condition.type == "Accepted")
                || condition.reason == "ProxyUnavailable"
            await record(object, warning ? .warning : .normal, reason: condition.reason, message: condition.message)
        }
    }

    func record(_ object: KubeObject, _ type: EventType, reason: String, message: String) async {
        do {
            try await client.createEvent(
                regarding: ObjectReference(object),
                type: type,
                reason: reason,
                message: message,
                reportingComponent: component,
                reportingInstance: instance
            )
        } catch {
            // Events are best effort: never fail a reconcile for one.
            logger.debug("event not recorded", metadata: ["error": "\(error)", "reason": "\(reason)"])
        }
    }
}
