import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Observability
import ServiceLifecycle
import Synchronization

/// Counters that are not metrics, exposed for tests and debugging: the honest way to show bounded memory is to
/// track how many bytes the proxy ever had queued towards a client.
public final class ProxyStats: Sendable {
    private let maxBuffered = NIOLockedValueBox(0)
    /// Client connection handlers not yet freed. Once every connection has closed it is back to zero; a handler
    /// something still holds (its channel context, an upstream connection still pointing at it) keeps it above.
    let clientHandlers = Atomic<Int>(0)
    public var liveClientHandlers: Int { self.clientHandlers.load(ordering: .relaxed) }

    public init() {}

    /// The largest number of bytes ever queued in a client channel's outbound buffer.
    public var maxBufferedBytes: Int { self.maxBuffered.withLockedValue { $0 } }

    func observe(queuedBytes: Int) {
        self.maxBuffered.withLockedValue { $0 = max($0, queuedBytes) }
    }
}

/// Answers a connection over the limit with a 503 and closes it, without parsing anything it sent.
final class RejectConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let response =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
        + "X-Egress-Error: too-many-connections\r\nConnection: close\r\n\r\ntoo many connections\n"

    let metrics: ProxyMetrics

    init(metrics: ProxyMetrics) {
        self.metrics = metrics
    }

    func channelActive(context: ChannelHandlerContext) {
        self.metrics.denial(reason: "too-many-connections")
        let buffer = context.channel.allocator.buffer(string: Self.response)
        context.writeAndFlush(self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// One client connection as the tracker sees it: its channel, and since when it has waited for a request.
final class ClientConnection: Sendable {
    let channel: Channel
    /// When the connection last became idle (the end of the exchange it last answered, or its opening), in
    /// `NIODeadline` uptime nanoseconds; 0 while a request is being answered. Written by the connection's handler,
    /// read by the tracker when it must make room.
    private let idleSince: Synchronization.Atomic<UInt64>

    init(_ channel: Channel) {
        self.channel = channel
        self.idleSince = Atomic(NIODeadline.now().uptimeNanoseconds)
    }

    func answering() { self.idleSince.store(0, ordering: .relaxed) }

    func idle(since start: NIODeadline) { self.idleSince.store(start.uptimeNanoseconds, ordering: .relaxed) }

    /// nil while answering.
    var idleSinceNanoseconds: UInt64? {
        let since = self.idleSince.load(ordering: .relaxed)
        return since == 0 ? nil : since
    }
}

/// Tracks live client connections: enforces the connection limit and drives graceful shutdown.
///
/// At the limit, a new connection takes the place of the one idle longest (waiting for its first or next request),
/// as nginx reuses idle keep-alive connections when it runs out: connections a
/// client opens and keeps alive with an occasional request cannot lock every other client out. Only when every
/// connection is answering a request is the new one refused (503).
final class ConnectionTracker: Sendable {
    fileprivate struct State {
        var channels: [ObjectIdentifier: ClientConnection] = [:]
        var shuttingDown = false
        var drained: EventLoopPromise<Void>?
    }
    private let state: NIOLockedValueBox<State>
    let limit: Int
    private let metrics: ProxyMetrics
    /// Completes once shutdown began and the last connection is gone.
    let drained: EventLoopFuture<Void>

    init(limit: Int, eventLoop: EventLoop, metrics: ProxyMetrics) {
        self.limit = limit
        self.metrics = metrics
        let promise = eventLoop.makePromise(of: Void.self)
        self.drained = promise.futureResult
        self.state = NIOLockedValueBox(State(drained: promise))
        metrics.clientConnections(open: 0)
        metrics.clientConnectionLimit(limit)
    }

    /// Registers a connection, in place of the one idle longest when at the limit; nil when every connection is
    /// answering a request, or shutting down.
    func add(_ channel: Channel) -> ClientConnection? {
        let (added, displaced): (ClientConnection?, ClientConnection?) = self.state.withLockedValue { state in
            guard !state.shuttingDown else { return (nil, nil) }
            var displaced: ClientConnection? = nil
            if state.channels.count >= self.limit {
                let idle = state.channels.lazy.map { (key: $0.key, idleSince: $0.value.idleSinceNanoseconds) }
                guard let oldest = longestIdle(idle) else { return (nil, nil) }
                displaced = state.channels.removeValue(forKey: oldest)
            }
            let connection = ClientConnection(channel)
            state.channels[ObjectIdentifier(channel)] = connection
            // Under the lock, so that the gauge's last value is the count's last value.
            self.metrics.clientConnections(open: state.channels.count)
            return (connection, displaced)
        }
        // Closed by its handler, on its event loop, once what it has under way is done: the load above may have
        // raced with the first bytes of a request, and the end of its last response may still be queued.
        displaced?.channel.pipeline.fireUserInboundEventTriggered(ProxyConnectionDisplacedEvent())
        return added
    }

    func remove(_ channel: Channel) {
        let drained: EventLoopPromise<Void>? = self.state.withLockedValue { state in
            state.channels[ObjectIdentifier(channel)] = nil
            self.metrics.clientConnections(open: state.channels.count)
            return state.shuttingDown && state.channels.isEmpty ? state.takeDrained() : nil
        }
        drained?.succeed()
    }

    var count: Int { self.state.withLockedValue { $0.channels.count } }
    /// How many connections wait for a request (for tests).
    var idleCount: Int {
        self.state.withLockedValue { $0.channels.values.count { $0.idleSinceNanoseconds != nil } }
    }

    /// Starts draining: every connection finishes its current response and closes.
    func beginShutdown() {
        let (channels, drained) = self.state.withLockedValue { state in
            state.shuttingDown = true
            return (state.channels.values.map(\.channel), state.channels.isEmpty ? state.takeDrained() : nil)
        }
        drained?.succeed()
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ProxyShutdownEvent())
        }
    }

    /// Closes every connection now and completes `drained`.
    func closeAll() {
        let (channels, drained) = self.state.withLockedValue { state in
            state.shuttingDown = true
            return (state.channels.values.map(\.channel), state.takeDrained())
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ProxyShutdownDeadlineEvent())
            channel.close(promise: nil)
        }
        drained?.succeed()
    }
}

