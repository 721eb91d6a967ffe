import ControlPlaneTesting
import Foundation
import KubeAPI
import Logging
import Manifests
import Observability
import Prometheus
import Proxy
import Synchronization
import XCTest

@testable import Operator

/// `Ready` waits for the proxy pods, against the real API server and a real proxy (its allow-list store and admin
/// server, in this process). No kubelet runs here, so the test plays its two parts: it creates the proxy pod objects
/// and reports them ready with a loopback IP, and it copies the allow-list ConfigMap into the proxy's file when it
/// chooses, as the kubelet does at its next sync.
final class ProxyLoadTests: OperatorTestCase {
    /// While the pod has not loaded a new host it is Programmed but not Ready (`Propagating`, naming the pod); once
    /// the pod loads it, Ready. A Ready host stays Ready while the pods catch up with a later one, and an unreachable
    /// pod holds back only new hosts, with the reason in their message, until it is no longer a ready pod.
    func testReadyWaitsUntilEveryReadyProxyPodHasLoadedTheHost() async throws {
        try await createCoreDNS()
        var options = self.options()
        options.confirmProxyLoad = true
        try await startOperator(options)
        try await setProxyAvailable(1)
        let proxy = try await startLocalProxy()
        let first = uniqueName("proxy")
        try await createProxyPod(first, adminPort: proxy.adminPort)
        try await sync(proxy)
        // A pod of a proxy from before the report (an admin port without /allowlist) holds nothing back.
        let older = try await AdminServer.bind(host: "127.0.0.1", port: 0, registry: .init(), readiness: { nil })
        addTeardownBlock { await older.close() }
        let olderPod = uniqueName("proxy")
        try await createProxyPod(olderPod, adminPort: older.localAddress.port!)

        // Written to the allow-list and DNS, but the pod has the list from before: not Ready, and it stays so.
        let github = uniqueName("github")
        let githubHost = uniqueHost("api")
        try await createEgressHost(github, host: githubHost)
        try await waitForCondition(github, "Programmed", .true)
        try await waitForCondition(github, "Ready", .false, reason: "Propagating")
        // The first status may be written before the pods' first answers ("waiting for the proxy pods to report").
        try await eventually("the pod that lacks the host to be named") {
            try await self.ready(github)?.message.contains("\(first) has not loaded it yet") == true
        }
        let waiting = try await ready(github)?.message ?? ""
        XCTAssertFalse(waiting.contains(olderPod), waiting)
        let (allowed, routed) = (try await allowListHosts(), try await corefileHosts())
        XCTAssertTrue(allowed.contains(githubHost) && routed.contains(githubHost))
        for _ in 0..<3 {
            try await Task.sleep(for: .seconds(1))
            let stillWaiting = try await ready(github)?.status
            XCTAssertEqual(stillWaiting, .false, "Ready before the proxy pod loaded the host")
        }

        // The kubelet's sync: the pod has it now.
        try await sync(proxy)
        try await waitForCondition(github, "Ready", .true, reason: "Ready")

        // A second pod that cannot be asked (nothing listens on its admin port) holds back a new host, not the
        // Ready one.
        let closedPort = try freePort()
        let second = uniqueName("proxy")
        try await createProxyPod(second, adminPort: closedPort)
        let stripe = uniqueName("stripe")
        let stripeHost = uniqueHost("api")
        try await createEgressHost(stripe, host: stripeHost)
        try await waitForCondition(stripe, "Programmed", .true)
        try await sync(proxy)
        try await eventually("the unreachable pod to be named in the status") {
            let message = try await self.ready(stripe)?.message ?? ""
            return message.contains(
                "\(second): cannot ask GET http://127.0.0.1:\(closedPort)/allowlist: connection refused"
            )
                && !message.contains(first) && !message.contains(olderPod)
        }
        let (stripeReady, githubReady) = (try await ready(stripe), try await ready(github))
        XCTAssertEqual(stripeReady?.reason, "Propagating")
        XCTAssertEqual(githubReady?.status, .true, "a Ready host lost Ready while a new one propagates")

        // Not a ready pod any more (its readiness probe fails): the pod that has the host is the only one asked.
        try await setPodReady(second, false)
        try await waitForCondition(stripe, "Ready", .true, reason: "Ready")
        let stillReady = try await ready(github)?.status
        XCTAssertEqual(stillReady, .true)

        // A new spec for a Ready host: not Ready for it until the pod has the new version of its entry.
        _ = try await client.patch(Self.egressHosts, name: github, patch: ["spec": ["port": 8443]], type: .merge)
        try await waitForCondition(github, "Ready", .false, reason: "Propagating")
        // Nothing waited just before, so the pods are asked afresh: the first status may precede their answers.
        try await eventually("the pod with the earlier version of the entry to be named") {
            try await self.ready(github)?.message.contains("\(first) has an earlier version of it") == true
        }
        try await sync(proxy)
        try await waitForCondition(github, "Ready", .true, reason: "Ready")

        // Deleted, unloaded by the pod, and made again as it was: what the pod said before it unloaded the host
        // (asked last while the host waited) is not taken for a load of the new object.
        try await deleteEgressHost(stripe)
        try await eventually("the deleted host to leave the allow-list") {
            try await !self.allowListHosts().contains(stripeHost)
        }
        try await sync(proxy)
        try await createEgressHost(stripe, host: stripeHost)
        try await waitForCondition(stripe, "Programmed", .true)
        for _ in 0..<3 {
            let recreated = try await ready(stripe)
            XCTAssertNotEqual(recreated?.status, .true, "Ready on answers from before the pod unloaded the host")
            try await Task.sleep(for: .seconds(1))
        }
        try await sync(proxy)
        try await waitForCondition(stripe, "Ready", .true, reason: "Ready")
    }

