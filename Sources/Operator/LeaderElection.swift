import Foundation
import KubeAPI
import Logging

/// What a `coordination.k8s.io/v1` Lease says, in the units the decision needs.
struct LeaseRecord: Sendable, Equatable {
    var holder: String?
    var durationSeconds: Int
    var acquireTime: Date?
    var renewTime: Date?
    var transitions: Int
}

/// The leader-election rules of client-go's `leaderelection`, as a pure function of the lease and the clock.
enum LeaseDecision: Sendable, Equatable {
    /// No lease yet: create it, holding it.
    case create
    /// We hold it: renew.
    case renew
    /// Free or expired: take it over (one more transition).
    case acquire
    /// Someone else holds a live lease.
    case follow(holder: String)

    static func decide(_ lease: LeaseRecord?, identity: String, now: Date) -> LeaseDecision {
        guard let lease else { return .create }
        guard let holder = lease.holder, !holder.isEmpty else { return .acquire }
        if holder == identity { return .renew }
        let lastRenew = lease.renewTime ?? lease.acquireTime ?? .distantPast
        if lastRenew.addingTimeInterval(TimeInterval(lease.durationSeconds)) < now { return .acquire }
        return .follow(holder: holder)
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

    /// Returns when cancelled.
    func run(lead: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            guard await acquire() else { return }
            logger.info("became leader", metadata: ["lease": "\(namespace)/\(name)", "identity": "\(identity)"])
            onLeadershipChange(true)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await lead() }
                group.addTask { await self.renewUntilLost() }
                // Whichever ends first (lost lease, or shutdown) ends the other.
                await group.next()
                group.cancelAll()
            }
            onLeadershipChange(false)
            if Task.isCancelled {
                await release()
                return
            }
            logger.warning("lost leadership", metadata: ["lease": "\(namespace)/\(name)"])
        }
    }

    /// Waits until this process holds the lease; false if cancelled first.
    private func acquire() async -> Bool {
        while !Task.isCancelled {
            if await tryAcquireOrRenew() { return true }
            try? await Task.sleep(for: timing.retryPeriod)
        }
        return false
    }

    private func renewUntilLost() async {
        let clock = ContinuousClock()
        var lastRenew = clock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: timing.retryPeriod)
            if Task.isCancelled { return }
            if await tryAcquireOrRenew() {
                lastRenew = clock.now
            } else if lastRenew.duration(to: clock.now) > timing.renewDeadline {
                return
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
            switch LeaseDecision.decide(record, identity: identity, now: now) {
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

    private func release() async {
        guard var object = try? await client.get(.leases, name: name, namespace: namespace),
            Self.record(object).holder == identity
        else { return }
        object["spec"]?["holderIdentity"] = .string("")
        object["spec"]?["leaseDurationSeconds"] = 1
        _ = try? await client.replace(.leases, object)
        logger.info("released leadership", metadata: ["lease": "\(namespace)/\(name)"])
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
