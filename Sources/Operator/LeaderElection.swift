import Foundation
import KubeAPI
import Logging
import Synchronization

/// What a `coordination.k8s.io/v1` Lease says, in the units the decision needs.
struct LeaseRecord: Sendable, Equatable {
    var holder: String?
    var durationSeconds: Int
    var acquireTime: Date?
    var renewTime: Date?
    var transitions: Int
}

/// The leader-election rules of client-go's `leaderelection`, as a pure function of the lease and of how long this
/// candidate has seen it unchanged.
///
/// Expiry is judged on the candidate's own monotonic clock, never from the `renewTime` another machine wrote: with
/// that, a leader whose clock ran an hour fast would leave a dead lease looking live for an hour, and a candidate whose
/// clock ran fast would take a live one.
enum LeaseDecision: Sendable, Equatable {
    /// No lease yet: create it, holding it.
    case create
    /// We hold it: renew.
    case renew
    /// Free, or not renewed for the lease's duration as this candidate has watched it: take it over.
    case acquire
    /// Someone else holds a live lease.
    case follow(holder: String)

    /// `unchangedFor`: how long, on this process's monotonic clock, the lease has been seen exactly as it is now
    /// (zero when it just changed, or was just seen for the first time).
    static func decide(_ lease: LeaseRecord?, identity: String, unchangedFor: Duration) -> LeaseDecision {
        guard let lease else { return .create }
        guard let holder = lease.holder, !holder.isEmpty else { return .acquire }
        if holder == identity { return .renew }
        if unchangedFor >= .seconds(lease.durationSeconds) { return .acquire }
        return .follow(holder: holder)
    }
}

/// When this process last saw the Lease change (any write moves its resourceVersion), on the monotonic clock.
final class LeaseObservation: Sendable {
    private let seen = Mutex<(resourceVersion: String?, at: ContinuousClock.Instant)?>(nil)

    /// How long the lease has been `resourceVersion` as of `now`; zero when that is new.
    func unchangedFor(_ resourceVersion: String?, now: ContinuousClock.Instant) -> Duration {
        seen.withLock { seen in
            if let last = seen, last.resourceVersion == resourceVersion { return last.at.duration(to: now) }
            seen = (resourceVersion, now)
            return .zero
        }
    }
}

/// Runs `lead` while this process holds the Lease; one replica reconciles, the others wait with warm caches.
///
/// Timings follow client-go: the holder renews every `retryPeriod` and gives up leadership when it cannot renew
/// for `renewDeadline`; a candidate takes over a lease not renewed for `leaseDuration`. On graceful shutdown the
/// leader releases the lease so a successor need not wait for it to expire.
struct LeaderElector: Sendable {
    struct Timing: Sendable {
        var leaseDuration: Duration = .seconds(15)
        var renewDeadline: Duration = .seconds(10)
        var retryPeriod: Duration = .seconds(2)
    }

    let client: KubeClient
    let namespace: String
    let name: String
    let identity: String
    let timing: Timing
    let logger: Logger
    let onLeadershipChange: @Sendable (Bool) -> Void

    /// When the lease last changed, as this process has watched it.
    private let observation = LeaseObservation()

