import CMallocTrim
import Synchronization

/// When to return freed heap to the operating system: pure, so the rate limiting is unit-tested with explicit
/// instants.
///
/// A burst of thousands of changes allocates a lot briefly (watch events decoded, whole desired states planned,
/// objects encoded), and glibc keeps freed heap pages mapped for reuse, so RSS would stay at the burst's peak
/// instead of showing the much smaller steady state. Trims happen when the work queue goes idle, at most once per
/// `interval`; an idle moment inside the interval schedules one trailing trim, so the end of a burst is always
/// trimmed.
struct HeapTrimSchedule {
    enum Action: Equatable {
        case trimNow
        case trimAfter(Duration)
        case none
    }

    let interval: Duration
    private(set) var lastTrim: ContinuousClock.Instant?
    private(set) var trailingScheduled = false

    init(interval: Duration) {
        self.interval = interval
    }

    mutating func queueWentIdle(at now: ContinuousClock.Instant) -> Action {
        if let last = self.lastTrim, last.duration(to: now) < self.interval {
            guard !self.trailingScheduled else { return .none }
            self.trailingScheduled = true
            return .trimAfter(self.interval - last.duration(to: now))
        }
        self.lastTrim = now
        return .trimNow
    }

    /// The trailing trim ran.
    mutating func trailingTrimmed(at now: ContinuousClock.Instant) {
        self.lastTrim = now
        self.trailingScheduled = false
    }
}

/// Performs `HeapTrimSchedule`'s actions with glibc's `malloc_trim` (a no-op where there is none).
final class HeapTrim: Sendable {
    private let schedule: Mutex<HeapTrimSchedule>

    init(interval: Duration = .seconds(1)) {
        self.schedule = Mutex(HeapTrimSchedule(interval: interval))
    }

    func queueWentIdle() {
        switch self.schedule.withLock({ $0.queueWentIdle(at: .now) }) {
        case .none:
            break
        case .trimNow:
            egress_malloc_trim()
        case .trimAfter(let wait):
            Task {
                try? await Task.sleep(for: wait)
                self.schedule.withLock { $0.trailingTrimmed(at: .now) }
                egress_malloc_trim()
            }
        }
    }
}
