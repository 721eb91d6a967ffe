import NIOCore
import NIOHTTP1

/// Sent to every client connection when graceful shutdown begins: finish the current response, then close.
struct ProxyShutdownEvent: Sendable {}

/// Sent to the connection idle longest when a new one arrives at the connection limit: it closes as graceful
/// shutdown closes a connection (once idle, after what was written to it has left), so a response whose end is still
/// queued, or a request that began meanwhile, is not cut.
struct ProxyConnectionDisplacedEvent: Sendable {}

/// Sent to every client connection the shutdown deadline closes, just before: what it was doing is logged as cut
/// short by the shutdown, not as the client's doing.
struct ProxyShutdownDeadlineEvent: Sendable {}

/// What the handlers of one event loop share.
final class LoopContext {
    let configuration: ProxyConfiguration
    let store: AllowListStore
    let pool: UpstreamPool
    let metrics: LoopMetrics
    let accessLog: AccessLogFormatter
    let stats: ProxyStats
    /// The current router's entries behind references, for this loop's pool keys.
    var routeTargets = RouteTargets()

    init(
        configuration: ProxyConfiguration,
        store: AllowListStore,
        pool: UpstreamPool,
        metrics: ProxyMetrics,
        accessLog: AccessLog,
        stats: ProxyStats
    ) {
        self.configuration = configuration
        self.store = store
        self.pool = pool
        self.metrics = LoopMetrics(metrics)
        self.accessLog = AccessLogFormatter(accessLog)
        self.stats = stats
    }
}

/// One client connection: validates and routes each request, then relays it to an upstream connection on the same
/// event loop, with backpressure both ways (a side's `read()` is held while the other side is not writable), so a
/// body of any size passes with a bounded amount of memory.
///
/// Pipelined requests (parts of the next request arriving before the current response ended) are queued and
/// replayed in order once the connection is idle; reading is held only while that queue is not empty, so the
/// common keep-alive exchange never toggles the socket's read interest.
final class ProxyHandler: ChannelDuplexHandler {
    /// Request bytes, parsed here (`ClientRequestParser`); no decoder handler in front.
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    /// Responses are written as bytes by `ClientResponseEncoder` (no NIO response encoder in the pipeline).
    typealias OutboundOut = ByteBuffer

    private struct RequestRecord {
        var start: NIODeadline = .now()
        /// nil when the request could not be parsed far enough to tell (logged as `-`).
        var method: HTTPMethod? = nil
        var path: String? = nil
        var name: String? = nil
        /// The metrics of the allow-list entry that matched (looked up once per request); nil for a denial.
        var host: LoopMetrics.Host? = nil
        var status: UInt = 0
        var bytesIn = 0
        var bytesOut = 0
        var reason: String? = nil
        var reusedUpstream = false
        /// When the request was logged (its end, or its refusal): when the connection became idle, if it did.
        var finished: NIODeadline? = nil
        var logged = true
    }

    private let loop: LoopContext
    private var machine = ClientStateMachine()
    private var context: ChannelHandlerContext?
    private var client = ""
    private var upstream: UpstreamConnection?
    private var upstreamReused = false
    private var upstreamKeepAlive = true
    private var tls: TLSContextCache?
    /// The pool slot of the current request's upstream key.
    private var slot: UpstreamPool.Slot?
    private var lastRouting: Routing?
    private var lastHost: (value: [UInt8], name: String)?
    private var upstreamHead: ClientRequestHead?
    private var expectContinue = false
    private var buffered: [ClientRequestPart] = []
    /// The buffered parts are kept until a response starts when the whole request fits in the buffer, so a dead
    /// pooled connection can be retried transparently.
    private var retryable = false
    /// Whether any byte of the current response has been handed to the client's channel. Until one has, a failed
    /// response can still be answered with a 502 instead of a connection closed with no answer.
    private var responseWritten = false
    /// Whether the client can tell the current response's end only by the connection's close (an HTTP/1.0 client,
    /// a response without a length).
    private var responseEndsWithClose = false
    private var clientVersion: HTTPVersion = .http1_1
    private var pendingRead = false
    /// The client channel's writability, as its last change said (asking the channel retains and releases it).
    private var clientWritable = true
    /// Inside a batch of client reads, writes to the upstream are flushed once, at `channelReadComplete` (a GET's
    /// head and end arrive in one batch: one flush through TLS instead of three).
    private var inClientReadBatch = false
    private var upstreamFlushPending = false
    /// Response parts written to the client and not yet flushed.
    private var clientFlushPending = false
    private var responseEncoder = ClientResponseEncoder()
    /// Response bytes not yet written to the channel: a small response leaves as one buffer, written at the end of
    /// the upstream's read batch (or of the response).
    private var output: ByteBuffer?
    private var spare = SpareBuffer()
    /// Parts (or a parse error) of requests that arrived while the current one was still being answered.
    private var pipelined = CircularBuffer<PipelinedInput>()
    private var replaying = false
    /// Slowloris defence: a request head must be complete this long after the connection became idle.
    private var headTimeout: LazyTimeout?
    private var responseTimeout: LazyTimeout?
    /// No bytes either way for the configured client idle timeout closes the connection.
    private var idleTimeout: LazyTimeout?
    private var record = RequestRecord()
    /// This connection in the tracker, told when it answers and when it waits (which connection makes room at the
    /// connection limit).
    private let connection: ClientConnection?
    /// The most bytes queued towards this client during the current request (published to `ProxyStats`).
    private var maxQueued = 0

