import Foundation
import XCTest

@testable import Operator

/// client-go's leader-election rules as a pure function of the Lease and the clock.
final class LeaseDecisionTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_700_000_000)

    func lease(holder: String?, renewedSecondsAgo: Double?, acquiredSecondsAgo: Double? = nil) -> LeaseRecord {
        LeaseRecord(
            holder: holder,
            durationSeconds: 15,
            acquireTime: acquiredSecondsAgo.map { now.addingTimeInterval(-$0) },
            renewTime: renewedSecondsAgo.map { now.addingTimeInterval(-$0) },
            transitions: 3
        )
    }

    func testNoLeaseIsCreated() {
        XCTAssertEqual(LeaseDecision.decide(nil, identity: "me", now: now), .create)
    }

    func testOurOwnLeaseIsRenewedEvenWhenExpired() {
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "me", renewedSecondsAgo: 1), identity: "me", now: now),
            .renew
        )
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "me", renewedSecondsAgo: 100), identity: "me", now: now),
            .renew
        )
    }

    func testALiveLeaseOfAnotherIsFollowed() {
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "other", renewedSecondsAgo: 14), identity: "me", now: now),
            .follow(holder: "other")
        )
    }

    func testAnExpiredLeaseIsAcquired() {
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "other", renewedSecondsAgo: 16), identity: "me", now: now),
            .acquire
        )
    }

    func testAReleasedLeaseIsAcquired() {
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: "", renewedSecondsAgo: 1), identity: "me", now: now),
            .acquire
        )
        XCTAssertEqual(
            LeaseDecision.decide(lease(holder: nil, renewedSecondsAgo: 1), identity: "me", now: now),
            .acquire
        )
    }

    func testWithoutRenewTimeTheAcquireTimeCounts() {
        XCTAssertEqual(
            LeaseDecision.decide(
                lease(holder: "other", renewedSecondsAgo: nil, acquiredSecondsAgo: 5),
                identity: "me",
                now: now
            ),
            .follow(holder: "other")
        )
        XCTAssertEqual(
            LeaseDecision.decide(
                lease(holder: "other", renewedSecondsAgo: nil, acquiredSecondsAgo: nil),
                identity: "me",
                now: now
            ),
            .acquire
        )
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
