import Foundation
import KubeAPI

#if canImport(Glibc)
    import Glibc
#endif

/// A test failure with a message that says what to do.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The local control plane of `scripts/control-plane.sh` (or whatever `KUBECONFIG` points at), shared by the test
/// targets that run against a real kube-apiserver.
public enum TestCluster {
    public static let repoRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .path

    public static var environment: [String: String] { ProcessInfo.processInfo.environment }

    public static var stateDirectory: String {
        environment["EGRESS_CONTROL_PLANE_DIR"] ?? "/tmp/egress-control-plane"
    }

    public static let howToStart =
        "These tests need the local Kubernetes control plane. Start it with `scripts/control-plane.sh start` "
        + "(first time: `scripts/control-plane.sh install`), then run the tests again"

    /// The kubeconfig file the tests (and the operator processes they start) use: `KUBECONFIG`'s first entry, else
    /// the admin kubeconfig in the script's state directory.
    public static func kubeconfigPath() throws -> String {
        if let list = environment["KUBECONFIG"], let first = list.split(separator: ":").first {
            return String(first)
        }
        let path = "\(stateDirectory)/kubeconfig"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("\(howToStart). (\(path) does not exist.)")
        }
        return path
    }

    /// `KUBECONFIG` if set, else the admin kubeconfig in the script's state directory.
    public static func adminConfig() throws -> KubeConfig {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try KubeConfig.load(kubeconfigPaths: list.split(separator: ":").map(String.init))
        }
        return try stateConfig("kubeconfig")
    }

    /// A kubeconfig written by `scripts/control-plane.sh start` (`kubeconfig`, `kubeconfig-nobody`, `kubeconfig-cert`).
    public static func stateConfig(_ file: String) throws -> KubeConfig {
        let path = "\(stateDirectory)/\(file)"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("\(howToStart). (\(path) does not exist.)")
        }
        return try KubeConfig.load(kubeconfigPaths: [path])
    }

    /// An admin client that has reached the server once, or a failure that says how to start the control plane.
    public static func client() async throws -> KubeClient {
        try await client(try adminConfig())
    }

    /// A client that has reached the server once, or a failure that says how to start the control plane.
    public static func client(_ config: KubeConfig) async throws -> KubeClient {
        let client = try KubeClient(config: config)
        do {
            _ = try await client.serverVersion()
        } catch {
            try await client.shutdown()
            throw TestFailure("\(howToStart). (\(config.server) is not reachable: \(error))")
        }
        return client
    }

    /// Runs `scripts/control-plane.sh ARGS` (its output goes to the test log) and fails if it fails.
    ///
    /// posix_spawn + waitpid on a Dispatch thread: Foundation's `Process.waitUntilExit()` was seen never to reap
    /// the child inside the test process.
    public static func script(_ arguments: String...) async throws {
        let argv = ["/bin/bash", "\(repoRoot)/scripts/control-plane.sh"] + arguments
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                var cArguments = argv.map { strdup($0) } + [nil]
                defer { for argument in cArguments { free(argument) } }
                var pid: pid_t = 0
                let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &cArguments, environ)
                guard spawned == 0 else {
                    continuation.resume(throwing: TestFailure("cannot run control-plane.sh: errno \(spawned)"))
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        guard status == 0 else {
            throw TestFailure(
                "control-plane.sh \(arguments.joined(separator: " ")) failed (wait status \(status)); see its output above"
            )
        }
    }
}
