import Foundation
import Logging
import Manifests
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import ServiceLifecycle

/// The current allow-list, swapped atomically on reload. Requests read it once, when their head arrives, so a
/// reload never affects a request (or a pooled connection) already in flight.
public final class AllowListStore: Sendable {
    private struct State {
        var router: Router?
        var tlsContexts: TLSContextCache
        var shuttingDown = false
    }
    private let state: NIOLockedValueBox<State>
    private let metrics: ProxyMetrics
    /// The entries' fingerprints for `loadReport`, made once per list (by router), when first asked for.
    private let fingerprints = NIOLockedValueBox<(router: UInt64, entries: [String: String])?>(nil)

    public init(metrics: ProxyMetrics) {
        self.metrics = metrics
        self.state = NIOLockedValueBox(State(router: nil, tlsContexts: TLSContextCache()))
    }

    /// Installs a validated list. TLS contexts that read files are rebuilt lazily for the new list, so changed CA
    /// files take effect for new connections.
    public func install(_ list: AllowList) {
        let router = Router(list)
        let previous = self.state.withLockedValue { state in
            let previous = (state.router, state.tlsContexts)
            state.router = router
            state.tlsContexts = state.tlsContexts.keepingFilelessContexts()
            return previous
        }
        // The old router (100,000 entries: milliseconds to free) is released here, not while holding the lock that
        // every new request takes; requests still using it keep it alive until they finish.
        withExtendedLifetime(previous) {}
        self.metrics.reloaded(entries: router.count)
    }

    /// The current router and its TLS context cache; nil router until a first good list is loaded.
    public var current: (router: Router?, tls: TLSContextCache) {
        self.state.withLockedValue { ($0.router, $0.tlsContexts) }
    }

    /// Ready once a list is loaded, and no longer ready while shutting down (so the Service stops routing to us).
    public var isReady: Bool { self.notReadyReason == nil }

    /// Why `/readyz` fails, or nil when ready.
    public var notReadyReason: String? {
        self.state.withLockedValue { state in
            if state.shuttingDown { return "shutting down" }
            return state.router == nil ? "allow-list not loaded" : nil
        }
    }

    public func markShuttingDown() { self.state.withLockedValue { $0.shuttingDown = true } }

    /// What this process routes (the admin port's `GET /allowlist`, which the operator asks before it reports an
    /// EgressHost Ready): every entry of the list in force with its fingerprint, and those whose TLS material cannot
    /// be loaded now. The material is checked as a new upstream connection would check it, so a CA bundle the
    /// kubelet has not copied in yet shows here as it would in a 502. Nil until a first list is loaded.
    public func loadReport() -> ProxyLoadReport? {
        let (router, tls) = self.current
        guard let router else { return nil }
        let list = router.list
        var unusable: [String: String] = [:]
        // One check per distinct setting (many hosts share a CA bundle); the value is the problem, nil if none.
        var answers: [AllowList.TLS: String?] = [:]
        for entry in list.hosts where !entry.tls.files.isEmpty {
            let problem: String?
            if let known = answers[entry.tls] {
                problem = known
            } else {
                if case .failure(let error) = tls.context(for: entry.tls) {
                    problem = error.detail
                } else {
                    problem = nil
                }
                answers.updateValue(problem, forKey: entry.tls)
            }
            if let problem { unusable[entry.host] = problem }
        }
        let entries =
            self.fingerprints.withLockedValue { $0?.router == router.id ? $0?.entries : nil }
            ?? {
                let entries = ProxyLoadReport(list).entries
                self.fingerprints.withLockedValue { $0 = (router.id, entries) }
                return entries
            }()
        return ProxyLoadReport(entries: entries, unusable: unusable)
    }

    func reloadFailed() { self.metrics.reloadFailed() }

    func readFileInForce() { self.metrics.readFileInForce() }
}

/// NIOSSL client contexts, one per distinct TLS setting of the current list, created on first use.
///
/// A context built from files (a CA bundle, a client certificate) is checked against them again, at most once per
/// `recheckInterval` and only when a new upstream connection asks for it: a rotated client certificate, or a
/// Secret volume that the kubelet updated after the allow-list's ConfigMap (the two are synced independently),
/// would otherwise be picked up only at the next change of the allow-list itself. A context that failed to build
/// is built again once its files change, not kept failing; a good one is kept when its files change into something
/// that cannot be used.
public final class TLSContextCache: Sendable {
    struct Entry: Sendable {
        var result: Result<NIOSSLContext, ProxyError>
        /// The files' stamps when `result` was built, in `AllowList.TLS.files` order (nil: not there).
        var stamps: [FileStamp?]
        var checked: NIODeadline
    }

    static let recheckInterval: TimeAmount = .seconds(1)
    private let contexts: NIOLockedValueBox<[AllowList.TLS: Entry]>

    public init() { self.contexts = NIOLockedValueBox([:]) }

    private init(_ contexts: [AllowList.TLS: Entry]) {
        self.contexts = NIOLockedValueBox(contexts)
    }

    /// A cache for the next list with the contexts built from no files (system trust roots, no client certificate):
    /// a reload cannot have changed those, and rebuilding one (reading the system trust store) would delay the first
    /// request to each host after every reload.
    func keepingFilelessContexts() -> TLSContextCache {
        TLSContextCache(
            self.contexts.withLockedValue { contexts in
                contexts.filter { tls, entry in
                    guard case .success = entry.result else { return false }
                    return tls.files.isEmpty
                }
            }
        )
    }

