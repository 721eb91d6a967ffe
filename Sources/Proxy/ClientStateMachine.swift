/// The life of one client connection, one request at a time (`ProxyHandler` queues pipelined requests and feeds
/// them in, in order, once the machine is idle again).
///
/// Pure: events in, an action out; `ProxyHandler` performs the actions. No NIO types, so it is unit-tested
/// without channels.
struct ClientStateMachine {
    enum State: Equatable {
        /// Waiting for a request head.
        case idle
        /// The proxy answered the request itself; request body parts are discarded until the request ends.
        case refused(close: Bool)
        /// Waiting for an upstream connection; request body parts are buffered (reads are held meanwhile).
        case connecting(requestEnded: Bool)
        /// Relaying between client and upstream.
        case forwarding(requestEnded: Bool, responseStarted: Bool)
        case closed
    }

    enum Action: Equatable {
        case none
        /// Write a locally generated response; close the connection afterwards when `close`.
        case refuse(Refusal, close: Bool)
        /// Get an upstream connection (and answer `100 Continue` first when asked).
        case acquireUpstream
        /// Keep the body part until the upstream is ready.
        case buffer
        case drop
        /// Send the head and everything buffered to the upstream.
        case sendRequestHeadAndBuffered
        case forwardRequestPart
        case writeResponseHead
        case writeResponseBody
        /// The exchange is complete: return the upstream connection (if `reuseUpstream`) and end the response.
        case finish(reuseUpstream: Bool, closeClient: Bool)
        /// The response could not be completed: close both sides (the client sees a truncated response, not a
        /// silently wrong one).
        case abort
        /// Give back an upstream connection nobody wants any more.
        case releaseUnusedUpstream
        case close
    }

    private(set) var state: State = .idle

    /// Whether the exchange waits on the upstream, not the client: for a connection, then for a response or the
    /// rest of it. The upstream's own timeouts (connect, response headers, idle) bound that wait; the client's idle
    /// timeout must not cut off a slow answer or a pause in a stream.
    var waitsOnUpstream: Bool {
        switch self.state {
        case .connecting, .forwarding(requestEnded: true, _): return true
        default: return false
        }
    }
    /// Close the client connection after the current response (client asked, or graceful shutdown).
    private(set) var closeAfterResponse = false
    /// Whether the current request has a body (its framing says so).
    private var requestHasBody = false

    /// What follows a request head.
    enum RequestBody: Equatable {
        case none
        /// A `Content-Length` body of at most `discardLimit` bytes.
        case small
        /// A larger or chunked body, or one the client may never send (`Expect: 100-continue`).
        case large

        /// A refused request's body up to this size is read and discarded, so the connection stays usable.
        static let discardLimit = 64 * 1024
    }

    mutating func requestHead(refusal: Refusal?, keepAlive: Bool, body: RequestBody) -> Action {
        guard case .idle = self.state else { return .none }
        if !keepAlive { self.closeAfterResponse = true }
        let hasBody = body != .none
        self.requestHasBody = hasBody
        if let refusal {
            // A refused request with a small body is answered and its body discarded (as nginx does); rather than
            // reading a large or unbounded one to stay in sync, close.
            let close = refusal.closeConnection || body == .large || self.closeAfterResponse
            self.state = .refused(close: close)
            return .refuse(refusal, close: close)
        }
        self.state = .connecting(requestEnded: false)
        return .acquireUpstream
    }

    mutating func requestBody() -> Action {
        switch self.state {
        case .connecting: return .buffer
        case .forwarding(requestEnded: false, _): return .forwardRequestPart
        default: return .drop
        }
    }

    mutating func requestEnd() -> Action {
        switch self.state {
        case .refused(let close):
            if close { return .none }
            if self.closeAfterResponse {
                // Graceful shutdown began while the refused body was being read: nothing more will be read.
                self.state = .closed
                return .close
            }
            self.state = .idle
            return .none
        case .connecting:
            self.state = .connecting(requestEnded: true)
            return .buffer
        case .forwarding(requestEnded: false, let responseStarted):
            self.state = .forwarding(requestEnded: true, responseStarted: responseStarted)
            return .forwardRequestPart
        default:
            return .drop
        }
    }

    mutating func upstreamReady() -> Action {
        guard case .connecting(let requestEnded) = self.state else { return .releaseUnusedUpstream }
        self.state = .forwarding(requestEnded: requestEnded, responseStarted: false)
        return .sendRequestHeadAndBuffered
    }

    mutating func upstreamFailed(_ refusal: Refusal) -> Action {
        switch self.state {
        case .connecting(let requestEnded), .forwarding(let requestEnded, responseStarted: false):
            if self.closeAfterResponse || (!requestEnded && self.requestHasBody) {
                // Part of the body is still coming: we cannot stay in sync cheaply, so close.
                self.state = .closed
                return .refuse(refusal, close: true)
            }
            // Only the end of a body-less request may still be coming: wait for it, keep the connection.
            self.state = requestEnded ? .idle : .refused(close: false)
            return .refuse(refusal, close: false)
        case .forwarding(_, responseStarted: true):
            self.state = .closed
            return .abort
        default:
            return .none
        }
    }

    /// A reused pooled connection turned out to be dead before any response byte: try a fresh one (only done when
    /// the whole request is still buffered, so nothing is lost).
    mutating func retryUpstream() -> Action {
        guard case .forwarding(true, false) = self.state else { return .none }
        self.state = .connecting(requestEnded: true)
        return .acquireUpstream
    }

    /// The response cannot be delimited for this client other than by closing (HTTP/1.0 client, no length).
    mutating func responseNeedsClose() {
        self.closeAfterResponse = true
    }

    mutating func responseHead() -> Action {
        guard case .forwarding(let requestEnded, false) = self.state else { return .none }
        // An answer before the request's end: the client connection closes after it (see `responseEnd`), which the
        // response head must say.
        if !requestEnded { self.closeAfterResponse = true }
        self.state = .forwarding(requestEnded: requestEnded, responseStarted: true)
        return .writeResponseHead
    }

    mutating func responseBody() -> Action {
        guard case .forwarding(_, true) = self.state else { return .none }
        return .writeResponseBody
    }

    mutating func responseEnd(upstreamKeepAlive: Bool) -> Action {
        guard case .forwarding(let requestEnded, true) = self.state else { return .none }
        // An upstream that answered before the request body was complete cannot be reused, and the rest of the
        // client's body would have to be read to stay in sync: close both.
        let closeClient = !requestEnded || self.closeAfterResponse
        self.state = closeClient ? .closed : .idle
        return .finish(reuseUpstream: requestEnded && upstreamKeepAlive, closeClient: closeClient)
    }

    /// The request head did not arrive in time, or graceful shutdown began.
    mutating func closeWhenIdle(drain: Bool) -> Action {
        if drain { self.closeAfterResponse = true }
        switch self.state {
        case .idle, .refused(close: true):
            self.state = .closed
            return .close
        default:
            return .none
        }
    }

    mutating func clientClosed() -> Action {
        let previous = self.state
        self.state = .closed
        switch previous {
        case .forwarding: return .abort
        default: return .none
        }
    }
}
