import ControlPlaneTesting
import Foundation
import KubeAPI
import Logging
import Manifests
import Metrics
import Prometheus
import Synchronization
import XCTest

@testable import Operator

/// Polls `condition` until it holds; fails with `what` (and the last observation) after `timeout`: a bound, not a
/// timing assertion.
func eventually(
    _ what: @autoclosure () -> String,
    timeout: Duration = .seconds(30),
    observed: () -> String = { "" },
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if try await condition() { return }
            lastError = nil
        } catch {
            // Transient API errors (e.g. during an API server restart) are retried until the deadline.
            lastError = error
        }
        if ContinuousClock.now >= deadline {
            var message = "timed out after \(timeout) waiting for \(what())"
            let seen = observed()
            if !seen.isEmpty { message += "; last observed: \(seen)" }
            if let lastError { message += "; last error: \(lastError)" }
            throw TestFailure(message)
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// Retries `body` until it succeeds (for writes right after an API server restart), failing after `timeout`.
@discardableResult
func retrying<T>(
    _ what: String,
    timeout: Duration = .seconds(30),
    _ body: () async throws -> T
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        do {
            return try await body()
        } catch {
            if ContinuousClock.now >= deadline { throw TestFailure("\(what) kept failing for \(timeout): \(error)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

/// Log records of an in-process operator, so tests can check what it said.
final class LogCapture: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: String
    }

    private let records = Mutex<[Record]>([])
    let prefix: String

    init(prefix: String) {
        self.prefix = prefix
    }

    var all: [Record] { records.withLock { $0 } }

    func append(_ record: Record) {
        records.withLock { $0.append(record) }
        // Warnings and errors also go to the test log: they explain most failures.
        if record.level >= .warning {
            print("[\(prefix)] \(record.level): \(record.message) \(record.metadata)")
        }
    }

    func contains(_ text: String) -> Bool { all.contains { $0.message.contains(text) } }

    var logger: Logger {
        Logger(label: "egress-operator-test") { _ in Handler(capture: self) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
            let text = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.append(Record(level: event.level, message: event.message.description, metadata: text))
        }
    }
}

/// An `OperatorService` running in this process, in a task of its own, with its own client.
final class RunningOperator: Sendable {
    let service: OperatorService
    let logs: LogCapture
    let client: KubeClient
    let task: Task<Void, any Error>

    init(
        client: KubeClient,
        options: OperatorOptions,
        logs: LogCapture,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        let service = OperatorService(
            client: client,
            options: options,
            logger: logs.logger,
            metricsFactory: metricsFactory
        )
        self.service = service
        self.logs = logs
        self.client = client
        self.task = Task { try await service.run() }
    }

    /// Cancels the operator and waits (bounded) for it to finish.
    func stop() async {
        task.cancel()
        let task = self.task
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try? await task.value
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(20))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished { print("[\(logs.prefix)] the operator did not stop within 20s of cancellation") }
        try? await client.shutdown()
    }
}

/// Base class for the operator's live tests: a client, a namespace for the operator and one for CoreDNS per test,
/// the EgressHost CRD, and cleanup of everything a test created (EgressHosts are cluster-scoped, so every test
/// deletes its own and waits for them to be gone before the next one starts).
class OperatorTestCase: XCTestCase {
    static let egressHosts = Caches.egressHostResource
    static let testLabel = "egress-operator-tests/run"
    static let proxyName = ProxySettings().name

    var client: KubeClient!
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private var counter = 0
    /// The operator's namespace (proxy workload, allow-list, TLS material).
    var namespace = ""
    /// CoreDNS's namespace, with a `coredns` ConfigMap holding `originalCorefile`.
    var dnsNamespace = ""
    var originalCorefile = CorefileFixtures.kubeadm
    private var operators: [RunningOperator] = []
    private var extraClients: [KubeClient] = []
    private var backgroundTasks: [Task<Void, Never>] = []
    private var createdEgressHosts: [String] = []

    override func setUp() async throws {
        try await super.setUp()
        continueAfterFailure = false
        client = try await TestCluster.client()
        try await installCRD()
        try await deleteStaleEgressHosts()
        namespace = uniqueName("optest")
        dnsNamespace = "\(namespace)-dns"
        for name in [namespace, dnsNamespace] {
            _ = try await client.create(.namespaces, KubeObject(apiVersion: "v1", kind: "Namespace", name: name))
        }
    }

    /// Writes the `coredns` ConfigMap into `dnsNamespace` (call before starting the operator), with what a real one
    /// carries beside the Corefile: a label, kubectl's last-applied annotation, another key. None of it is ours.
    func createCoreDNS(_ corefile: String? = nil) async throws {
        if let corefile { originalCorefile = corefile }
        var object = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: "coredns", namespace: dnsNamespace)
        object["data"] = ["Corefile": .string(originalCorefile), "NodeHosts": "10.0.0.1 node-1"]
        object.labels = Self.coreDNSLabels
        object.metadata["annotations"] = Self.coreDNSAnnotations
        _ = try await client.create(.configMaps, object)
    }

    /// Creates `coredns-custom` (k3s's and AKS's ConfigMap of extra CoreDNS configuration) with `data`.
    func createCustomConfigMap(_ data: JSONValue = [:]) async throws {
        var custom = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: "coredns-custom", namespace: dnsNamespace)
        custom["data"] = data
        _ = try await client.create(.configMaps, custom)
    }

    /// Waits for two seconds in which `running` started no reconcile pass: a converged operator goes quiet.
    func waitUntilQuiet(_ running: RunningOperator) async throws {
        var (passes, since) = (running.service.passes, ContinuousClock.now)
        try await eventually("two seconds without a reconcile pass (passes so far: \(running.service.passes))") {
            let now = running.service.passes
            if now != passes { (passes, since) = (now, .now) }
            return ContinuousClock.now - since >= .seconds(2)
        }
    }

    static let coreDNSLabels = ["k8s-app": "kube-dns"]
    static let coreDNSAnnotations: JSONValue = [
        "kubectl.kubernetes.io/last-applied-configuration": #"{"apiVersion":"v1","kind":"ConfigMap"}"#
    ]

    /// Everything of the `coredns` ConfigMap that is not the Corefile is as `createCoreDNS` wrote it.
    func assertCoreDNSKeepsWhatIsNotOurs(file: StaticString = #filePath, line: UInt = #line) async throws {
        let object = try await corefileObject()
        XCTAssertEqual(object.labels, Self.coreDNSLabels, file: file, line: line)
        XCTAssertEqual(object.metadata["annotations"], Self.coreDNSAnnotations, file: file, line: line)
        XCTAssertEqual(object[path: "data", "NodeHosts"], "10.0.0.1 node-1", file: file, line: line)
    }

    override func tearDown() async throws {
        for running in operators { await running.stop() }
        operators.removeAll()
        for task in backgroundTasks {
            task.cancel()
            await task.value
        }
        backgroundTasks.removeAll()
        for client in extraClients { try? await client.shutdown() }
        extraClients.removeAll()
        if let client {
            for name in createdEgressHosts {
                do {
                    try await client.delete(Self.egressHosts, name: name)
                } catch let error as KubeError where error.code == .notFound {
                    // The test deleted it.
                }
            }
            let names = createdEgressHosts
            try await eventually("the test's EgressHosts to be deleted: \(names)") {
                let items = try await client.list(Self.egressHosts).items.compactMap(\.name)
                return Set(items).isDisjoint(with: names)
            }
            // Without a controller-manager a namespace stays Terminating forever; its name is unique, so that is
            // harmless, and deleting it still keeps `kubectl get ns` honest about what is in use.
            for name in [namespace, dnsNamespace] where !name.isEmpty {
                try? await client.delete(.namespaces, name: name)
            }
            try await client.shutdown()
        }
        client = nil
        try await super.tearDown()
    }

    /// A name unique to this run (DNS-1123).
    func uniqueName(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)-\(runID)-\(counter)"
    }

    /// An external host name unique to this run.
    func uniqueHost(_ prefix: String) -> String { "\(uniqueName(prefix)).example.com" }

    /// Another client (e.g. for watches), shut down in `tearDown`.
    func extraClient() async throws -> KubeClient {
        let client = try await TestCluster.client()
        extraClients.append(client)
        return client
    }

    /// A task cancelled and awaited in `tearDown` (before the clients it may use are shut down).
    func background(_ task: Task<Void, Never>) {
        backgroundTasks.append(task)
    }

    // MARK: - The operator

    func options(identity: String = "optest") -> OperatorOptions {
        var settings = OperatorSettings()
        settings.namespace = namespace
        settings.coreDNS.namespace = dnsNamespace
        settings.coreDNS.mode = .corefile
        var options = OperatorOptions(settings: settings, identity: "\(identity)-\(runID)")
        options.leaderElection = false
        // No kubelet runs pods here: Ready waits for proxy pods only in the tests that stand one up
        // (ProxyLoadTests).
        options.confirmProxyLoad = false
        return options
    }

    /// Waits for `egress_operator_egresshosts{reason}` in `registry` to read `counts`.
    func expectEgressHostCounts(_ registry: PrometheusCollectorRegistry, _ counts: [String: Int]) async throws {
        try await eventually("egress_operator_egresshosts to read \(counts)", observed: { registry.emitToString() }) {
            let text = registry.emitToString()
            return counts.allSatisfy { reason, count in
                text.contains("egress_operator_egresshosts{reason=\"\(reason)\"} \(count).0\n")
            }
        }
    }

    /// Starts an operator with these DNS choices and reports its proxy available, as the DNS-mode tests need.
    func startOperatorWithProxy(
        dnsRules: OperatorOptions.DNSRules = .perHost,
        coreDNSMode: CoreDNSSettings.Mode = .corefile
    ) async throws {
        var options = self.options()
        options.dnsRules = dnsRules
        options.settings.coreDNS.mode = coreDNSMode
        try await startOperator(options)
        try await setProxyAvailable(1)
    }

    /// Starts an operator in this process; stopped in `tearDown`.
    @discardableResult
    /// - Parameter client: how the operator reaches the API server (by default, as the cluster's admin).
    func startOperator(
        _ options: OperatorOptions? = nil,
        client: KubeClient? = nil,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> RunningOperator {
        let client = if let client { client } else { try await TestCluster.client() }
        let running = RunningOperator(
            client: client,
            options: options ?? self.options(),
            logs: LogCapture(prefix: name),
            metricsFactory: metricsFactory
        )
        operators.append(running)
        return running
    }

    // MARK: - EgressHosts

    /// Creates an EgressHost (cluster-scoped) and registers it for deletion.
    @discardableResult
    func createEgressHost(
        _ name: String,
        host: String,
        tls: JSONValue? = nil,
        spec fullSpec: JSONValue? = nil
    ) async throws -> KubeObject {
        var object = KubeObject(apiVersion: EgressHost.apiVersion, kind: EgressHost.kind, name: name)
        object.labels = [Self.testLabel: runID]
        var spec: JSONValue = fullSpec ?? ["host": .string(host)]
        if let tls { spec["tls"] = tls }
        object["spec"] = spec
        createdEgressHosts.append(name)
        return try await client.create(Self.egressHosts, object)
    }

    func deleteEgressHost(_ name: String) async throws {
        try await client.delete(Self.egressHosts, name: name)
        try await eventually("EgressHost \(name) to be gone") {
            do {
                _ = try await client.get(Self.egressHosts, name: name)
                return false
            } catch let error as KubeError where error.code == .notFound {
                return true
            }
        }
    }

    /// Changes a label: an update event that makes the operator run a pass without changing what it wants.
    func touch(_ name: String, _ value: String) async throws {
        _ = try await client.patch(
            Self.egressHosts,
            name: name,
            patch: ["metadata": ["labels": ["egress-operator-tests/touch": .string(value)]]],
            type: .merge
        )
    }

    func egressHost(_ name: String) async throws -> EgressHost {
        try await client.get(Self.egressHosts, name: name).decode(EgressHost.self)
    }

    func condition(_ name: String, _ type: String) async throws -> Condition? {
        try await egressHost(name).status?.conditions?.first { $0.type == type }
    }

    /// Waits until condition `type` of EgressHost `name` has `status` (and `reason`, if given).
    func waitForCondition(
        _ name: String,
        _ type: String,
        _ status: Condition.Status,
        reason: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws {
        let last = Mutex<String>("nothing")
        try await eventually(
            "EgressHost \(name) to have \(type)=\(status.rawValue)\(reason.map { " reason \($0)" } ?? "")",
            timeout: timeout,
            observed: { last.withLock { $0 } }
        ) {
            let object = try await egressHost(name)
            last.withLock { $0 = "\(object.status.map { "\($0)" } ?? "no status")" }
            guard let condition = object.status?.conditions?.first(where: { $0.type == type }) else { return false }
            return condition.status == status && (reason == nil || condition.reason == reason)
                && condition.observedGeneration == object.metadata.generation
        }
    }

    // MARK: - What the operator wrote

    func allowList() async throws -> AllowList? {
        let object: KubeObject
        do {
            object = try await client.get(.configMaps, name: "\(Self.proxyName)-allowlist", namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            return nil
        }
        guard let text = object[path: "data", ProxySettings.allowListKey]?.stringValue else { return nil }
        return try AllowList.decode(Array(text.utf8))
    }

    func allowListHosts() async throws -> Set<String> { Set(try await allowList()?.hosts.map(\.host) ?? []) }

    func corefileObject() async throws -> KubeObject {
        try await client.get(.configMaps, name: "coredns", namespace: dnsNamespace)
    }

    func corefile() async throws -> String {
        try await corefileObject()[path: "data", "Corefile"]?.stringValue ?? ""
    }

    /// What the `egress-operator.override` key of `coredns-custom` routes, and the whole ConfigMap's data.
    func overrideHosts(
        dnsRules: OperatorOptions.DNSRules = .perHost
    ) async throws -> (hosts: [String], data: JSONValue?) {
        let object = try await client.get(.configMaps, name: "coredns-custom", namespace: dnsNamespace)
        var options = self.options()
        options.dnsRules = dnsRules
        let snippet = object[path: "data", CoreDNSSettings.overrideKey]?.stringValue ?? ""
        return (try options.corefileEditor().managedHosts(inOverrideSnippet: snippet), object["data"])
    }

    func corefileHosts(_ given: String? = nil) async throws -> Set<String> {
        let text: String
        if let given { text = given } else { text = try await corefile() }
        return Set(try options().corefileEditor().managedHosts(in: text))
    }

    /// Waits until both the allow-list and the Corefile's managed block hold exactly `hosts`.
    func waitForConvergence(_ hosts: Set<String>, timeout: Duration = .seconds(30)) async throws {
        let last = Mutex<String>("")
        try await eventually(
            "allow-list and Corefile to hold exactly \(hosts.sorted())",
            timeout: timeout,
            observed: { last.withLock { $0 } }
        ) {
            let allowed = try await allowListHosts()
            let routed = try await corefileHosts()
            last.withLock { $0 = "allow-list \(allowed.sorted()), Corefile \(routed.sorted())" }
            return allowed == hosts && routed == hosts
        }
    }

    /// The Corefile without the operator's managed block: what the user wrote.
    static func outsideManagedBlock(_ corefile: String) -> String {
        var inside = false
        var kept: [Substring] = []
        for line in corefile.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed == CorefileEditor.beginMarker {
                inside = true
            } else if trimmed == CorefileEditor.endMarker {
                inside = false
            } else if !inside {
                kept.append(line)
            }
        }
        return kept.joined(separator: "\n")
    }

    // MARK: - The proxy Deployment (no controller-manager runs: the test writes its status)

    func waitForDeployment() async throws -> KubeObject {
        try await waitForProxyObject(.deployments)
    }

    /// The operator applies its objects one after another, so one existing says nothing about the next.
    func waitForProxyObject(_ resource: Resource) async throws -> KubeObject {
        var found: KubeObject?
        try await eventually("the operator to create the proxy \(resource.kind) \(namespace)/\(Self.proxyName)") {
            found = try? await client.get(resource, name: Self.proxyName, namespace: namespace)
            return found != nil
        }
        return found!
    }

    /// Writes the proxy Deployment's status as the deployment controller would with `available` pods up.
    func setProxyAvailable(_ available: Int) async throws {
        _ = try await waitForDeployment()
        let count = JSONValue.int(Int64(available))
        _ = try await client.patch(
            .deployments,
            name: Self.proxyName,
            namespace: namespace,
            patch: [
                "status": [
                    "replicas": count, "updatedReplicas": count, "readyReplicas": count, "availableReplicas": count,
                ]
            ],
            type: .merge,
            subresource: "status"
        )
    }

    // MARK: - Setup helpers

    /// Applies `config/crd/egresshosts.egress.dev.yaml` (idempotent) and waits until it is served.
    func installCRD() async throws {
        let path = "\(TestCluster.repoRoot)/config/crd/egresshosts.egress.dev.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let crd = try KubeObject.objects(yaml: text).first else { throw TestFailure("no CRD in \(path)") }
        _ = try await client.apply(.customResourceDefinitions, crd, fieldManager: "operator-tests", force: true)
        try await eventually("the EgressHost CRD to be Established") {
            let current = try await client.get(.customResourceDefinitions, name: crd.name ?? "")
            let conditions = current["status"]?["conditions"]?.arrayValue ?? []
            return conditions.contains { $0["type"] == "Established" && $0["status"] == "True" }
        }
        try await eventually("EgressHosts to be listable") {
            _ = try await client.list(Self.egressHosts)
            return true
        }
    }

    /// EgressHosts left by an earlier, interrupted run of these tests would be seen by every operator.
    func deleteStaleEgressHosts() async throws {
        let stale = try await client.list(Self.egressHosts, options: ListOptions(labelSelector: Self.testLabel))
        for object in stale.items {
            try? await client.delete(Self.egressHosts, name: object.name ?? "")
        }
    }
}