    /// The loop that asks the pods runs once per leadership term: stopped (the lease lost) and run again, it still
    /// wakes when hosts start waiting, asks the ready pods and reports a change.
    func testTheMonitorRunsAgainAfterItWasStopped() async throws {
        let proxy = try await startLocalProxy()
        proxy.store.install(AllowList(hosts: [AllowList.Entry(host: "api.github.com")]))
        _ = try await retrying("the proxy ServiceAccount") {
            try await self.client.create(
                .serviceAccounts,
                KubeObject(apiVersion: "v1", kind: "ServiceAccount", name: Self.proxyName, namespace: self.namespace)
            )
        }
        let pod = uniqueName("proxy")
        try await createProxyPod(pod, adminPort: proxy.adminPort)
        let logger = Logger(label: "monitor")
        let pods = Informer(
            client: client,
            resource: .pods,
            namespace: namespace,
            labelSelector: ProxyWorkload.podSelector(OperatorSettings()),
            logger: logger
        )
        background(Task { await pods.run() })
        try await pods.waitForSync()
        let monitor = ProxyLoadMonitor(pods: pods, timing: .init(interval: .milliseconds(100)), logger: logger)
        let changes = CallCounter()

        let first = Task { await monitor.run { changes.increment() } }
        try await Task.sleep(for: .milliseconds(200))
        first.cancel()
        await first.value
        XCTAssertEqual(changes.value, 0, "asked the pods while no host waited")

        background(Task { await monitor.run { changes.increment() } })
        // Let the new run reach its wait first, so that it is the wake-up that starts it.
        try await Task.sleep(for: .milliseconds(100))
        monitor.setAwaiting(true)
        try await eventually("the monitor to ask the pod", observed: { "\(monitor.current)" }) {
            monitor.current
                == ProxyLoad(pods: [
                    .init(name: pod, answer: .init(ProxyLoadReport(AllowList(hosts: [.init(host: "api.github.com")]))))
                ])
        }
        XCTAssertEqual(changes.value, 1)
    }
}