extension ConnectionTracker.State {
    fileprivate mutating func takeDrained() -> EventLoopPromise<Void>? {
        defer { self.drained = nil }
        return self.drained
    }
}

/// The egress proxy's HTTP/1.1 listener, as a ServiceLifecycle `Service`.
///
/// Design: each client connection is a NIO pipeline ending in `ProxyHandler`; upstream connections are opened on
/// the client's event loop and pooled per loop, so request and response bodies are relayed between two channels of
/// one thread with read/write backpressure, never through Swift concurrency (which would cost a hop and an
/// allocation per body chunk). Structured concurrency is used where it costs nothing per request: `run()` owns the
/// listener's lifetime and graceful shutdown.
public final class ProxyServer: Service, Sendable {
    public let localAddress: SocketAddress
    private let serverChannel: Channel
    private let tracker: ConnectionTracker
    private let group: EventLoopGroup
    private let configuration: ProxyConfiguration
    private let store: AllowListStore
    private let logger: Logger
    private let pools: [NIOLoopBound<LoopContext>]

    /// Binds the listening socket right away (so the port is known, and a taken port fails at startup).
    public static func bind(
        configuration: ProxyConfiguration,
        store: AllowListStore,
        metrics: ProxyMetrics,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        accessLog: AccessLog,
        stats: ProxyStats = ProxyStats()
    ) async throws -> ProxyServer {
        let tracker = ConnectionTracker(
            limit: configuration.maxClientConnections,
            eventLoop: group.next(),
            metrics: metrics
        )
        // One pool + shared context per event loop, created on that loop.
        var contexts: [ObjectIdentifier: NIOLoopBound<LoopContext>] = [:]
        var all: [NIOLoopBound<LoopContext>] = []
        for loop in group.makeIterator() {
            let bound = try await loop.submit {
                NIOLoopBound(
                    LoopContext(
                        configuration: configuration,
                        store: store,
                        pool: UpstreamPool(eventLoop: loop, maxPerKey: configuration.maxUpstreamConnectionsPerHost),
                        metrics: metrics,
                        accessLog: accessLog,
                        stats: stats
                    ),
                    eventLoop: loop
                )
            }.get()
            contexts[ObjectIdentifier(loop)] = bound
            all.append(bound)
        }
        let loopContexts = contexts

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A client may shut down its sending side once its requests are sent and still read the answers.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard let connection = tracker.add(channel) else {
                    // Over the connection limit (or shutting down): a canned 503 once active, then close.
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RejectConnectionHandler(metrics: metrics))
                    }
                }
                channel.closeFuture.whenComplete { _ in tracker.remove(channel) }
                do {
                    guard let loop = loopContexts[ObjectIdentifier(channel.eventLoop)] else {
                        throw ProxyError.configuration("event loop not in the proxy's group")
                    }
                    let sync = channel.pipeline.syncOperations
                    // `ProxyHandler` alone: it parses requests itself (`ClientRequestParser`), queues pipelined
                    // ones (holding reads only while it has some) and writes its responses as bytes.
                    try sync.addHandler(ProxyHandler(loop: loop.value, connection: connection))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel: Channel
        do {
            channel = try await ListenError.naming("proxy", host: configuration.host, port: configuration.port) {
                try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
            }
        } catch {
            tracker.closeAll()  // Completes its drain promise: nothing will ever connect.
            throw error
        }
        guard let address = channel.localAddress else {
            throw ProxyError.configuration("the listening socket has no address")
        }
        return ProxyServer(
            localAddress: address,
            serverChannel: channel,
            tracker: tracker,
            group: group,
            configuration: configuration,
            store: store,
            logger: logger,
            pools: all
        )
    }

    private init(
        localAddress: SocketAddress,
        serverChannel: Channel,
        tracker: ConnectionTracker,
        group: EventLoopGroup,
        configuration: ProxyConfiguration,
        store: AllowListStore,
        logger: Logger,
        pools: [NIOLoopBound<LoopContext>]
    ) {
        self.localAddress = localAddress
        self.serverChannel = serverChannel
        self.tracker = tracker
        self.group = group
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.pools = pools
    }

    /// Idle pooled upstream connections over all event loops (for tests and debugging).
    func idleUpstreamConnections() async throws -> Int {
        var total = 0
        for pool in self.pools {
            total += try await pool.eventLoop.submit { pool.value.pool.idleCount }.get()
        }
        return total
    }

    /// Number of open client connections.
    public var clientConnections: Int { self.tracker.count }
    /// Number of those waiting for a request.
    var idleClientConnections: Int { self.tracker.idleCount }

    /// Serves until graceful shutdown (stop accepting, let in-flight requests finish up to the grace period, then
    /// close what is left) or cancellation (close everything now).
    public func run() async throws {
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await self.serverChannel.closeFuture.get()
                try await self.tracker.drained.get()
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.serverChannel.close(promise: nil)
            self.tracker.closeAll()
        }
        for pool in self.pools {
            pool.eventLoop.execute { pool.value.pool.closeIdle() }
        }
    }

    private func shutdown() {
        self.store.markShuttingDown()
        let delay = self.configuration.shutdownDelay
        guard delay > .zero else { return self.stopAccepting() }
        self.logger.info(
            "graceful shutdown: not ready; still accepting while endpoints update",
            metadata: ["delay_ms": "\(delay.nanoseconds / 1_000_000)"]
        )
        self.serverChannel.eventLoop.scheduleTask(in: delay) { [self] in self.stopAccepting() }
    }

    private func stopAccepting() {
        self.logger.info("graceful shutdown: no new connections, draining in-flight requests")
        self.serverChannel.close(promise: nil)
        let grace = self.serverChannel.eventLoop.scheduleTask(in: self.configuration.shutdownGracePeriod) {
            [tracker, logger] in
            logger.warning("graceful shutdown deadline reached, closing \(tracker.count) connection(s)")
            tracker.closeAll()
        }
        self.tracker.drained.whenComplete { _ in grace.cancel() }
        self.tracker.beginShutdown()
    }
}
