import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// A timeout whose deadline moves on every request or batch of bytes but rarely expires.
///
/// Moving the deadline only stores it; at most one task is scheduled, and when it fires before the (moved)
/// deadline it re-schedules itself for it. This keeps heap insertions and cancellations of scheduled tasks off the
/// per-request path, and replaces NIO's `IdleStateHandler`, which allocates a promise and a callback for every
/// write to learn when it completed. Event-loop bound; `cancel()` breaks the reference cycle with the owner.
final class LazyTimeout {
    private let eventLoop: EventLoop
    private var deadline: NIODeadline?
    private var task: Scheduled<Void>?
    private var scheduledAt: NIODeadline = .distantFuture
    private var onExpiry: (() -> Void)?

    init(eventLoop: EventLoop, onExpiry: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.onExpiry = onExpiry
    }

    var isArmed: Bool { self.deadline != nil }

    /// Expire at `deadline` unless moved or disarmed before.
    func arm(at deadline: NIODeadline) {
        self.deadline = deadline
        if let task = self.task {
            // Only an earlier deadline (another entry's shorter timeout) needs a new task.
            guard deadline < self.scheduledAt else { return }
            task.cancel()
        }
        self.schedule(at: deadline)
    }

    /// Expire `amount` from now, as `coarseNow()` tells the time: up to one kernel tick early.
    func arm(in amount: TimeAmount) { self.arm(at: Self.coarseNow() + amount) }

    /// The monotonic clock `NIODeadline.now()` reads, as of the kernel's last tick (1 to 4 ms ago), at a quarter of
    /// the cost: each request moves several timeouts, and these timeouts count in seconds.
    static func coarseNow() -> NIODeadline {
        #if os(Linux)
            var time = timespec()
            clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
            return .uptimeNanoseconds(UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec))
        #else
            return .now()
        #endif
    }

    /// Stop expiring (the pending task, if any, fires and does nothing).
    func disarm() { self.deadline = nil }

    /// For good: drops the task and the callback.
    func cancel() {
        self.deadline = nil
        self.onExpiry = nil
        self.task?.cancel()
        self.task = nil
    }

    private func schedule(at deadline: NIODeadline) {
        self.scheduledAt = deadline
        self.task = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.task = nil
            guard let current = self.deadline else { return }
            if current > .now() {
                self.schedule(at: current)
            } else {
                self.deadline = nil
                self.onExpiry?()
            }
        }
    }
}
