import XCTest

@testable import Operator

/// The work queue's bookkeeping, without a cluster.
final class WorkQueueStateTests: XCTestCase {
    func testAKeyIsQueuedOnce() {
        var state = WorkQueueState<String>()
        XCTAssertTrue(state.add("a"))
        XCTAssertFalse(state.add("a"))
        XCTAssertTrue(state.add("b"))
        XCTAssertEqual(state.depth, 2)
        XCTAssertEqual(state.next(), "a")
        XCTAssertEqual(state.next(), "b")
        XCTAssertNil(state.next())
    }

    func testAKeyAddedWhileProcessingIsProcessedOnceMoreAfterwards() {
        var state = WorkQueueState<String>()
        _ = state.add("a")
        XCTAssertEqual(state.next(), "a")
        // Three events during the pass coalesce into one more pass, and not while the first still runs.
        XCTAssertFalse(state.add("a"))
        XCTAssertFalse(state.add("a"))
        XCTAssertFalse(state.add("a"))
        XCTAssertEqual(state.depth, 0)
        XCTAssertNil(state.next())
        XCTAssertEqual(state.done("a", .success), .none)
        XCTAssertEqual(state.depth, 1)
        XCTAssertEqual(state.next(), "a")
        XCTAssertEqual(state.done("a", .success), .none)
        XCTAssertNil(state.next())
    }

    func testFailuresBackOffExponentiallyUpToTheCap() {
        var state = WorkQueueState<String>(baseDelay: .seconds(1), maxDelay: .seconds(10))
        var delays: [Duration] = []
        for _ in 0..<6 {
            _ = state.add("a")
            XCTAssertEqual(state.next(), "a")
            guard case .requeue(let delay) = state.done("a", .retry) else { return XCTFail("a retry must requeue") }
            delays.append(delay)
        }
        XCTAssertEqual(delays, [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10)])
        // Many failures do not overflow.
        XCTAssertEqual(state.delay(afterFailures: 1_000), .seconds(10))
    }

    func testSuccessForgetsFailures() {
        var state = WorkQueueState<String>(baseDelay: .milliseconds(50), maxDelay: .seconds(60))
        for _ in 0..<3 {
            _ = state.add("a")
            _ = state.next()
            _ = state.done("a", .retry)
        }
        _ = state.add("a")
        _ = state.next()
        XCTAssertEqual(state.done("a", .success), .none)
        _ = state.add("a")
        _ = state.next()
        XCTAssertEqual(state.done("a", .retry), .requeue(after: .milliseconds(50)))
    }

    func testTerminalErrorsAreNotRetriedAndForgetFailures() {
        var state = WorkQueueState<String>(baseDelay: .milliseconds(50), maxDelay: .seconds(60))
        _ = state.add("a")
        _ = state.next()
        _ = state.done("a", .retry)
        _ = state.add("a")
        _ = state.next()
        XCTAssertEqual(state.done("a", .terminal), .none)
        XCTAssertEqual(state.depth, 0)
        _ = state.add("a")
        _ = state.next()
        XCTAssertEqual(state.done("a", .retry), .requeue(after: .milliseconds(50)))
    }

    func testAFailureWithANewEventRetriesAtOnce() {
        var state = WorkQueueState<String>()
        _ = state.add("a")
        _ = state.next()
        _ = state.add("a")
        XCTAssertEqual(state.done("a", .retry), .none)
        XCTAssertEqual(state.next(), "a")
    }

    /// A 429's Retry-After is a floor for the delay, even when a new event arrived meanwhile (retrying at once
    /// would only add to the load the server is shedding); a shorter one leaves the backoff as it is.
    func testAThrottledKeyWaitsAtLeastAsLongAsTheServerAsked() {
        var state = WorkQueueState<String>(baseDelay: .milliseconds(50), maxDelay: .seconds(60))
        _ = state.add("a")
        _ = state.next()
        _ = state.add("a")
        XCTAssertEqual(state.done("a", .throttled(retryAfter: .seconds(5))), .requeue(after: .seconds(5)))
        _ = state.add("a")
        _ = state.next()
        XCTAssertEqual(state.done("a", .throttled(retryAfter: .milliseconds(1))), .requeue(after: .milliseconds(100)))
    }

    func testKeysBackOffIndependently() {
        var state = WorkQueueState<String>(baseDelay: .seconds(1), maxDelay: .seconds(60))
        for _ in 0..<3 {
            _ = state.add("a")
            _ = state.next()
            _ = state.done("a", .retry)
        }
        _ = state.add("b")
        _ = state.next()
        XCTAssertEqual(state.done("b", .retry), .requeue(after: .seconds(1)))
    }
}
