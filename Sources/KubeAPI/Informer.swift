import Logging
import Synchronization

/// Keeps an in-memory copy of one resource (optionally one namespace and label selector) current: list, then
/// watch from the list's resourceVersion; on a disconnect, watch again from the last seen resourceVersion with
/// exponential backoff; on 410 Gone, list again.
///
/// Consumers are level-triggered: ``changes(includeExisting:)`` yields *keys* of objects that may have changed
/// (coalescing is the work queue's job), and the reconciler reads the current state from ``get(_:)`` or the API.
///
/// ```swift
/// let informer = Informer(client: client, resource: egressHosts)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { await informer.run() }
///     try await informer.waitForSync()
///     for await key in informer.changes() { queue.add(key) }
/// }
/// ```
public final class Informer: Sendable {
    public struct Backoff: Sendable {
        public var initial: Duration
        public var maximum: Duration

        public init(initial: Duration = .milliseconds(250), maximum: Duration = .seconds(30)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    public let resource: Resource
    public let namespace: String?
    public let labelSelector: String?
    /// e.g. `metadata.name=coredns`: what RBAC that names objects (`resourceNames`) needs of a list or watch.
    public let fieldSelector: String?
    private let client: KubeClient
    private let backoff: Backoff
    private let pageSize: Int
    private let watchTimeoutSeconds: Int
    private let logger: Logger
    private let keepsLastApplied: Bool
    private let state = Mutex(State())

    private struct State {
        var objects: [ObjectKey: KubeObject] = [:]
        var resourceVersion = ""
        var synced = false
        var syncWaiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
        var lists = 0
        var watches = 0
        /// Counts changes to `objects`; `log` holds the keys of the latest ones (see `delta(since:)`).
        var revision = 0
        var log: [(revision: Int, key: ObjectKey)] = []
        /// Changes at or before this revision are no longer in the log.
        var logFloor = 0

        mutating func record(_ key: ObjectKey) {
            revision += 1
            log.append((revision, key))
            if log.count > Informer.logCapacity {
                let dropped = log.count - Informer.logCapacity / 2
                logFloor = log[dropped - 1].revision
                log.removeFirst(dropped)
            }
        }

        /// Queues `key` for every subscriber that does not ignore its change from `old` to `new` (nil: absent).
        func notify(_ key: ObjectKey, old: KubeObject?, new: KubeObject?, into pending: inout [Notification]) {
            for subscriber in self.subscribers.values {
                if let old, let new, let ignores = subscriber.ignores, ignores(old, new) { continue }
                pending.append(Notification(continuation: subscriber.continuation, key: key))
            }
        }
    }

    /// A key to yield to one subscriber, after the informer's lock is released. Yielding can resume the consumer's
    /// task, which takes that task's status lock; cancelling a consumer holds its status lock and then takes the
    /// informer's lock (in `onTermination`). Yielding under the informer's lock deadlocked that way.
    private struct Notification {
        var continuation: AsyncStream<ObjectKey>.Continuation
        var key: ObjectKey

        static func deliver(_ notifications: [Notification]) {
            for notification in notifications { notification.continuation.yield(notification.key) }
        }
    }

    /// Decides that an update (old, new) of one object is not worth a pass, e.g. a write of its status only. It runs
    /// under the informer's lock, for every update: keep it cheap.
    public typealias UpdateFilter = @Sendable (_ old: KubeObject, _ new: KubeObject) -> Bool

    private struct Subscriber {
        var continuation: AsyncStream<ObjectKey>.Continuation
        var ignores: UpdateFilter?
    }

    /// - Parameters:
    ///   - namespace: `nil` for all namespaces (or a cluster-scoped resource).
    ///   - pageSize: the list page size (lists are paginated so a large collection is not one huge response).
    ///   - watchTimeoutSeconds: how long one watch request lasts before the server ends it and it is renewed.
    ///   - keepsLastApplied: keep kubectl's last-applied-configuration annotation in the cache (it is dropped by
    ///     default): needed when the reader replaces cached objects whole.
    public init(
        client: KubeClient,
        resource: Resource,
        namespace: String? = nil,
        labelSelector: String? = nil,
        fieldSelector: String? = nil,
        backoff: Backoff = Backoff(),
        pageSize: Int = 500,
        watchTimeoutSeconds: Int = 300,
        keepsLastApplied: Bool = false,
        logger: Logger = Logger(label: "KubeAPI.Informer")
    ) {
        self.keepsLastApplied = keepsLastApplied
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.backoff = backoff
        self.pageSize = pageSize
        self.watchTimeoutSeconds = watchTimeoutSeconds
        var logger = logger
        logger[metadataKey: "resource"] = "\(resource)"
        self.logger = logger
    }

    // MARK: - Reading the cache

    /// The cached object, if it exists (as of the last event seen).
    public func get(_ key: ObjectKey) -> KubeObject? {
        self.state.withLock { $0.objects[key] }
    }

    public func get(name: String, namespace: String? = nil) -> KubeObject? {
        self.get(ObjectKey(namespace: namespace, name: name))
    }

    /// All cached objects, ordered by namespace/name.
    /// The cached objects in no particular order, for consumers that order them their own way.
    public func unorderedList() -> [KubeObject] {
        self.state.withLock { Array($0.objects.values) }
    }

    public func list() -> [KubeObject] {
        // Sorted outside the lock: with thousands of objects, sorting under it would hold up the watch.
        let objects = self.state.withLock { Array($0.objects) }
        return objects.sorted { $0.key < $1.key }.map(\.value)
    }

    /// What changed in the cache since a revision: either every object (`all`, on the first read or when the log no
    /// longer reaches back that far) or the changed objects only, by key (nil: removed).
    public struct Delta: Sendable {
        public var revision: Int
        public var all: [KubeObject]?
        public var changed: [ObjectKey: KubeObject?]

        public init(revision: Int, all: [KubeObject]? = nil, changed: [ObjectKey: KubeObject?] = [:]) {
            self.revision = revision
            self.all = all
            self.changed = changed
        }
    }

    static let logCapacity = 8192

    /// The changes after `revision` (nil: everything), read under one lock so they match the returned revision. A
    /// reader that keeps derived state per object (e.g. decoded EgressHosts) then pays for what changed, not for
    /// every object on every pass.
    public func delta(since revision: Int?) -> Delta {
        self.state.withLock { state in
            guard let revision, revision >= state.logFloor, revision <= state.revision else {
                return Delta(revision: state.revision, all: Array(state.objects.values), changed: [:])
            }
            var changed: [ObjectKey: KubeObject?] = [:]
            for entry in state.log.reversed() {
                guard entry.revision > revision else { break }
                if changed[entry.key] == nil { changed[entry.key] = .some(state.objects[entry.key]) }
            }
            return Delta(revision: state.revision, all: nil, changed: changed)
        }
    }

    /// Whether the first list has completed (the cache then reflects the server).
    public var hasSynced: Bool { self.state.withLock { $0.synced } }

    /// How many times the informer listed (1 after the first sync; more after 410 Gone).
    public var listCount: Int { self.state.withLock { $0.lists } }

    /// How many watch requests were opened (renewals and reconnects included).
    public var watchCount: Int { self.state.withLock { $0.watches } }

    /// Waits until the first list has completed. Throws `CancellationError` if the waiting task is cancelled.
    public func waitForSync() async throws {
        let id = self.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case synced, cancelled, waiting }
                let outcome = self.state.withLock { state -> Outcome in
                    if state.synced { return .synced }
                    if Task.isCancelled { return .cancelled }
                    state.syncWaiters[id] = continuation
                    return .waiting
                }
                switch outcome {
                case .synced: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting: break
                }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.syncWaiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Keys of objects that were added, changed or deleted. With `includeExisting`, the keys of all cached objects
    /// come first, so a late subscriber misses nothing. Updates `ignoring` returns true for are left out (additions
    /// and deletions never are). The stream finishes when ``run()`` returns.
    public func changes(includeExisting: Bool = true, ignoring: UpdateFilter? = nil) -> AsyncStream<ObjectKey> {
        let (stream, continuation) = AsyncStream.makeStream(of: ObjectKey.self)
        let (id, existing) = self.state.withLock { state in
            state.nextID += 1
            state.subscribers[state.nextID] = Subscriber(continuation: continuation, ignores: ignoring)
            return (state.nextID, includeExisting ? state.objects.keys.sorted() : [])
        }
        // Yielded outside the lock, like every notification (see `Notification`).
        for key in existing { continuation.yield(key) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    // MARK: - Running

    /// Lists and watches until the calling task is cancelled; errors are logged and retried, never thrown.
    public func run() async {
        defer {
            let subscribers = self.state.withLock { state in
                defer { state.subscribers.removeAll() }
                return state.subscribers.values.map(\.continuation)
            }
            for subscriber in subscribers { subscriber.finish() }
        }
        var delay = self.backoff.initial
        var needsList = true
        var consecutiveGone = 0
        while !Task.isCancelled {
            do {
                if needsList {
                    try await self.relist()
                    needsList = false
                }
                let clock = ContinuousClock()
                let start = clock.now
                let events = try await self.watchOnce()
                consecutiveGone = 0
                // A watch that ends at once without events (a proxy closing it, say) must not become a busy loop.
                if events == 0 && start.duration(to: clock.now) < .seconds(1) {
                    try await self.sleep(&delay)
                } else {
                    delay = self.backoff.initial
                }
            } catch is CancellationError {
                return
            } catch let error as KubeError where error.code == .gone {
                consecutiveGone += 1
                self.logger.info("resourceVersion expired (410 Gone): listing again")
                needsList = true
                if consecutiveGone > 1 { try? await self.sleep(&delay) }
            } catch {
                if Task.isCancelled { return }
                // Throttled (429): no sooner than the server asked (less the jitter of `sleep`).
                if let after = (error as? KubeError)?.retryAfter { delay = max(delay, after * 1.25) }
                self.logger.warning(
                    "list/watch failed; retrying",
                    metadata: ["error": "\(error)", "retryIn": "\(delay)"]
                )
                try? await self.sleep(&delay)
            }
        }
    }

    private func sleep(_ delay: inout Duration) async throws {
        let jittered = delay * Double.random(in: 0.8...1.2)
        delay = min(delay * 2, self.backoff.maximum)
        try await Task.sleep(for: jittered)
    }

    private func relist() async throws {
        let list = try await self.client.listAll(
            self.resource,
            namespace: self.namespace,
            labelSelector: self.labelSelector,
            fieldSelector: self.fieldSelector,
            pageSize: self.pageSize,
            omittingManagedFields: true
        )
        let (waiters, notifications) = self.state.withLock {
            state -> ([CheckedContinuation<Void, any Error>], [Notification]) in
            var fresh: [ObjectKey: KubeObject] = [:]
            var changed: [ObjectKey] = []
            for object in list.items {
                let key = object.key
                fresh[key] = Self.slimmed(object, keepingLastApplied: self.keepsLastApplied)
                if state.objects[key]?.resourceVersion != object.resourceVersion { changed.append(key) }
            }
            for key in state.objects.keys where fresh[key] == nil { changed.append(key) }
            let previous = state.objects
            state.objects = fresh
            state.resourceVersion = list.resourceVersion
            state.lists += 1
            var notifications: [Notification] = []
            for key in changed.sorted() {
                state.record(key)
                state.notify(key, old: previous[key], new: fresh[key], into: &notifications)
            }
            state.synced = true
            defer { state.syncWaiters.removeAll() }
            return (Array(state.syncWaiters.values), notifications)
        }
        Notification.deliver(notifications)
        for waiter in waiters { waiter.resume() }
        self.logger.debug(
            "listed",
            metadata: ["count": "\(list.items.count)", "resourceVersion": "\(list.resourceVersion)"]
        )
    }

    /// One watch request from the last seen resourceVersion; returns the number of events when the server ends it.
    private func watchOnce() async throws -> Int {
        let resourceVersion = self.state.withLock { state in
            state.watches += 1
            return state.resourceVersion
        }
        let stream = try await self.client.watch(
            self.resource,
            namespace: self.namespace,
            options: WatchOptions(
                resourceVersion: resourceVersion,
                labelSelector: self.labelSelector,
                fieldSelector: self.fieldSelector,
                allowBookmarks: true,
                timeoutSeconds: self.watchTimeoutSeconds,
                omittingManagedFields: true
            )
        )
        var count = 0
        for try await event in stream {
            count += 1
            let notifications = self.state.withLock { state -> [Notification] in
                var notifications: [Notification] = []
                if let version = event.object.resourceVersion { state.resourceVersion = version }
                let key = event.object.key
                switch event.type {
                case .added, .modified:
                    let object = Self.slimmed(
                        self.withTypeMeta(event.object),
                        keepingLastApplied: self.keepsLastApplied
                    )
                    let old = state.objects.updateValue(object, forKey: key)
                    state.record(key)
                    state.notify(key, old: old, new: object, into: &notifications)
                case .deleted:
                    let old = state.objects.removeValue(forKey: key)
                    state.record(key)
                    state.notify(key, old: old, new: nil, into: &notifications)
                case .bookmark:
                    break
                }
                return notifications
            }
            Notification.deliver(notifications)
        }
        return count
    }

    /// Cached objects drop `metadata.managedFields` and kubectl's last-applied-configuration annotation: apply
    /// bookkeeping that no reader of the cache needs and that, with thousands of objects, is most of the cache's
    /// memory (client-go's informers strip managed fields too). The informer's lists and watches leave managed
    /// fields out as they parse (`omittingManagedFields`); this removes what is left.
    /// With `keepingLastApplied`, the annotation stays: for objects the reader replaces whole (PUT), where dropping it
    /// would delete it from the object.
    static func slimmed(_ object: KubeObject, keepingLastApplied: Bool = false) -> KubeObject {
        let lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
        let hasLastApplied = !keepingLastApplied && object.metadata["annotations"]?[lastApplied] != nil
        guard object.metadata["managedFields"] != nil || hasLastApplied else { return object }
        var object = object
        object.metadata["managedFields"] = nil
        if hasLastApplied {
            object.metadata["annotations"]?[lastApplied] = nil
            if object.metadata["annotations"]?.objectValue?.isEmpty == true { object.metadata["annotations"] = nil }
        }
        return object
    }

    private func withTypeMeta(_ object: KubeObject) -> KubeObject {
        var object = object
        if object.apiVersion == nil { object["apiVersion"] = .string(self.resource.apiVersion) }
        if object.kind == nil { object["kind"] = .string(self.resource.kind) }
        return object
    }
}
