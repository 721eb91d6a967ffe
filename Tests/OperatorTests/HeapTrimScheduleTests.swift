import XCTest

@testable import Operator

final class HeapTrimScheduleTests: XCTestCase {
    func testTrimsAtOnceThenAtMostOncePerIntervalWithOneTrailingTrim() {
        var schedule = HeapTrimSchedule(interval: .seconds(1))
        let start = ContinuousClock.now
        XCTAssertEqual(schedule.queueWentIdle(at: start), .trimNow)
        // Idle again within the interval: one trailing trim for the rest of it, then nothing more.
        XCTAssertEqual(schedule.queueWentIdle(at: start + .milliseconds(300)), .trimAfter(.milliseconds(700)))
        XCTAssertEqual(schedule.queueWentIdle(at: start + .milliseconds(600)), .none)
        schedule.trailingTrimmed(at: start + .seconds(1))
        XCTAssertEqual(schedule.queueWentIdle(at: start + .milliseconds(1500)), .trimAfter(.milliseconds(500)))
        schedule.trailingTrimmed(at: start + .seconds(2))
        // Quiet for longer than the interval: trim at once again.
        XCTAssertEqual(schedule.queueWentIdle(at: start + .seconds(5)), .trimNow)
    }
}
