/// The work queue's bookkeeping as a pure state machine (controller-runtime's rate-limited queue, made explicit):
/// a key is queued at most once; a key added while it is being processed is processed once more afterwards (so a
/// burst of events coalesces into few passes); failures back off exponentially per key; success forgets the key.
struct WorkQueueState<Key: Hashable & Sendable>: Sendable {
    enum Outcome: Sendable, Equatable {
        case success
        /// Retry with backoff (a transient error: conflict, API unavailable).
        case retry
        /// Retry with backoff, but not before the server said to (`Retry-After`, on a 429): retrying sooner only adds
        /// to the load it is shedding.
        case throttled(retryAfter: Duration)
        /// Do not retry (the error is reported instead): only a new event brings the key back.
        case terminal
    }

    enum Action: Sendable, Equatable {
        case none
        /// Add the key again after this delay.
        case requeue(after: Duration)
    }

    private(set) var queue: [Key] = []
    private var queued: Set<Key> = []
    private var processing: Set<Key> = []
    /// Added again while processing: goes back on the queue when processing ends.
    private var dirty: Set<Key> = []
    private var failures: [Key: Int] = [:]

    let baseDelay: Duration
    let maxDelay: Duration

    init(baseDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(60)) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    var depth: Int { queue.count }

    /// Returns true when the key was newly queued (a waiting worker should wake up).
    mutating func add(_ key: Key) -> Bool {
        if processing.contains(key) {
            dirty.insert(key)
            return false
        }
        guard queued.insert(key).inserted else { return false }
        queue.append(key)
        return true
    }

    mutating func next() -> Key? {
        guard !queue.isEmpty else { return nil }
        let key = queue.removeFirst()
        queued.remove(key)
        processing.insert(key)
        return key
    }

    mutating func done(_ key: Key, _ outcome: Outcome) -> Action {
        processing.remove(key)
        let requeueNow = dirty.remove(key) != nil
        switch outcome {
        case .success, .terminal:
            failures[key] = nil
            if requeueNow { _ = add(key) }
            return .none
        case .retry, .throttled:
            let notBefore: Duration? = if case .throttled(let after) = outcome { after } else { nil }
            let count = failures[key, default: 0]
            failures[key] = count + 1
            if requeueNow, notBefore == nil {
                // A new event arrived meanwhile: the state changed, try again at once.
                _ = add(key)
                return .none
            }
            return .requeue(after: max(delay(afterFailures: count), notBefore ?? .zero))
        }
    }

    func delay(afterFailures count: Int) -> Duration {
        let delay = baseDelay * (1 << min(count, 20))
        return delay < maxDelay ? delay : maxDelay
    }
}

/// The queue shared by event sources (informers, the resync timer) and the worker.
actor WorkQueue<Key: Hashable & Sendable> {
    private var state: WorkQueueState<Key>
    private var waiters: [(id: Int, continuation: CheckedContinuation<Key?, Never>)] = []
    private var nextWaiterID = 0
    private var shutDown = false

    init(baseDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(60)) {
        state = WorkQueueState(baseDelay: baseDelay, maxDelay: maxDelay)
    }

    var depth: Int { state.depth }

    func add(_ key: Key) {
        guard !shutDown, state.add(key), !waiters.isEmpty, let next = state.next() else { return }
        waiters.removeFirst().continuation.resume(returning: next)
    }

    /// The next key to process; nil once the queue is shut down or the waiting task is cancelled.
    ///
    /// Cancellation must wake a waiting worker: otherwise a cancelled worker (shutdown, or a lost lease) waits
    /// for a key that never comes, and the task group around it never finishes.
    func next() async -> Key? {
        if shutDown || Task.isCancelled { return nil }
        if let key = state.next() { return key }
        let id = nextWaiterID
        nextWaiterID += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { waiters.append((id, $0)) }
        } onCancel: {
            // The handler is synchronous and outside the actor; the hop back is ordered after the append above,
            // because the actor is busy until the continuation is stored.
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(returning: nil)
    }

    func done(_ key: Key, _ outcome: WorkQueueState<Key>.Outcome) -> WorkQueueState<Key>.Action {
        let action = state.done(key, outcome)
        if !waiters.isEmpty, let next = state.next() { waiters.removeFirst().continuation.resume(returning: next) }
        return action
    }

    func shutdown() {
        shutDown = true
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
        waiters.removeAll()
    }
}
