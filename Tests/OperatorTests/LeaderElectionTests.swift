import ControlPlaneTesting
import Foundation
import KubeAPI
import Synchronization
import XCTest

@testable import Operator

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Two operator processes (the built `egress-operator run`): exactly one leads; `kill -9` of the leader hands
/// the Lease to the other.
final class LeaderElectionTests: OperatorTestCase {
    static let leaseSeconds = 3
    private var processes: [OperatorProcess] = []

    override func tearDown() async throws {
        for process in processes { process.kill() }
        processes.removeAll()
        try await super.tearDown()
    }

    func testOneLeaderAndFailoverAfterKill() async throws {
        try await createCoreDNS()
        let binary = try BuiltExecutable.path("egress-operator")
        let first = try OperatorProcess(binary: binary, identity: "op-a-\(runID)", test: self)
        processes.append(first)
        let second = try OperatorProcess(binary: binary, identity: "op-b-\(runID)", test: self)
        processes.append(second)
        let candidates = [first, second]

        // Exactly one leader: the Lease names it, and only its gauge says 1.
        var leader: OperatorProcess?
        let observed = LockedText()
        try await eventually(
            "one leader among \(candidates.map(\.identity)) (logs: \(candidates.map(\.logPath)))",
            observed: { observed.text }
        ) {
            let holder = try await leaseHolder()
            let gauges = [await first.leaderGauge(), await second.leaderGauge()]
            observed.text = "lease holder \(holder ?? "none"), gauges \(gauges)"
            guard let index = candidates.firstIndex(where: { $0.identity == holder }) else { return false }
            leader = candidates[index]
            return gauges[index] == 1 && gauges[1 - index] == 0
        }
        let oldLeader = try XCTUnwrap(leader)
        let follower = candidates.first { $0 !== oldLeader }!
        XCTAssertTrue(follower.isRunning && oldLeader.isRunning, "an operator process exited")

        // The leader reconciles: its proxy Deployment exists.
        _ = try await waitForDeployment()

        // kill -9: no graceful release; the follower takes over once the lease expires.
        let killedAt = ContinuousClock.now
        oldLeader.kill()
        try await eventually(
            "\(follower.identity) to take over the lease (log: \(follower.logPath))",
            timeout: .seconds(Self.leaseSeconds * 6),
            observed: { observed.text }
        ) {
            let holder = try await leaseHolder()
            let gauge = await follower.leaderGauge()
            observed.text = "lease holder \(holder ?? "none"), gauge \(gauge.map { "\($0)" } ?? "unreadable")"
            return holder == follower.identity && gauge == 1
        }
        let failover = killedAt.duration(to: .now)
        print("leader failover after kill -9 took \(failover) (lease duration \(Self.leaseSeconds)s)")

        // The new leader reconciles: a new EgressHost reaches the allow-list.
        let (name, host) = (uniqueName("eh"), uniqueHost("failover"))
        try await createEgressHost(name, host: host)
        try await eventually("the new leader to put \(host) in the allow-list") {
            try await allowListHosts().contains(host)
        }
        XCTAssertTrue(follower.isRunning)
    }

    /// A lease whose holder's clock ran an hour fast (its renewTime an hour ahead) and which nobody renews is taken
    /// over once this candidate has watched it unchanged for the lease's duration, not an hour later.
    func testAStaleLeaseWithAFutureRenewTimeIsTakenOver() async throws {
        try await createCoreDNS()
        var lease = KubeObject(
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            name: "egress-operator-leader",
            namespace: namespace
        )
        let future = LeaderElector.microTime(Date().addingTimeInterval(3600))
        lease["spec"] = [
            "holderIdentity": "ghost-with-a-fast-clock", "leaseDurationSeconds": .int(Int64(Self.leaseSeconds)),
            "acquireTime": .string(future), "renewTime": .string(future), "leaseTransitions": 0,
        ]
        _ = try await client.create(.leases, lease)
        let candidate = try OperatorProcess(
            binary: try BuiltExecutable.path("egress-operator"),
            identity: "op-c-\(runID)",
            test: self
        )
        processes.append(candidate)
        let observed = LockedText()
        try await eventually(
            "\(candidate.identity) to take over the ghost's lease (log: \(candidate.logPath))",
            timeout: .seconds(Self.leaseSeconds * 8),
            observed: { observed.text }
        ) {
            let holder = try await leaseHolder()
            observed.text = "lease holder \(holder ?? "none")"
            return holder == candidate.identity
        }
    }

