import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

/// The admin listener both executables run: `/metrics` (Prometheus text), `/healthz` (the process is serving)
/// and `/readyz` (what "ready" means is the caller's: a loaded allow-list for the proxy, synced caches for the
/// operator). It is a port of its own, so it is never reachable through the proxy's `Host` routing and probes
/// never count as proxied requests.
public final class AdminServer: Service, Sendable {
    public let localAddress: SocketAddress
    private let channel: Channel
    /// The open connections (tests read how many are idle).
    let connections: AdminConnections

    /// What one client may hold. The port is open to probes and scrapers across the cluster (the proxy's
    /// NetworkPolicy lets every namespace reach it), so a client that connects and stays silent, trickles a request,
    /// or sends requests without reading the answers must not hold memory or connections for long.
    public struct Limits: Sendable {
        /// Each request must be complete, and each response written, this long after the connection opened or the
        /// exchange before it ended; otherwise the connection is closed. Probes and scrapes take milliseconds.
        public var requestTimeout: TimeAmount
        /// At this many connections, a new one takes the place of the one idle longest (waiting for its first or
        /// next request), as nginx reuses idle keep-alive connections: clients that open connections and hold them
        /// cannot lock the kubelet's probes out. When every one is busy answering, the new one is closed.
        public var maximumConnections: Int

        public init(requestTimeout: TimeAmount = .seconds(10), maximumConnections: Int = 256) {
            self.requestTimeout = requestTimeout
            self.maximumConnections = maximumConnections
        }
    }

    /// A page of the caller's own (`GET` only): its content type and body, or nil for a 503 (not available yet).
    public typealias Page = @Sendable () -> (contentType: String, body: [UInt8])?

    /// - Parameters:
    ///   - readiness: nil when ready, else the reason `/readyz` reports with a 503.
    ///   - pages: more `GET` paths, e.g. the proxy's `/allowlist`.
    public static func bind(
        host: String,
        port: Int,
        registry: PrometheusCollectorRegistry,
        readiness: @escaping @Sendable () -> String?,
        pages: [String: Page] = [:],
        limits: Limits = Limits(),
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> AdminServer {
        let connections = AdminConnections(maximum: limits.maximumConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.admit(channel) else {
                    // A failed initializer makes the server close the accepted connection.
                    return channel.eventLoop.makeFailedFuture(ConnectionLimitReached())
                }
                channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                do {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(
                            registry: registry,
                            readiness: readiness,
                            pages: pages,
                            requestTimeout: limits.requestTimeout,
                            connections: connections
                        )
                    )
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel = try await ListenError.naming("admin", host: host, port: port) {
            try await bootstrap.bind(host: host, port: port).get()
        }
        return AdminServer(localAddress: channel.localAddress!, channel: channel, connections: connections)
    }

    private init(localAddress: SocketAddress, channel: Channel, connections: AdminConnections) {
        self.localAddress = localAddress
        self.channel = channel
        self.connections = connections
    }

    /// Closes the listener (for callers that bound it without running it as a service).
    public func close() async {
        try? await self.channel.close()
    }

    public func run() async throws {
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await self.channel.closeFuture.get()
            } onGracefulShutdown: {
                self.channel.close(promise: nil)
            }
        } onCancel: {
            self.channel.close(promise: nil)
        }
    }
}

/// The open admin connections, and since when each has been idle (nil while it answers a request).
final class AdminConnections: Sendable {
    private struct Slot {
        let channel: Channel
        /// `NIODeadline` uptime nanoseconds; nil while answering.
        var idleSince: UInt64?
        /// Requests being answered: NIO's pipelining handler hands on the next request before the write of the
        /// answer before it completes, so a flag would be cleared while the next one is still answered.
        var answering = 0
    }
    private let slots = Mutex<[ObjectIdentifier: Slot]>([:])
    private let maximum: Int

    init(maximum: Int) {
        self.maximum = maximum
    }

    /// Registers `channel`, in place of the connection idle longest when at the limit; false when every connection
    /// is busy answering.
    func admit(_ channel: Channel) -> Bool {
        let (admitted, displaced): (Bool, Channel?) = self.slots.withLock { slots in
            var displaced: Channel? = nil
            if slots.count >= self.maximum {
                guard let oldest = longestIdle(slots.lazy.map { (key: $0.key, idleSince: $0.value.idleSince) })
                else { return (false, nil) }
                displaced = slots.removeValue(forKey: oldest)?.channel
            }
            slots[ObjectIdentifier(channel)] = Slot(channel: channel, idleSince: NIODeadline.now().uptimeNanoseconds)
            return (true, displaced)
        }
        displaced?.close(promise: nil)
        return admitted
    }

    func remove(_ channel: Channel) {
        self.slots.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// How many are open, and how many of them wait for a request (for tests).
    var count: Int { self.slots.withLock { $0.count } }
    var idleCount: Int { self.slots.withLock { $0.values.count { $0.idleSince != nil } } }

    /// A connection is busy from a complete request until its answer is written, idle otherwise.
    func setBusy(_ channel: Channel, _ busy: Bool) {
        self.slots.withLock { slots in
            guard var slot = slots[ObjectIdentifier(channel)] else { return }
            slot.answering = max(0, slot.answering + (busy ? 1 : -1))
            slot.idleSince = slot.answering > 0 ? nil : NIODeadline.now().uptimeNanoseconds
            slots[ObjectIdentifier(channel)] = slot
        }
    }
}

private struct ConnectionLimitReached: Error {}

/// A listener that could not be opened, said with its address and role (NIO's error names only the system call).
public struct ListenError: Error, CustomStringConvertible {
    public var description: String