    public func context(for tls: AllowList.TLS) -> Result<NIOSSLContext, ProxyError> {
        let now = NIODeadline.now()
        let cached = self.contexts.withLockedValue { $0[tls] }
        if let cached, tls.files.isEmpty || now - cached.checked < Self.recheckInterval { return cached.result }
        let stamps = tls.files.map(FileStamp.init(path:))
        if let cached, cached.stamps == stamps {
            self.contexts.withLockedValue { $0[tls]?.checked = now }
            return cached.result
        }
        var made = Self.make(tls)
        if case .failure = made, let cached, case .success = cached.result {
            // Files that changed into something unusable (half-written, or gone while a volume is being updated):
            // the last good context stays, as the last good allow-list does, until they change again.
            made = cached.result
        }
        self.contexts.withLockedValue { $0[tls] = Entry(result: made, stamps: stamps, checked: now) }
        return made
    }

    static func make(_ tls: AllowList.TLS) -> Result<NIOSSLContext, ProxyError> {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = tls.insecureSkipVerify ? .none : .fullVerification
        do {
            if let caFile = tls.caFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } else {
                configuration.trustRoots = .default
            }
            if let certFile = tls.clientCertificateFile {
                guard let keyFile = tls.clientKeyFile else {
                    return .failure(.tlsConfiguration("clientCertificateFile is set but clientKeyFile is not"))
                }
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
            return .success(try NIOSSLContext(configuration: configuration))
        } catch {
            return .failure(.tlsConfiguration("cannot load TLS material: \(error)"))
        }
    }
}

/// Watches the allow-list file and installs each new valid version.
///
/// Kubernetes updates a mounted ConfigMap by swapping the `..data` symlink to a new timestamped directory, so
/// file-change notifications on the path are unreliable. Instead this polls: every interval it `stat`s the path
/// (following symlinks) and re-reads the file only when the resolved inode, size or modification time changed,
/// then compares the bytes. An invalid document is logged and counted, and the last good list stays in effect.
public struct AllowListWatcher: Service {
    public let path: String
    public let interval: Duration
    private let store: AllowListStore
    private let logger: Logger
    private let lastSeen = NIOLockedValueBox<(stamp: FileStamp?, bytes: [UInt8]?)>((nil, nil))
    /// The last failure to stat or read the file, reported once until the file is back.
    private let lastFailure = NIOLockedValueBox<String?>(nil)

    public init(path: String, interval: Duration = .seconds(1), store: AllowListStore, logger: Logger) {
        self.path = path
        self.interval = interval
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        self.checkNow()
        for await _ in AsyncTimerSequence(interval: self.interval).cancelOnGracefulShutdown() {
            self.checkNow()
        }
    }

    /// Checks the file once; returns whether a new list was installed. Tests call this directly instead of waiting.
    @discardableResult
    public func checkNow() -> Bool {
        guard let stamp = FileStamp(path: self.path) else {
            let error = String(cString: strerror(errno))
            self.fail("cannot stat allow-list file: \(error)", stamp: nil)
            return false
        }
        if self.lastSeen.withLockedValue({ $0.stamp == stamp }) { return false }
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: self.path)))
        } catch {
            self.fail("cannot read allow-list file: \(error.localizedDescription)", stamp: nil)
            return false
        }
        self.lastFailure.withLockedValue { $0 = nil }
        if self.lastSeen.withLockedValue({ $0.bytes == bytes }) {
            self.lastSeen.withLockedValue { $0.stamp = stamp }
            self.store.readFileInForce()
            return false
        }
        do {
            let list = try AllowList.decode(bytes)
            self.store.install(list)
            self.lastSeen.withLockedValue { $0 = (stamp, bytes) }
            self.logger.info(
                "allow-list loaded",
                metadata: ["path": "\(self.path)", "entries": "\(list.hosts.count)"]
            )
            return true
        } catch {
            // Remember the stamp so a broken file is reported once, not every second.
            self.fail("invalid allow-list, keeping the last good one: \(error)", stamp: stamp)
            return false
        }
    }

    private func fail(_ message: String, stamp: FileStamp?) {
        // A broken file is reported once per version (its stamp), a missing one once until it is back: not every
        // second.
        let alreadyReported =
            if stamp != nil {
                self.lastSeen.withLockedValue { $0.stamp == stamp }
            } else {
                self.lastFailure.withLockedValue { last in
                    defer { last = message }
                    return last == message
                }
            }
        guard !alreadyReported else { return }
        // A file that could not be read is read again once it can be, even if it comes back as it was: the good
        // list it holds is then in force again (`egress_allowlist_last_reload_successful`).
        self.lastSeen.withLockedValue { $0.stamp = stamp }
        self.store.reloadFailed()
        self.logger.error("\(message)", metadata: ["path": "\(self.path)"])
    }
}

/// A plain interval timer as an async sequence (avoids a swift-async-algorithms dependency).
struct AsyncTimerSequence: AsyncSequence, Sendable {
    let interval: Duration

    struct AsyncIterator: AsyncIteratorProtocol {
        let interval: Duration
        mutating func next() async -> Void? {
            do {
                try await Task.sleep(for: self.interval)
                return ()
            } catch {
                return nil
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(interval: self.interval) }
}

/// What `stat` (following symlinks) says of a file's identity and version: a Kubernetes volume update swaps a
/// symlink to a new directory, so the resolved inode changes even when size and time do not.
struct FileStamp: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var mtimeSeconds: Int
    var mtimeNanoseconds: Int

    /// nil when the file cannot be stat'ed (`errno` says why).
    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.device = UInt64(st.st_dev)
        self.inode = UInt64(st.st_ino)
        self.size = Int64(st.st_size)
        self.mtimeSeconds = st.st_mtim.tv_sec
        self.mtimeNanoseconds = st.st_mtim.tv_nsec
    }
}

extension AllowList.TLS {
    /// The files a context for this setting reads.
    var files: [String] { [self.caFile, self.clientCertificateFile, self.clientKeyFile].compactMap { $0 } }
}