    private struct Routing {
        let name: String
        let routerID: UInt64
        let host: LoopMetrics.Host
        let slot: UpstreamPool.Slot
    }

    private enum PipelinedInput {
        case part(ClientRequestPart)
        case malformed(HTTPMessageError)
    }

    private var parser: ClientRequestParser
    /// Request bytes read and not parsed yet (the start of a head or chunk-size line).
    private var unparsed: ByteBuffer?
    /// After a malformed request nothing more is parsed: the connection closes after the 400.
    private var parsingStopped = false
    /// The client shut down its sending side: what it sent in full is answered, then the connection closes.
    private var clientInputClosed = false

    /// Body parts up to this size are copied into the bytes held back for one write (here for responses, in
    /// `UpstreamHandler` for requests); larger ones are written as they are.
    static let copiedBodyPart = 16 * 1024

    init(loop: LoopContext, connection: ClientConnection? = nil) {
        self.loop = loop
        self.connection = connection
        self.parser = ClientRequestParser(
            maximumHeadBytes: loop.configuration.maxHeaderBytes,
            maximumHeaderCount: loop.configuration.maxHeaderCount
        )
        loop.stats.clientHandlers.add(1, ordering: .relaxed)
    }

    deinit { self.loop.stats.clientHandlers.subtract(1, ordering: .relaxed) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.client = context.channel.remoteAddress?.ipAddress ?? ""
        self.headTimeout = LazyTimeout(eventLoop: context.eventLoop) { [self] in
            switch self.machine.state {
            case .idle:
                self.perform(self.machine.closeWhenIdle(drain: false))
            case .refused(close: false):
                // The body of a refused request, read only to be discarded, gets no more time than a head: a
                // trickle would otherwise hold the connection for as long as it kept the idle timer moving.
                self.context?.close(promise: nil)
            default:
                break
            }
        }
        self.responseTimeout = LazyTimeout(eventLoop: context.eventLoop) { [self] in
            let host = self.slot?.key.host ?? "the upstream"
            let millis = self.slot?.key.entry.timeouts.responseHeadersMillis ?? 0
            self.upstream?.handler.fail(
                .responseHeadersTimeout("\(host) did not send response headers within \(millis) ms")
            )
        }
        self.idleTimeout = LazyTimeout(eventLoop: context.eventLoop) { [self] in
            if self.machine.waitsOnUpstream { return self.noteActivity() }
            self.record.reason = "client-idle-timeout"
            self.context?.close(promise: nil)
        }
        if context.channel.isActive { self.connectionStarted() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stopTimers()
        // The context holds this handler: keeping it would keep both (and what they hold) after the channel is gone.
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.connectionStarted()
        context.fireChannelActive()
    }

    private func connectionStarted() {
        self.headTimeout?.arm(in: self.loop.configuration.requestHeadTimeout)
        self.noteActivity()
    }

    private func noteActivity() {
        self.idleTimeout?.arm(in: self.loop.configuration.clientIdleTimeout)
    }

    private func stopTimers() {
        self.headTimeout?.cancel()
        self.responseTimeout?.cancel()
        self.idleTimeout?.cancel()
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inClientReadBatch = true
        guard !self.parsingStopped else { return }
        // The first bytes of a request: not a connection to make room with at the connection limit.
        if self.machine.state == .idle { self.connection?.answering() }
        if self.machine.state == .idle, self.pipelined.isEmpty, !(self.headTimeout?.isArmed ?? true) {
            // The first bytes of the next request on a kept-alive connection: its head must now be complete in time.
            self.headTimeout?.arm(in: self.loop.configuration.requestHeadTimeout)
        }
        var input = self.unwrapInboundIn(data)
        if var unparsed = self.unparsed {
            self.unparsed = nil
            unparsed.writeBuffer(&input)
            input = unparsed
        }
        // Each part is handed on as it is pulled from the parser: handling it may write, close or replay queued
        // input, none of which touches the parser or this input.
        do {
            while let part = try self.parser.next(&input) { self.receive(.part(part)) }
            if input.readableBytes > 0 {
                self.unparsed = input
                // The start of a head that followed a request answered while this input was parsed: timed too.
                if self.machine.state == .idle, self.pipelined.isEmpty, !(self.headTimeout?.isArmed ?? true) {
                    self.headTimeout?.arm(in: self.loop.configuration.requestHeadTimeout)
                }
            }
        } catch {
            self.parsingStopped = true
            self.receive(.malformed(error as? HTTPMessageError ?? HTTPMessageError(description: "\(error)")))
        }
    }

    /// Handles input now, or queues it behind the request being answered (it belongs to a pipelined request).
    private func receive(_ input: PipelinedInput) {
        if !self.pipelined.isEmpty || self.requestComplete {
            self.pipelined.append(input)
        } else {
            self.process(input)
        }
    }

    private func process(_ input: PipelinedInput) {
        switch input {
        case .part(let part): self.handle(part)
        case .malformed(let error): self.requestMalformed(error)
        }
    }

    /// The current request has been read completely and its response has not ended: anything read now belongs to
    /// the next request.
    private var requestComplete: Bool {
        switch self.machine.state {
        case .connecting(requestEnded: true), .forwarding(requestEnded: true, _): true
        default: false
        }
    }

    private func handle(_ part: ClientRequestPart) {
        switch part {
        case .head(let head):
            self.receivedHead(head)
        case .body(let buffer):
            self.record.bytesIn += buffer.readableBytes
            self.perform(self.machine.requestBody(), part: part)
        case .end:
            let wasRefused = self.machine.state == .refused(close: false)
            self.perform(self.machine.requestEnd(), part: part)
            if wasRefused, self.machine.state == .idle { self.enteredIdle() }
        }
    }

    /// Ready for the next request: replay pipelined input, and resume reading if a read was held. An idle kept-alive
    /// connection is bounded by the client idle timeout, as nginx's `keepalive_timeout` bounds it; the head timer
    /// starts with the next request's first byte (here if some arrived already).
    private func enteredIdle() {
        // Idle only with nothing of a next request here: bytes of one make the connection busy again.
        if self.unparsed == nil, self.pipelined.isEmpty {
            self.connection?.idle(since: self.record.finished ?? .now())
        }
        if self.unparsed != nil {
            self.headTimeout?.arm(in: self.loop.configuration.requestHeadTimeout)
        } else {
            self.headTimeout?.disarm()
        }
        self.replayPipelined()
        if self.clientInputClosed {
            self.closeOnceAnswered()
            return
        }
        if self.pendingRead, self.pipelined.isEmpty, let context = self.context {
            self.pendingRead = false
            context.read()
        }
    }

    /// Graceful shutdown, and making room at the connection limit: the exchange under way finishes, then the
    /// connection closes; an idle one closes once what was written to it has left (the end of its last response
    /// may still be queued), bounded by the head timeout if the client does not read.
    private func closeGracefully(_ context: ChannelHandlerContext) {
        let action = self.machine.closeWhenIdle(drain: true)
        if action == .close {
            self.closeAfterWrites(context)
        } else {
            self.perform(action)
        }
    }

    /// After the client shut down its sending side (RFC 9112 lets it, once its requests are sent): the requests it
    /// sent in full are answered in order, and the connection closes after the last; a request it left unfinished
    /// can never be answered, so the connection closes now (once what was written has left).
    private func closeOnceAnswered() {
        guard self.pipelined.isEmpty, let context = self.context else { return }
        if self.requestComplete {
            _ = self.machine.closeWhenIdle(drain: true)
        } else {
            self.closeAfterWrites(context)
        }
    }

    /// Closes the connection once everything written to it has left (a close drops writes still queued), or after
    /// the request-head timeout if the client does not read them.
    private func closeAfterWrites(_ context: ChannelHandlerContext) {
        self.parsingStopped = true
        let empty = context.channel.allocator.buffer(capacity: 0)
        context.writeAndFlush(self.wrapOutboundOut(empty)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
        // The channel, not the context: a pending task must not keep this handler alive after the close.
        let channel = context.channel
        let fallback = context.eventLoop.assumeIsolated().scheduleTask(
            in: self.loop.configuration.requestHeadTimeout
        ) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in fallback.cancel() }
    }

    private func replayPipelined() {
        guard !self.replaying else { return }
        self.replaying = true
        defer { self.replaying = false }
        while !self.requestComplete, self.machine.state != .closed, let input = self.pipelined.popFirst() {
            self.process(input)
        }
    }

    private func receivedHead(_ head: ClientRequestHead) {
        self.headTimeout?.disarm()
        self.record = RequestRecord(method: head.method, logged: false)
        self.connection?.answering()
        if self.loop.configuration.logPaths { self.record.path = head.targetString }
        self.clientVersion = head.version
        self.upstreamReused = false
        self.upstreamKeepAlive = true
        self.retryable = false
        self.buffered.removeAll(keepingCapacity: true)

        var refusal: Refusal? = nil
        var body = ClientStateMachine.RequestBody.large
        switch RequestValidation.validate(head) {
        case .failure(let r):
            refusal = r
        case .success(let framing):
            let expectsContinue = RequestValidation.expectsContinue(head)
            switch framing {
            case .none: body = .none
            case .contentLength(let length):
                let small = length <= ClientStateMachine.RequestBody.discardLimit
                body = small && !expectsContinue ? .small : .large
            case .chunked: body = .large
            }
            switch self.target(of: head) {
            case .failure(let r):
                refusal = r
            case .success(let parsed):
                self.record.name = parsed.name
                let (router, tls) = self.loop.store.current
                if let router {
                    if let routing = self.routing(parsed.name, router: router) {
                        self.record.host = routing.host
                        self.tls = tls
                        self.slot = routing.slot
                        // Sanitized (hop-by-hop headers, Host) as it is written: `UpstreamRequestEncoder`.
                        head.upstreamTarget = parsed.upstreamTarget
                        self.upstreamHead = head
                        self.expectContinue = expectsContinue
                    } else {
                        refusal = Refusal(.forbidden, "not-allowed", "\(parsed.name) is not in the egress allow-list")
                    }
                } else {
                    refusal = Refusal(.serviceUnavailable, "not-ready", "the allow-list has not been loaded yet")
                }
            }
        }
        self.perform(self.machine.requestHead(refusal: refusal, keepAlive: head.keepAlive, body: body))
        if self.machine.state == .refused(close: false) {
            self.headTimeout?.arm(in: self.loop.configuration.requestHeadTimeout)
        }
    }

    /// The name `head` targets. A request with the same `Host` bytes as the last one routed on this connection (and
    /// a target in origin form) gets the same name: checking and lowercasing them again cost about 2,000
    /// instructions. Anything else is parsed by `RequestTarget`.
    private func target(of head: ClientRequestHead) -> Result<RequestTarget.Parsed, Refusal> {
        let originForm = head.isOriginForm
        if originForm, head.hostCount == 1, let last = self.lastHost, head.hostValueEquals(last.value) {
            return .success(RequestTarget.Parsed(name: last.name, upstreamTarget: nil))
        }
        let parsed = RequestTarget.parse(head: head, suffix: self.loop.configuration.suffix)
        if originForm, case .success(let target) = parsed, let value = head.hostValue {
            self.lastHost = (value, target.name)
        }
        return parsed
    }

    /// Where requests for `name` go under `router`, or nil when it is not allowed. The last answer is kept: a
    /// keep-alive connection usually asks for the same host again, and routing it afresh (the name hashed into the
    /// list, the metric handles, the pool slot) cost about 1,500 instructions. A reload brings a new router, and a
    /// slot the pool forgot a new slot: both are routed afresh.
    private func routing(_ name: String, router: Router) -> Routing? {
        if let last = self.lastRouting, last.routerID == router.id, last.name == name, !last.slot.isForgotten {
            return last
        }
        guard let route = router.route(for: name) else { return nil }
        let routing = Routing(
            name: name,
            routerID: router.id,
            host: self.loop.metrics.host(route.label),
            slot: self.loop.pool.slot(
                for: UpstreamKey(host: route.upstreamHost, target: self.loop.routeTargets.target(for: route))
            )
        )
        self.lastRouting = routing
        return routing
    }

    private func perform(_ action: ClientStateMachine.Action, part: ClientRequestPart? = nil) {
        guard let context = self.context else { return }
        switch action {
        case .none, .drop:
            break
        case .refuse(let refusal, let close):
            self.writeRefusal(refusal, close: close, context: context)
        case .acquireUpstream:
            if self.expectContinue {
                self.expectContinue = false
                var out = self.takeOutput(context)
                ClientResponseEncoder.writeOwnHead(
                    HTTPResponseHead(version: self.clientVersion, status: .continue),
                    into: &out
                )
                context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
            }
            guard let slot = self.slot, let tls = self.tls else { return }
            self.loop.pool.acquire(slot, tls: tls) { [self] result, reused in
                self.upstreamAcquired(result, reused: reused)
            }
        case .buffer:
            if let part { self.buffered.append(part) }
        case .forwardRequestPart:
            if let part, let upstream = self.upstream {
                upstream.handler.write(part)
                if self.retryable {
                    // Kept for a retry while the request stays small (its head and at most two parts).
                    if self.buffered.count < 2 {
                        self.buffered.append(part)
                    } else {
                        self.retryable = false
                        self.buffered.removeAll(keepingCapacity: true)
                    }
                }
                self.flushUpstreamSoon()
                if case .end = part { self.armResponseTimer() }
            }
        case .sendRequestHeadAndBuffered:
            self.sendRequest()
        case .writeResponseHead, .writeResponseBody:
            break
        case .finish, .abort, .releaseUnusedUpstream:
            break
        case .close:
            // At once: a client that stopped reading must not hold its connection past the head timeout.
            context.close(promise: nil)
        }
    }

    private func upstreamAcquired(_ result: Result<UpstreamConnection, ProxyError>, reused: Bool) {
        switch result {
        case .failure(let error):
            self.upstreamError(error)
        case .success(let connection):
            let action = self.machine.upstreamReady()
            guard action == .sendRequestHeadAndBuffered else {
                self.loop.pool.release(connection, reusable: true, tls: self.tls)
                return
            }
            self.upstream = connection
            self.upstreamReused = reused
            self.record.reusedUpstream = reused
            connection.handler.delegate = self
            self.loop.metrics.upstreamConnection(self.record.host, reused: reused)
            self.perform(action)
        }
    }

    private func sendRequest() {
        guard let upstream = self.upstream, let head = self.upstreamHead else { return }
        upstream.handler.write(.head(head))
        var ended = false
        for part in self.buffered {
            upstream.handler.write(part)
            if case .end = part { ended = true }
        }
        self.flushUpstreamSoon()
        // The parts are kept (here, and as they are forwarded) for a transparent retry on a fresh connection only
        // when a reused one may have gone stale, the request is small and sending it twice does what once does.
        self.retryable = self.upstreamReused && self.buffered.count <= 2 && self.record.method?.isIdempotent == true
        if !self.retryable { self.buffered.removeAll(keepingCapacity: true) }
        if ended { self.armResponseTimer() }
        if self.pendingRead, upstream.handler.isWritable {
            self.pendingRead = false
            self.context?.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if !self.pipelined.isEmpty {
            self.pendingRead = true
            return
        }
        switch self.machine.state {
        case .connecting:
            self.pendingRead = true
        case .forwarding(requestEnded: false, _):
            if self.upstream?.handler.isWritable ?? false {
                context.read()
            } else {
                self.pendingRead = true
            }
        default:
            context.read()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inClientReadBatch = false
        self.noteActivity()
        if self.upstreamFlushPending {
            self.upstreamFlushPending = false
            self.upstream?.handler.flush()
        }
    }

    /// Flushes the upstream now, or at the end of the current batch of client reads.
    private func flushUpstreamSoon() {
        if self.inClientReadBatch {
            self.upstreamFlushPending = true
        } else {
            self.upstreamFlushPending = false
            self.upstream?.handler.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.clientWritable = context.channel.isWritable
        if self.clientWritable { self.upstream?.handler.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.clientWritable = false
        self.stopTimers()
        self.pipelined.removeAll()
        let wasForwarding = self.machine.state
        _ = self.machine.clientClosed()
        if let upstream = self.upstream {
            self.upstream = nil
            if case .forwarding(requestEnded: true, _) = wasForwarding, self.upstreamKeepAlive {
                // The request was sent completely: read the rest of the response into nothing and pool the
                // connection instead of paying for a new TLS connection (clients abandoning requests is common).
                UpstreamDrainer.drain(upstream, pool: self.loop.pool, responseStarted: self.record.status != 0)
            } else {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
        }
        if !self.record.logged {
            self.record.reason = self.record.reason ?? "client-closed"
            self.finishRecord(status: self.record.status == 0 ? 499 : self.record.status, decision: "error")
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func requestMalformed(_ error: HTTPMessageError) {
        guard let context = self.context else { return }
        let refusal: Refusal
        if error.tooLarge {
            refusal = Refusal(
                .requestHeaderFieldsTooLarge,
                "headers-too-large",
                "request headers are too large",
                closeConnection: true
            )
        } else {
            refusal = Refusal(.badRequest, "malformed-request", "malformed HTTP request", closeConnection: true)
        }
        switch self.machine.state {
        case .idle:
            self.record = RequestRecord(logged: false)
            self.writeRefusal(refusal, close: true, context: context)
        case .connecting, .forwarding(_, responseStarted: false):
            // The body of a request being forwarded turned out malformed.
            self.record.reason = refusal.reason
            if let upstream = self.upstream {
                self.upstream = nil
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
            self.writeRefusal(refusal, close: true, context: context)
        default:
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ProxyShutdownEvent || event is ProxyConnectionDisplacedEvent {
            self.closeGracefully(context)
        } else if event is ProxyShutdownDeadlineEvent {
            if !self.record.logged { self.record.reason = "shutdown-deadline" }
        } else if case ChannelEvent.inputClosed = event {
            self.clientInputClosed = true
            self.closeOnceAnswered()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: Responses

    private func writeRefusal(_ refusal: Refusal, close: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        let body = refusal.message + "\n"
        headers.add(name: "content-length", value: "\(body.utf8.count)")
        headers.add(name: "x-egress-error", value: refusal.reason)
        if close {
            headers.add(name: "connection", value: "close")
        } else if self.clientVersion.minor == 0 {
            // An HTTP/1.0 client keeps the connection only when the answer says so.
            headers.add(name: "connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: self.clientVersion, status: refusal.status, headers: headers)
        var out = self.takeOutput(context)
        ClientResponseEncoder.writeOwnHead(head, into: &out)
        if self.record.method?.isHEAD != true {
            out.writeString(body)
            self.record.bytesOut += body.utf8.count
        }
        self.record.reason = refusal.reason
        self.loop.metrics.denial(reason: refusal.reason)
        let decision = refusal.status.code >= 500 ? "error" : "deny"
        self.finishRecord(status: refusal.status.code, decision: decision)
        if close {
            context.writeAndFlush(self.wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
            if self.machine.state == .idle { self.enteredIdle() }
        }
    }

    /// The response bytes not yet written (moved out, so appending to them does not copy), or a new buffer.
    private func takeOutput(_ context: ChannelHandlerContext) -> ByteBuffer {
        if let output = self.output {
            self.output = nil
            return output
        }
        return self.spare.take(context.channel.allocator)
    }

    /// Writes the held response bytes; with `flush`, flushes too, in the same trip down the pipeline.
    private func writeOutput(_ context: ChannelHandlerContext, flush: Bool = false) {
        if let output = self.output {
            self.output = nil
            self.responseWritten = true
            if flush {
                context.writeAndFlush(self.wrapOutboundOut(output), promise: nil)
            } else {
                context.write(self.wrapOutboundOut(output), promise: nil)
            }
        } else if flush {
            context.flush()
        }
    }

    private func finishRecord(status: UInt, decision: String) {
        guard !self.record.logged else { return }
        self.record.logged = true
        self.record.status = status
        if self.maxQueued > 0 {
            self.loop.stats.observe(queuedBytes: self.maxQueued)
            self.maxQueued = 0
        }
        let now = NIODeadline.now()
        self.record.finished = now
        let nanos = (now - self.record.start).nanoseconds
        self.loop.metrics.request(self.record.host, status: status, durationNanoseconds: nanos)
        guard self.loop.accessLog.isEnabled else { return }
        self.loop.accessLog.write(
            AccessRecord(
                client: self.client,
                method: self.record.method?.rawValue ?? "-",
                host: self.record.name,
                path: self.record.path,
                status: status,
                bytesIn: self.record.bytesIn,
                bytesOut: self.record.bytesOut,
                durationNanoseconds: nanos,
                decision: decision,
                reason: self.record.reason,
                upstreamReused: decision == "allow" ? self.record.reusedUpstream : nil
            )
        )
    }

    /// Response headers must start arriving within the entry's timeout after the request was sent.
    private func armResponseTimer() {
        guard let slot = self.slot else { return }
        self.responseTimeout?.arm(in: slot.responseHeadersTimeout)
    }

    private func upstreamError(_ error: ProxyError) {
        self.responseTimeout?.disarm()
        self.record.reason = error.reason
        let action = self.machine.upstreamFailed(error.refusal)
        switch action {
        case .refuse(let refusal, let close):
            self.buffered.removeAll(keepingCapacity: true)
            if let context = self.context { self.writeRefusal(refusal, close: close, context: context) }
        case .abort:
            if !self.responseWritten, let context = self.context {
                // The response head is still held (it waits for the upstream read to complete), so nothing has left:
                // the client gets a 502 that says why, not a connection closed with no answer.
                self.output = nil
                self.record.bytesOut = 0
                self.writeRefusal(error.refusal, close: true, context: context)
                return
            }
            self.finishRecord(status: self.record.status, decision: "error")
            guard let context = self.context else { return }
            if self.responseEndsWithClose, let socket = context.channel as? SocketOptionProvider {
                // The client takes an orderly close for the end of this response: only a reset says it is cut short.
                socket.setSoLinger(NIOLinger(l_onoff: 1, l_linger: 0)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
        default:
            break
        }
    }
}

/// Owns an upstream connection whose client went away after the request was fully sent: discards the response
/// (up to `limit` bytes) and returns the connection to the pool, or closes it.
final class UpstreamDrainer: UpstreamConnectionDelegate {
    static let limit = 1 << 20

    private let connection: UpstreamConnection
    private let pool: UpstreamPool
    private var drained = 0
    private var keepAlive = true
    private var finished = false

    private init(connection: UpstreamConnection, pool: UpstreamPool) {
        self.connection = connection
        self.pool = pool
    }

    static func drain(_ connection: UpstreamConnection, pool: UpstreamPool, responseStarted: Bool) {
        // The upstream handler holds the drainer until it lets the connection go.
        connection.handler.delegate = UpstreamDrainer(connection: connection, pool: pool)
        connection.handler.resumeReading()
    }

    func upstreamRead(_ part: UpstreamResponsePart) {
        switch part {
        case .head(let head):
            self.keepAlive = head.keepAlive
        case .body(let buffer):
            self.drained += buffer.readableBytes
            if self.drained > Self.limit { self.finish(reusable: false) }
        case .end:
            self.finish(reusable: self.keepAlive)
        }
    }

    private func finish(reusable: Bool) {
        guard !self.finished else { return }
        self.finished = true
        self.pool.release(self.connection, reusable: reusable, tls: nil)
    }

    func upstreamReadComplete() {}
    func upstreamWritabilityChanged() {}
    func upstreamFailed(_ error: ProxyError) { self.finished = true }
    var upstreamMayRead: Bool { true }
}

extension ProxyHandler: UpstreamConnectionDelegate {
    func upstreamRead(_ part: UpstreamResponsePart) {
        guard let context = self.context else { return }
        switch part {
        case .head(let head):
            guard self.machine.responseHead() == .writeResponseHead else { return }
            self.responseTimeout?.disarm()
            self.retryable = false
            self.buffered.removeAll(keepingCapacity: true)
            self.upstreamKeepAlive = head.keepAlive
            self.record.status = UInt(head.code)
            self.responseWritten = false
            self.responseEndsWithClose =
                self.clientVersion.minor == 0 && head.mayHaveBody && self.record.method?.isHEAD != true
                && !head.hasContentLength
            if self.responseEndsWithClose {
                // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
                self.machine.responseNeedsClose()
            }
            var out = self.takeOutput(context)
            self.responseEncoder.writeHead(
                head,
                version: self.clientVersion,
                close: self.machine.closeAfterResponse,
                answeringHEAD: self.record.method?.isHEAD == true,
                into: &out
            )
            self.output = out
            self.clientFlushPending = true
        case .body(let buffer):
            guard self.machine.responseBody() == .writeResponseBody, !self.responseEncoder.suppressBody else { return }
            let length = buffer.readableBytes
            self.record.bytesOut += length
            var out = self.takeOutput(context)
            self.responseEncoder.writeBodyPrefix(length: length, into: &out)
            if length <= Self.copiedBodyPart {
                out.writeImmutableBuffer(buffer)
                self.responseEncoder.writeBodySuffix(length: length, into: &out)
                self.output = out
                if out.readableBytes >= Self.copiedBodyPart { self.writeOutput(context) }
            } else {
                // Large parts are written as they are (no copy).
                self.responseWritten = true
                context.write(self.wrapOutboundOut(out), promise: nil)
                context.write(self.wrapOutboundOut(buffer), promise: nil)
                var suffix = context.channel.allocator.buffer(capacity: 2)
                self.responseEncoder.writeBodySuffix(length: length, into: &suffix)
                if suffix.readableBytes > 0 { self.output = suffix }
            }
            self.clientFlushPending = true
            // Below the high-water mark the queue is bounded by it; only a queue above it says whether backpressure
            // holds, and reading the option on every body part costs a dynamic cast.
            if !self.clientWritable,
                let queued = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes),
                queued > self.maxQueued
            {
                self.maxQueued = queued
            }
        case .end(let trailers):
            guard let upstream = self.upstream else { return }
            let action = self.machine.responseEnd(upstreamKeepAlive: self.upstreamKeepAlive)
            guard case .finish(let reuse, let closeClient) = action else { return }
            self.upstream = nil
            self.loop.pool.release(upstream, reusable: reuse, tls: self.tls)
            self.finishRecord(status: self.record.status, decision: "allow")
            self.clientFlushPending = false
            var out = self.takeOutput(context)
            self.responseEncoder.writeEnd(trailers: trailers, into: &out)
            if closeClient {
                context.writeAndFlush(self.wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
                self.spare.keep(out)
                self.enteredIdle()
            }
        }
    }

    func upstreamReadComplete() {
        self.noteActivity()
        if self.clientFlushPending, let context = self.context {
            self.clientFlushPending = false
            self.writeOutput(context, flush: true)
        }
    }

    func upstreamWritabilityChanged() {
        guard self.pendingRead, let upstream = self.upstream, upstream.handler.isWritable else { return }
        self.pendingRead = false
        self.context?.read()
    }

    func upstreamFailed(_ error: ProxyError) {
        guard self.upstream != nil else { return }
        self.upstream = nil
        if self.retryable, self.upstreamReused, error.isUpstreamClosed {
            self.retryable = false
            if self.machine.retryUpstream() == .acquireUpstream {
                // The buffered parts are re-sent on the fresh connection.
                self.perform(.acquireUpstream)
                return
            }
        }
        self.upstreamError(error)
    }

    var upstreamMayRead: Bool { self.clientWritable }
}