    /// Returns when cancelled.
    func run(lead: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            guard let acquired = await acquire() else { return }
            logger.info("became leader", metadata: ["lease": "\(namespace)/\(name)", "identity": "\(identity)"])
            onLeadershipChange(true)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await lead() }
                group.addTask { await self.renewUntilLost(lastRenewed: acquired) }
                // Whichever ends first (lost lease, or shutdown) ends the other.
                await group.next()
                group.cancelAll()
            }
            onLeadershipChange(false)
            if Task.isCancelled {
                // A cancelled task cannot make a request (the HTTP client refuses it at once): release the lease
                // from a task of its own, so a successor need not wait for it to expire.
                await Task { await self.release(within: timing.retryPeriod) }.value
                return
            }
            logger.warning("lost leadership", metadata: ["lease": "\(namespace)/\(name)"])
        }
    }

    /// Waits until this process holds the lease, and returns when the attempt that got it began; nil if cancelled.
    private func acquire() async -> ContinuousClock.Instant? {
        while !Task.isCancelled {
            let start = ContinuousClock.now
            if await tryAcquireOrRenew() { return start }
            try? await Task.sleep(for: timing.retryPeriod)
        }
        return nil
    }

    /// Renews every `retryPeriod` until a renewal has not succeeded within `renewDeadline` of the last one's start,
    /// then returns (leadership lost). An attempt still in flight at the deadline is abandoned: the lease may
    /// expire for the others `leaseDuration` after that start, and this process must have stopped leading by then.
    private func renewUntilLost(lastRenewed start: ContinuousClock.Instant) async {
        var lastRenewed = start
        while !Task.isCancelled {
            try? await Task.sleep(for: timing.retryPeriod)
            if Task.isCancelled { return }
            let attempt = ContinuousClock.now
            let deadline = lastRenewed + timing.renewDeadline
            guard attempt < deadline else { return }
            switch await Self.result(before: deadline, of: { await self.tryAcquireOrRenew() }) {
            case true?: lastRenewed = attempt
            case false?: continue
            case nil: return
            }
        }
    }

    func tryAcquireOrRenew() async -> Bool {
        let now = Date()
        do {
            let existing: KubeObject?
            do {
                existing = try await client.get(.leases, name: name, namespace: namespace)
            } catch let error as KubeError where error.code == .notFound {
                existing = nil
            }
            let record = existing.map(Self.record)
            let unchanged = observation.unchangedFor(existing?.resourceVersion, now: .now)
            switch LeaseDecision.decide(record, identity: identity, unchangedFor: unchanged) {
            case .follow:
                return false
            case .create:
                _ = try await client.create(.leases, lease(acquired: now, renewed: now, transitions: 0))
            case .renew:
                var object = lease(
                    acquired: record?.acquireTime ?? now,
                    renewed: now,
                    transitions: record?.transitions ?? 0
                )
                object.resourceVersion = existing?.resourceVersion
                _ = try await client.replace(.leases, object)
            case .acquire:
                var object = lease(acquired: now, renewed: now, transitions: (record?.transitions ?? 0) + 1)
                object.resourceVersion = existing?.resourceVersion
                _ = try await client.replace(.leases, object)
            }
            return true
        } catch {
            // A conflict means another candidate wrote first: not an error, just not us this round.
            logger.debug("lease not acquired or renewed", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Hands the lease back (no holder, as client-go's `ReleaseOnCancel` does), giving up after `limit`.
    private func release(within limit: Duration) async {
        let released = await Self.result(before: .now + limit) { () async -> Bool in
            guard var object = try? await client.get(.leases, name: name, namespace: namespace),
                Self.record(object).holder == identity
            else { return false }
            let now = Self.microTime(Date())
            object["spec"]?["holderIdentity"] = .string("")
            object["spec"]?["leaseDurationSeconds"] = 1
            object["spec"]?["acquireTime"] = .string(now)
            object["spec"]?["renewTime"] = .string(now)
            return (try? await client.replace(.leases, object)) != nil
        }
        if released == true {
            logger.info("released leadership", metadata: ["lease": "\(namespace)/\(name)"])
        } else {
            logger.warning(
                "could not release the lease; a successor takes it when it expires",
                metadata: ["lease": "\(namespace)/\(name)"]
            )
        }
    }

    /// What `operation` returns, or nil if `deadline` comes first (the operation is then cancelled, not awaited
    /// further): a request to the API server may hang far longer than leadership may be held on its account.
    static func result<T: Sendable>(
        before deadline: ContinuousClock.Instant,
        of operation: @escaping @Sendable () async -> T
    ) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await operation() }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func lease(acquired: Date, renewed: Date, transitions: Int) -> KubeObject {
        var object = KubeObject(apiVersion: "coordination.k8s.io/v1", kind: "Lease", name: name, namespace: namespace)
        object["spec"] = [
            "holderIdentity": .string(identity),
            "leaseDurationSeconds": .int(Int64(timing.leaseDuration.components.seconds)),
            "acquireTime": .string(Self.microTime(acquired)),
            "renewTime": .string(Self.microTime(renewed)),
            "leaseTransitions": .int(Int64(transitions)),
        ]
        return object
    }

    static func record(_ object: KubeObject) -> LeaseRecord {
        LeaseRecord(
            holder: object[path: "spec", "holderIdentity"]?.stringValue,
            durationSeconds: object[path: "spec", "leaseDurationSeconds"]?.intValue ?? 15,
            acquireTime: object[path: "spec", "acquireTime"]?.stringValue.flatMap(parseMicroTime),
            renewTime: object[path: "spec", "renewTime"]?.stringValue.flatMap(parseMicroTime),
            transitions: object[path: "spec", "leaseTransitions"]?.intValue ?? 0
        )
    }

    /// Kubernetes MicroTime: RFC 3339 with exactly six fractional digits.
    static func microTime(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let micros = Int((date.timeIntervalSince1970 - seconds) * 1_000_000)
        let base = Date(timeIntervalSince1970: seconds).formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: false).dateSeparator(.dash).timeSeparator(
                .colon
            ).timeZone(separator: .omitted)
        )
        let fraction = String(micros)
        return base.dropLast() + "." + String(repeating: "0", count: 6 - fraction.count) + fraction + "Z"
    }

    static func parseMicroTime(_ text: String) -> Date? {
        let parts = text.dropLast().split(separator: ".", maxSplits: 1)
        guard text.hasSuffix("Z"), let whole = try? Date(String(parts[0]) + "Z", strategy: .iso8601) else {
            return try? Date(text, strategy: .iso8601)
        }
        let fraction = parts.count > 1 ? Double("0." + parts[1]) ?? 0 : 0
        return whole.addingTimeInterval(fraction)
    }
}