    /// SIGTERM: the leader stops leading and hands the lease back before it exits.
    /// An admin port another process holds ends the operator with an error naming it (before, a debug build
    /// crashed on its HTTP client, never shut down, and the bind error was lost).
    func testAnAdminPortInUseIsNamed() async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = INADDR_ANY
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        XCTAssertTrue(listening)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let (status, text) = try await BuiltExecutable.runToExit(
            "egress-operator",
            [
                "run", "--kubeconfig", try TestCluster.kubeconfigPath(), "--namespace", namespace,
                "--coredns-namespace", dnsNamespace, "--no-leader-elect", "--admin-port", String(port),
            ]
        )
        XCTAssertEqual(status, 1, text)
        XCTAssertTrue(text.contains("cannot listen on 0.0.0.0:\(port) (admin port)"), text)
        XCTAssertFalse(text.contains("Fatal error"), text)
    }

    /// Flags the API server would refuse on every pass (a memory request above the limit) or store in another
    /// form are refused at startup, with the flag named.
    func testQuantityFlagsAreCheckedAtStartup() async throws {
        for (flags, message) in [
            (["--proxy-memory-request", "512Mi"], "--proxy-memory-request 512Mi must not exceed --proxy-memory-limit"),
            (["--proxy-cpu-request", "1e3"], "--proxy-cpu-request: \"1e3\" is not a quantity"),
        ] {
            let (status, text) = try await BuiltExecutable.runToExit(
                "egress-operator",
                ["run", "--kubeconfig", try TestCluster.kubeconfigPath()] + flags
            )
            XCTAssertEqual(status, 64, text)
            XCTAssertTrue(text.contains(message), text)
        }
    }

    func testAGracefulShutdownReleasesTheLease() async throws {
        try await createCoreDNS()
        let leader = try OperatorProcess(
            binary: try BuiltExecutable.path("egress-operator"),
            identity: "op-d-\(runID)",
            test: self
        )
        processes.append(leader)
        try await eventually("\(leader.identity) to lead (log: \(leader.logPath))") {
            try await leaseHolder() == leader.identity
        }
        leader.terminate()
        let holder = try await leaseHolder()
        XCTAssertEqual(holder, "", "log: \(leader.logPath)")
        let log = try String(contentsOfFile: leader.logPath, encoding: .utf8)
        XCTAssertTrue(log.contains("released leadership"), "log: \(leader.logPath)")
    }

    private func leaseHolder() async throws -> String? {
        let lease: KubeObject
        do {
            lease = try await client.get(.leases, name: "egress-operator-leader", namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            return nil
        }
        return lease[path: "spec", "holderIdentity"]?.stringValue
    }
}

/// The last thing a polling loop saw, for its failure message.
final class LockedText: Sendable {
    private let value = Mutex("")
    var text: String {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// One `egress-operator run` child process, its log in a file, its admin port on loopback.
/// `@unchecked`: `Process` is only started, signalled and waited for, which is safe from any thread.
final class OperatorProcess: @unchecked Sendable {
    let identity: String
    let adminPort: Int
    let logPath: String
    private let process: Process

    init(binary: String, identity: String, test: OperatorTestCase) throws {
        self.identity = identity
        self.adminPort = try freePort()
        self.logPath = "\(NSTemporaryDirectory())/\(identity).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "run",
            "--kubeconfig", try TestCluster.kubeconfigPath(),
            "--namespace", test.namespace,
            "--coredns-namespace", test.dnsNamespace,
            "--coredns-mode", "corefile",
            "--identity", identity,
            "--lease-duration-seconds", String(LeaderElectionTests.leaseSeconds),
            "--admin-port", String(adminPort),
            "--log-format", "text",
        ]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    var isRunning: Bool { process.isRunning }

    /// SIGTERM, and waits for the process to exit: a graceful shutdown.
    func terminate() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// SIGKILL: a crash, not a shutdown (the lease is not released).
    func kill() {
        guard process.isRunning else { return }
        sendSIGKILL(process.processIdentifier)
        process.waitUntilExit()
    }

    /// The `egress_operator_leader` gauge from `/metrics`; nil if unreadable.
    func leaderGauge() async -> Double? {
        guard let url = URL(string: "http://127.0.0.1:\(adminPort)/metrics"),
            let (data, _) = try? await URLSession.shared.data(from: url)
        else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("egress_operator_leader") {
            let parts = line.split(separator: " ")
            if parts.first == "egress_operator_leader" || parts.first?.hasPrefix("egress_operator_leader{") == true {
                return parts.last.flatMap { Double($0) }
            }
        }
        return nil
    }
}

private func sendSIGKILL(_ pid: Int32) {
    _ = kill(pid, SIGKILL)
}

/// A TCP port nobody listens on now (the kernel's choice for port 0).
func freePort() throws -> Int {
    #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
        }
    }
    guard bound else { throw TestFailure("bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}
