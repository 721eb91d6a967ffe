import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is serving) and `/readyz` (a good
/// allow-list is loaded and we are not shutting down). Kept off the proxy port so it can never be reached through
/// the `Host` routing and so probes do not count as proxied requests.
public final class AdminServer: Service, Sendable {
    public let localAddress: SocketAddress
    private let channel: Channel

    public static func bind(
        host: String,
        port: Int,
        registry: PrometheusCollectorRegistry,
        store: AllowListStore,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> AdminServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                do {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(registry: registry, store: store))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: host, port: port)
            .get()
        guard let address = channel.localAddress else {
            throw ProxyError.configuration("the admin socket has no address")
        }
        return AdminServer(localAddress: address, channel: channel)
    }

    private init(localAddress: SocketAddress, channel: Channel) {
        self.localAddress = localAddress
        self.channel = channel
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

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let store: AllowListStore
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, store: AllowListStore) {
        self.registry = registry
        self.store = store
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let (status, contentType, body): (HTTPResponseStatus, String, [UInt8])
            switch (head.method, path) {
            case (.GET, "/metrics"):
                (status, contentType, body) = (
                    .ok, "text/plain; version=0.0.4; charset=utf-8", self.registry.emitToBuffer()
                )
            case (.GET, "/healthz"):
                (status, contentType, body) = (.ok, "text/plain", Array("ok\n".utf8))
            case (.GET, "/readyz"):
                (status, contentType, body) =
                    self.store.isReady
                    ? (.ok, "text/plain", Array("ready\n".utf8))
                    : (.serviceUnavailable, "text/plain", Array("allow-list not loaded\n".utf8))
            default:
                (status, contentType, body) = (.notFound, "text/plain", Array("not found\n".utf8))
            }
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: "\(body.count)")
            if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
            context.write(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                promise: nil
            )
            context.write(
                self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))),
                promise: nil
            )
            let keepAlive = head.isKeepAlive
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
