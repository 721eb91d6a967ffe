import CMallocTrim
import Synchronization

/// Gives memory that was freed back to the operating system when the work queue goes idle.
///
/// A burst of thousands of changes allocates a lot briefly (watch events decoded, whole desired states planned,
/// objects encoded), and glibc keeps freed heap pages mapped for reuse, so RSS would stay at the burst's peak
/// instead of showing the much smaller steady state. Rate-limited to once per `interval`; an idle moment inside
/// the interval schedules one trailing trim, so the end of a burst is always trimmed.
final class HeapTrim: Sendable {
    private struct State {
        var last: ContinuousClock.Instant?
        var trailingScheduled = false
    }
    private let interval: Duration
    private let state = Mutex(State())

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    func queueWentIdle() {
        let now = ContinuousClock.now
        let wait: Duration? = self.state.withLock { state in
            if let last = state.last, last.duration(to: now) < self.interval {
                guard !state.trailingScheduled else { return nil }
                state.trailingScheduled = true
                return self.interval - last.duration(to: now)
            }
            state.last = now
            return .zero
        }
        guard let wait else { return }
        if wait == .zero {
            Self.trim()
            return
        }
        Task {
            try? await Task.sleep(for: wait)
            self.state.withLock {
                $0.last = .now
                $0.trailingScheduled = false
            }
            Self.trim()
        }
    }

    private static func trim() {
        egress_malloc_trim()
    }
}
