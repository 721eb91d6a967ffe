import AsyncHTTPClient
import Foundation
import KubeAPI
import Logging
import Manifests
import NIOCore
import Synchronization

/// Asks the ready proxy pods what they have loaded (`GET /allowlist` on each pod's admin port), while some
/// programmed host waits for them, and starts a pass whenever the answers change.
///
/// The kubelet copies a new allow-list into running pods at its next sync of their volumes, typically within a
/// minute; until then the pods answer 403 for a host whose ConfigMap entry and DNS rule are written. This is how
/// `Ready` comes to mean "the proxies route it", which `kubectl wait --for=condition=Ready` users rely on. It runs
/// only while hosts wait, so a converged cluster makes no requests.
final class ProxyLoadMonitor: Sendable {
    /// How long a pod has to answer, and the pause between rounds while hosts wait.
    struct Timing: Sendable {
        var requestTimeout: TimeAmount = .seconds(2)
        var interval: Duration = .seconds(2)
    }

    private let pods: Informer
    private let timing: Timing
    private let logger: Logger
    private let state = Mutex(State())

    /// The largest answer read from a pod: a report lists every host of the allow-list, which a ConfigMap caps at
    /// 1 MiB.
    static let maximumReportBytes = 8 << 20

    private struct State {
        var load = ProxyLoad()
        var awaiting = false
        /// Counts the waits: a round's answers are kept only if no wait ended (and began again) while it asked.
        var wait = 0
        /// Wakes the running loop when hosts start waiting. One per `run`: a leader that loses and regains the lease
        /// runs the loop again, and a stream ends for good when the task iterating it is cancelled.
        var wake: AsyncStream<Void>.Continuation?
    }

    init(pods: Informer, timing: Timing = Timing(), logger: Logger) {
        self.pods = pods
        self.timing = timing
        self.logger = logger
    }

    /// The answers of the last round (no pods before the first).
    var current: ProxyLoad { state.withLock { $0.load } }

    /// Called after each pass with whether some host waits for the pods. When none does the answers are dropped:
    /// nobody asks the pods then, so they would go stale (a host deleted, unloaded and made again as it was would
    /// find itself listed), and the next wait starts from answers asked for it.
    func setAwaiting(_ awaiting: Bool) {
        let wake = state.withLock { state in
            defer { state.awaiting = awaiting }
            if !awaiting { state.load = ProxyLoad() }
            if awaiting && !state.awaiting { state.wait += 1 }
            return awaiting && !state.awaiting ? state.wake : nil
        }
        wake?.yield()
    }

    /// Asks the pods in rounds while hosts wait; `changed` starts a pass when the answers differ from the last ones.
    func run(changed: @escaping @Sendable () async -> Void) async {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.wake = wake }
        defer {
            state.withLock { $0.wake = nil }
            wake.finish()
        }
        var iterator = wakeups.makeAsyncIterator()
        while !Task.isCancelled {
            guard state.withLock({ $0.awaiting }) else {
                guard await iterator.next() != nil else { return }
                continue
            }
            let wait = state.withLock { $0.wait }
            let load = await ask(Self.readyPods(pods.list()))
            let different = state.withLock { state in
                // Answers to a round that outlived its wait are not kept (see `setAwaiting`).
                guard state.awaiting, state.wait == wait else { return false }
                defer { state.load = load }
                return state.load != load
            }
            if different { await changed() }
            try? await Task.sleep(for: timing.interval)
        }
    }

    /// A proxy pod that serves traffic: Ready, not being deleted, with an IP and an `admin` port.
    struct ReadyPod: Sendable, Equatable {
        var name: String
        var url: String
    }

    static func readyPods(_ objects: [KubeObject]) -> [ReadyPod] {
        objects.compactMap { pod in
            guard pod.deletionTimestamp == nil,
                let name = pod.name,
                let ip = pod[path: "status", "podIP"]?.stringValue, !ip.isEmpty,
                let conditions = pod[path: "status", "conditions"]?.arrayValue,
                conditions.contains(where: {
                    $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True"
                }),
                let port = adminPort(of: pod)
            else { return nil }
            let host = ip.contains(":") ? "[\(ip)]" : ip
            return ReadyPod(name: name, url: "http://\(host):\(port)/allowlist")
        }
    }

    private static func adminPort(of pod: KubeObject) -> Int? {
        for container in pod[path: "spec", "containers"]?.arrayValue ?? [] {
            for port in container["ports"]?.arrayValue ?? [] where port["name"]?.stringValue == "admin" {
                return port["containerPort"]?.intValue
            }
        }
        return nil
    }

    private func ask(_ pods: [ReadyPod]) async -> ProxyLoad {
        await withTaskGroup(of: ProxyLoad.Pod.self) { group in
            for pod in pods {
                group.addTask { ProxyLoad.Pod(name: pod.name, answer: await self.ask(pod)) }
            }
            var answers: [ProxyLoad.Pod] = []
            for await answer in group { answers.append(answer) }
            return ProxyLoad(pods: answers)
        }
    }

    private func ask(_ pod: ReadyPod) async -> ProxyLoad.Answer {
        do {
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: pod.url),
                timeout: timing.requestTimeout
            )
            let body = try await response.body.collect(upTo: Self.maximumReportBytes)
            if response.status == .notFound { return .noReport }
            guard response.status == .ok else {
                return .unanswered("GET \(pod.url) answered \(response.status.code)")
            }
            return .init(try ProxyLoadReport.decode(body.readableBytesView))
        } catch {
            logger.debug(
                "cannot ask a proxy pod what it loaded",
                metadata: ["pod": "\(pod.name)", "error": "\(error)"]
            )
            return .unanswered("cannot ask GET \(pod.url): \(Self.describe(error))")
        }
    }

    /// The words a status message needs (`connection refused`, `timed out`), not NIO's full error descriptions.
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .connectTimeout {
            return "timed out"
        }
        return "\(error)"
    }
}