    /// `bind`'s result, or its error said as which listener could not listen where.
    public static func naming(
        _ listener: String,
        host: String,
        port: Int,
        _ bind: () async throws -> Channel
    ) async throws -> Channel {
        do {
            return try await bind()
        } catch {
            throw ListenError(description: "cannot listen on \(host):\(port) (\(listener) port): \(error)")
        }
    }
}

/// Of the connections at a limit, the one waiting longest for a request (nil when every one is answering): the one
/// a new connection takes the place of, as nginx reuses idle keep-alive connections when it runs out. `idleSince`
/// is nil for a connection answering a request.
public func longestIdle<Key>(_ connections: some Sequence<(key: Key, idleSince: UInt64?)>) -> Key? {
    var oldest: (key: Key, since: UInt64)? = nil
    for (key, idleSince) in connections {
        if let since = idleSince, since < oldest?.since ?? .max { oldest = (key, since) }
    }
    return oldest?.key
}

/// Answers one request at a time (NIO's pipelining handler in front holds the rest). A request that completes
/// while the last response still waits to leave waits too, so a client that does not read its answers holds at most
/// one of them; and every exchange has `requestTimeout` to happen.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let readiness: @Sendable () -> String?
    let pages: [String: AdminServer.Page]
    private let requestTimeout: TimeAmount
    private let connections: AdminConnections?
    private var head: HTTPRequestHead?
    /// A complete request waiting for the channel to become writable.
    private var waiting: HTTPRequestHead?
    private var deadline: Scheduled<Void>?

    init(
        registry: PrometheusCollectorRegistry,
        readiness: @escaping @Sendable () -> String?,
        pages: [String: AdminServer.Page],
        requestTimeout: TimeAmount,
        connections: AdminConnections? = nil
    ) {
        self.registry = registry
        self.readiness = readiness
        self.pages = pages
        self.requestTimeout = requestTimeout
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.restartDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        self.deadline = nil
    }

    /// The next step of the exchange (a request complete, a response written) must happen within `requestTimeout`.
    private func restartDeadline(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.deadline = context.eventLoop.scheduleTask(in: self.requestTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.connections?.setBusy(context.channel, true)
            self.restartDeadline(context: context)
            if context.channel.isWritable {
                self.respond(to: head, context: context)
            } else {
                self.waiting = head
            }
        }
    }

    /// A request NIO cannot parse: its error handler in front has answered 400 with `Connection: close`; close,
    /// rather than hold the connection until the request timeout.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let head = self.waiting {
            self.waiting = nil
            self.respond(to: head, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// A response's parts.
    struct Answer: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]
    }

    /// Answers on NIO's blocking thread pool, then writes on the channel's event loop: the proxy's admin port shares
    /// the proxy's event loops, and a scrape of thousands of hosts' histograms, or an `/allowlist` of thousands of
    /// entries, must not hold up the requests of that loop.
    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (registry, readiness, pages) = (self.registry, self.readiness, self.pages)
        let (method, uri) = (head.method, head.uri)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) {
            Self.answer(method: method, uri: uri, registry: registry, readiness: readiness, pages: pages)
        }.whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .success(let answer): handler.write(answer, for: head, context: context)
            case .failure: context.close(promise: nil)
            }
        }
    }

    static func answer(
        method: HTTPMethod,
        uri: String,
        registry: PrometheusCollectorRegistry,
        readiness: @Sendable () -> String?,
        pages: [String: AdminServer.Page]
    ) -> Answer {
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        switch (method, path) {
        case (.GET, "/metrics"):
            return Answer(
                status: .ok,
                contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: registry.emitToBuffer()
            )
        case (.GET, "/healthz"):
            return Answer(status: .ok, contentType: "text/plain", body: Array("ok\n".utf8))
        case (.GET, "/readyz"):
            if let reason = readiness() {
                return Answer(status: .serviceUnavailable, contentType: "text/plain", body: Array("\(reason)\n".utf8))
            }
            return Answer(status: .ok, contentType: "text/plain", body: Array("ready\n".utf8))
        case (.GET, _) where pages[path] != nil:
            guard let page = pages[path]!() else {
                return Answer(
                    status: .serviceUnavailable,
                    contentType: "text/plain",
                    body: Array("not available yet\n".utf8)
                )
            }
            return Answer(status: .ok, contentType: page.contentType, body: page.body)
        default:
            return Answer(status: .notFound, contentType: "text/plain", body: Array("not found\n".utf8))
        }
    }

    private func write(_ answer: Answer, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (status, contentType, body) = (answer.status, answer.contentType, answer.body)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: "\(body.count)")
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(responseHead)), promise: nil)
        let buffer = context.channel.allocator.buffer(bytes: body)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { result in
            if keepAlive, case .success = result {
                self.connections?.setBusy(context.channel, false)
                self.restartDeadline(context: context)
            } else {
                context.close(promise: nil)
            }
        }
    }
}
