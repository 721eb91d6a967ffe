import Benchmark
import CoreMetrics
import Foundation
import Logging
import Manifests
import Proxy
import Synchronization

/// Allow-list scale (issue #7): loading 100,000 hosts, looking names up, and a hot reload.
///
///     cd benchmarks/allowlist && swift package benchmark
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident],
        timeUnits: .milliseconds,
        maxDuration: .seconds(5),
        maxIterations: 50,
        setup: { _ = Fixture.shared }
    )
    let lookups = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000,
        setup: { _ = Fixture.shared }
    )

    Benchmark("Decode+validate 100k hosts") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try AllowList.decode(Fixture.shared.document))
        }
    }

    Benchmark("Build Router for 100k hosts") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Router(Fixture.shared.list))
        }
    }

    Benchmark("Lookup exact", configuration: lookups) { benchmark in
        let router = Fixture.shared.router
        for index in benchmark.scaledIterations {
            blackHole(router.route(for: Fixture.shared.exactNames[index % Fixture.shared.exactNames.count]))
        }
    }

    Benchmark("Lookup wildcard (4 labels)", configuration: lookups) { benchmark in
        let router = Fixture.shared.router
        for index in benchmark.scaledIterations {
            blackHole(router.route(for: Fixture.shared.wildcardNames[index % Fixture.shared.wildcardNames.count]))
        }
    }

    Benchmark("Lookup miss (4 labels)", configuration: lookups) { benchmark in
        let router = Fixture.shared.router
        for _ in benchmark.scaledIterations {
            blackHole(router.route(for: "api.nowhere.example.org"))
        }
    }

    /// What the proxy does when the mounted ConfigMap changes: Kubernetes swaps a symlink, the watcher notices the
    /// new file, reads and compares it, decodes and validates it, and installs a new router.
    Benchmark("Reload 100k hosts (watcher, new file)") { benchmark in
        let reload = Fixture.shared.reload
        for _ in benchmark.scaledIterations {
            reload.flip()
            guard reload.watcher.checkNow() else {
                benchmark.error("the watcher did not install the new list")
                return
            }
        }
    }
}

/// The same list as benchmarks/allowlist/run.sh: every tenth host a wildcard, every tenth an 8443 port with a
/// connect timeout, the rest plain names.
final class Fixture: Sendable {
    static let shared = Fixture(hosts: 100_000)

    let document: [UInt8]
    let list: AllowList
    let router: Router
    let exactNames: [String]
    let wildcardNames: [String]
    let reload: Reload

    init(hosts: Int) {
        self.document = Array(Self.document(hosts: hosts).utf8)
        self.list = try! AllowList.decode(self.document)
        self.router = Router(self.list)
        self.exactNames = stride(from: 2, to: hosts, by: 10).map { "api\($0).example\($0 % 97).com" }
        self.wildcardNames = stride(from: 0, to: hosts, by: 10).map { "api.svc\($0).example\($0 % 97).com" }
        self.reload = Reload(
            first: self.document,
            second: Array(Self.document(hosts: hosts, extra: "added.example.com").utf8)
        )
    }

    static func document(hosts: Int, extra: String? = nil) -> String {
        var entries: [String] = []
        entries.reserveCapacity(hosts + 1)
        for i in 0..<hosts {
            switch i % 10 {
            case 0: entries.append(#"{"host":"*.svc\#(i).example\#(i % 97).com"}"#)
            case 1:
                entries.append(
                    #"{"host":"api\#(i).example\#(i % 97).com","port":8443,"timeouts":{"connectMillis":2000}}"#
                )
            default: entries.append(#"{"host":"api\#(i).example\#(i % 97).com"}"#)
            }
        }
        if let extra { entries.append(#"{"host":"\#(extra)"}"#) }
        return #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":["# + "\n"
            + entries.joined(separator: ",\n") + "\n]}\n"
    }
}

/// Two versions of the list on disk and a symlink that is swapped between them, as Kubernetes updates a mounted
/// ConfigMap; the watcher polls the symlink.
final class Reload: Sendable {
    let directory: String
    let watcher: AllowListWatcher
    private let next = Mutex(0)

    init(first: [UInt8], second: [UInt8]) {
        self.directory = NSTemporaryDirectory() + "allowlist-bench-\(getpid())"
        try! FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: self.directory + "/0.json", contents: Data(first))
        FileManager.default.createFile(atPath: self.directory + "/1.json", contents: Data(second))
        let store = AllowListStore(metrics: ProxyMetrics(factory: NOOPMetricsHandler.instance))
        self.watcher = AllowListWatcher(
            path: self.directory + "/allowlist.json",
            store: store,
            logger: Logger(label: "benchmark", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        self.flip()
        precondition(self.watcher.checkNow(), "the first list did not load")
    }

    /// Points `allowlist.json` at the other file, atomically (a new symlink renamed over the old one).
    func flip() {
        let target = self.next.withLock { next in
            defer { next = 1 - next }
            return "\(next).json"
        }
        let link = self.directory + "/allowlist.json"
        unlink(link + ".new")
        precondition(symlink(target, link + ".new") == 0 && rename(link + ".new", link) == 0)
    }
}
