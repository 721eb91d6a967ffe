import Foundation
import XCTest

@testable import Operator

/// client-go's leader-election rules as a pure function of the Lease and of how long it has been seen unchanged.
final class LeaseDecisionTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_700_000_000)

    /// A lease renewed `renewedSecondsAgo` by its holder's clock: what the decision must not rely on.
    func lease(holder: String?, renewedSecondsAgo: Double? = 0) -> LeaseRecord {
        LeaseRecord(
            holder: holder,
            durationSeconds: 15,
            acquireTime: now,
            renewTime: renewedSecondsAgo.map { now.addingTimeInterval(-$0) },
            transitions: 3
        )
    }

    func testNoLeaseIsCreated() {
        XCTAssertEqual(LeaseDecision.decide(nil, identity: "me", unchangedFor: .zero), .create)
    }

    func testOurOwnLeaseIsRenewedEvenWhenLongUnchanged() {
        for unchanged in [Duration.zero, .seconds(100)] {
            XCTAssertEqual(LeaseDecision.decide(lease(holder: "me"), identity: "me", unchangedFor: unchanged), .renew)
        }
    }

    func testALeaseOfAnotherIsFollowedUntilUnchangedForItsDuration() {
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "other"), identity: "me", unchangedFor: .seconds(14)),
            .follow(holder: "other")
        )
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "other"), identity: "me", unchangedFor: .seconds(15)),
            .acquire
        )
    }

    /// The holder's renewTime says nothing: an hour in the future (its clock fast) or an hour in the past (ours
    /// fast), what counts is how long this candidate has watched the lease not change.
    func testTheHoldersClockIsNotTrusted() {
        for renewedSecondsAgo in [-3600.0, 3600.0, nil] {
            XCTAssertEqual(
                LeaseDecision.decide(
                    lease(holder: "other", renewedSecondsAgo: renewedSecondsAgo),
                    identity: "me",
                    unchangedFor: .seconds(1)
                ),
                .follow(holder: "other")
            )
            XCTAssertEqual(
                LeaseDecision.decide(
                    lease(holder: "other", renewedSecondsAgo: renewedSecondsAgo),
                    identity: "me",
                    unchangedFor: .seconds(16)
                ),
                .acquire
            )
        }
    }

    func testAReleasedLeaseIsAcquiredAtOnce() {
        for holder in ["", nil] {
            XCTAssertEqual(LeaseDecision.decide(lease(holder: holder), identity: "me", unchangedFor: .zero), .acquire)
        }
    }

    func testAnObservationCountsFromTheLastChange() {
        let observation = LeaseObservation()
        let start = ContinuousClock.now
        XCTAssertEqual(observation.unchangedFor("1", now: start), .zero)
        XCTAssertEqual(observation.unchangedFor("1", now: start + .seconds(5)), .seconds(5))
        XCTAssertEqual(observation.unchangedFor("2", now: start + .seconds(6)), .zero)
        XCTAssertEqual(observation.unchangedFor("2", now: start + .seconds(20)), .seconds(14))
    }

    func testMicroTimeRoundTrips() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000.123456)
        let text = LeaderElector.microTime(date)
        // Six fractional digits (the last may differ by one: a Date is a Double).
        XCTAssertTrue(text.hasPrefix("2023-11-14T22:13:20.12345") && text.hasSuffix("Z"), text)
        XCTAssertEqual(text.count, "2023-11-14T22:13:20.123456Z".count, text)
        let parsed = try XCTUnwrap(LeaderElector.parseMicroTime(text))
        XCTAssertEqual(parsed.timeIntervalSince1970, date.timeIntervalSince1970, accuracy: 0.000_002)
    }
}