/// Counts calls from concurrent tasks.
final class CallCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// A real proxy's allow-list and admin port: what a proxy pod runs, minus the data plane.
struct LocalProxy {
    let store: AllowListStore
    let watcher: AllowListWatcher
    let admin: AdminServer
    /// The pod's files: the allow-list here, TLS material wherever the test mounts it.
    let directory: String
    let path: String

    var adminPort: Int { admin.localAddress.port! }
}

/// Standing in for proxy pods where no kubelet runs: a real proxy's allow-list store and admin server in this
/// process, a pod object reported ready at 127.0.0.1 with its admin port, and the kubelet's copy of the allow-list
/// ConfigMap into the proxy's file, made when the test chooses.
extension OperatorTestCase {
    func startLocalProxy() async throws -> LocalProxy {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("egress-load-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        let registry = PrometheusCollectorRegistry()
        let store = AllowListStore(metrics: ProxyMetrics(factory: PrometheusMetricsFactory(registry: registry)))
        let admin = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: registry,
            readiness: { store.notReadyReason },
            pages: ProxyRuntime.adminPages(store)
        )
        addTeardownBlock { await admin.close() }
        let path = "\(directory)/allowlist.json"
        let watcher = AllowListWatcher(path: path, store: store, logger: Logger(label: "local-proxy"))
        return LocalProxy(store: store, watcher: watcher, admin: admin, directory: directory, path: path)
    }

    /// What the kubelet does at a pod's next sync: the ConfigMap's allow-list into the pod's file.
    func sync(_ proxy: LocalProxy) async throws {
        // Retried: the operator writes the ConfigMap in its first pass, right after the Deployment.
        let object = try await retrying("reading the allow-list ConfigMap") {
            try await self.client.get(.configMaps, name: "\(Self.proxyName)-allowlist", namespace: self.namespace)
        }
        let text = try XCTUnwrap(object[path: "data", ProxySettings.allowListKey]?.stringValue)
        try Data(text.utf8).write(to: URL(fileURLWithPath: proxy.path), options: .atomic)
        XCTAssertTrue(proxy.watcher.checkNow(), "the proxy did not load the new allow-list")
    }

    /// What the kubelet does with the TLS Secret volume: each key a file under the proxy's TLS mount path (the
    /// allow-list names them there).
    func syncTLS(_ secret: KubeObject, into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (key, value) in secret[path: "data"]?.objectValue ?? [:] {
            let data = try XCTUnwrap(value.stringValue.flatMap { Data(base64Encoded: $0) })
            try data.write(to: URL(fileURLWithPath: "\(directory)/\(key)"), options: .atomic)
        }
    }

    /// A proxy pod object as the Deployment's would be (its labels, an `admin` port), reported ready at 127.0.0.1.
    func createProxyPod(_ name: String, adminPort: Int) async throws {
        var pod = KubeObject(apiVersion: "v1", kind: "Pod", name: name, namespace: namespace)
        pod.labels = ProxySettings().labels
        pod["spec"] = [
            "serviceAccountName": .string(Self.proxyName),
            "automountServiceAccountToken": false,
            "containers": [
                [
                    "name": "egress-proxy", "image": "egress-proxy:test",
                    "ports": [["name": "admin", "containerPort": .int(Int64(adminPort))]],
                ]
            ],
        ]
        _ = try await retrying("creating pod \(name) (its ServiceAccount comes from the operator)") {
            try await self.client.create(.pods, pod)
        }
        try await setPodReady(name, true)
    }

    func setPodReady(_ name: String, _ ready: Bool) async throws {
        _ = try await client.patch(
            .pods,
            name: name,
            namespace: namespace,
            patch: [
                "status": [
                    "phase": "Running", "podIP": "127.0.0.1",
                    "conditions": [["type": "Ready", "status": ready ? "True" : "False"]],
                ]
            ],
            type: .merge,
            subresource: "status"
        )
    }

    func ready(_ name: String) async throws -> Condition? { try await condition(name, "Ready") }
}
