import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// The admin listener both executables run: `/metrics` (Prometheus text), `/healthz` (the process is serving)
/// and `/readyz` (what "ready" means is the caller's: a loaded allow-list for the proxy, synced caches for the
/// operator). It is a port of its own, so it is never reachable through the proxy's `Host` routing and probes
/// never count as proxied requests.
public final class AdminServer: Service, Sendable {
    public let localAddress: SocketAddress
    private let channel: Channel

    /// - Parameter readiness: nil when ready, else the reason `/readyz` reports with a 503.
    public static func bind(
        host: String,
        port: Int,
        registry: PrometheusCollectorRegistry,
        readiness: @escaping @Sendable () -> String?,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> AdminServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                do {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(registry: registry, readiness: readiness)
                    )
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: host, port: port)
            .get()
        return AdminServer(localAddress: channel.localAddress!, channel: channel)
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
    let readiness: @Sendable () -> String?
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, readiness: @escaping @Sendable () -> String?) {
        self.registry = registry
        self.readiness = readiness
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
                if let reason = self.readiness() {
                    (status, contentType, body) = (.serviceUnavailable, "text/plain", Array("\(reason)\n".utf8))
                } else {
                    (status, contentType, body) = (.ok, "text/plain", Array("ready\n".utf8))
                }
            default:
                (status, contentType, body) = (.notFound, "text/plain", Array("not found\n".utf8))
            }
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: "\(body.count)")
            if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
            let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
            context.write(self.wrapOutboundOut(.head(responseHead)), promise: nil)
            let buffer = context.channel.allocator.buffer(bytes: body)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            let keepAlive = head.isKeepAlive
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
