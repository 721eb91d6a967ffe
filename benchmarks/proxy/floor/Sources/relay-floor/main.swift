// The floor of the proxy benchmark: the same job as egress-proxy (plain HTTP in, verified TLS with SNI out, one
// upstream connection kept per client connection) with no proxy logic at all, on NIO and NIOSSL alone.
//
//   relay-floor LISTEN_PORT UPSTREAM_PORT CA_FILE SERVER_NAME [bytes|http]
//
// `bytes` (default) copies bytes both ways: no HTTP parsing, so it is what NIO's channels and NIOSSL cost.
// `http` adds NIO's HTTP/1.1 codecs on both sides and relays parts (Host rewritten, nothing else): what NIO's HTTP
// stack costs on top. Neither validates, routes, pools, times out, logs or counts anything: not a usable proxy.
import NIOCore
import NIOPosix
import NIOSSL

/// Copies what one channel reads to its partner, flushing at the end of each read batch.
final class ByteRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: ByteRelay?
    private(set) var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { self.partner?.context?.write(data, promise: nil) }

    func channelReadComplete(context: ChannelHandlerContext) { self.partner?.context?.flush() }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

struct Options: Sendable {
    var listenPort: Int
    var upstreamPort: Int
    var caFile: String
    var serverName: String
    var http: Bool

    init(_ arguments: [String]) {
        guard arguments.count >= 5, let listen = Int(arguments[1]), let upstream = Int(arguments[2]) else {
            fatalError("usage: relay-floor LISTEN_PORT UPSTREAM_PORT CA_FILE SERVER_NAME [bytes|http]")
        }
        self.listenPort = listen
        self.upstreamPort = upstream
        self.caFile = arguments[3]
        self.serverName = arguments[4]
        self.http = arguments.count > 5 && arguments[5] == "http"
    }
}

func serve(_ options: Options) throws {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .file(options.caFile)
    let sslContext = try NIOSSLContext(configuration: tls)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { client in
            if options.http { return HTTPRelay.start(client: client, options: options, sslContext: sslContext) }
            let clientSide = ByteRelay()
            let upstreamSide = ByteRelay()
            clientSide.partner = upstreamSide
            upstreamSide.partner = clientSide
            // Both channels live on the client's event loop, so the handlers never leave it.
            let handlers = NIOLoopBound((clientSide, upstreamSide), eventLoop: client.eventLoop)
            return connectUpstream(for: client, options: options, sslContext: sslContext) {
                try $0.addHandler(handlers.value.1)
            }.flatMapThrowing { _ in try client.pipeline.syncOperations.addHandler(handlers.value.0) }
        }
        .bind(host: "127.0.0.1", port: options.listenPort)
        .wait()
    print("relay-floor (\(options.http ? "http" : "bytes")) listening on \(server.localAddress!)")
    try server.closeFuture.wait()
}

/// Opens the upstream connection of `client` on its event loop: verified TLS with SNI, then the mode's handlers.
func connectUpstream(
    for client: Channel,
    options: Options,
    sslContext: NIOSSLContext,
    addHandlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
) -> EventLoopFuture<Channel> {
    ClientBootstrap(group: client.eventLoop)
        .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        .channelInitializer { upstream in
            upstream.eventLoop.makeCompletedFuture {
                let sync = upstream.pipeline.syncOperations
                try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: options.serverName))
                try addHandlers(sync)
            }
        }
        .connect(host: "127.0.0.1", port: options.upstreamPort)
}

try serve(Options(CommandLine.arguments))
