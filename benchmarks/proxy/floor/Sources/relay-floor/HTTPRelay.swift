import NIOCore
import NIOHTTP1
import NIOSSL

/// `http` mode: NIO's HTTP/1.1 codecs on both sides, request and response parts relayed as they come.
enum HTTPRelay {
    static func start(client: Channel, options: Options, sslContext: NIOSSLContext) -> EventLoopFuture<Void> {
        let clientSide = ClientSide(upstreamHost: options.serverName)
        let upstreamSide = UpstreamSide()
        clientSide.partner = upstreamSide
        upstreamSide.partner = clientSide
        let handlers = NIOLoopBound((clientSide, upstreamSide), eventLoop: client.eventLoop)
        return connectUpstream(for: client, options: options, sslContext: sslContext) {
            try $0.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
            try $0.addHandler(handlers.value.1)
        }
        .flatMapThrowing { _ in
            let sync = client.pipeline.syncOperations
            try sync.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false
            )
            try sync.addHandler(handlers.value.0)
        }
    }

    final class ClientSide: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let upstreamHost: String
        var partner: UpstreamSide?
        private(set) var context: ChannelHandlerContext?

        init(upstreamHost: String) { self.upstreamHost = upstreamHost }

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        // The context holds this handler: keeping it would keep both after the channel is gone.
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let partner = self.partner, let upstream = partner.context else { return }
            let part: HTTPClientRequestPart
            switch self.unwrapInboundIn(data) {
            case .head(var head):
                head.headers.replaceOrAdd(name: "host", value: self.upstreamHost)
                part = .head(head)
            case .body(let buffer): part = .body(.byteBuffer(buffer))
            case .end(let trailers): part = .end(trailers)
            }
            upstream.write(partner.wrapOutboundOut(part), promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) { self.partner?.context?.flush() }

        func channelInactive(context: ChannelHandlerContext) {
            self.partner?.context?.close(promise: nil)
            self.partner = nil
        }
    }

    final class UpstreamSide: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundOut = HTTPClientRequestPart

        weak var partner: ClientSide?
        private(set) var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        // The context holds this handler: keeping it would keep both after the channel is gone.
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let partner = self.partner, let client = partner.context else { return }
            let part: HTTPServerResponsePart
            switch self.unwrapInboundIn(data) {
            case .head(let head):
                part = .head(HTTPResponseHead(version: head.version, status: head.status, headers: head.headers))
            case .body(let buffer): part = .body(.byteBuffer(buffer))
            case .end(let trailers): part = .end(trailers)
            }
            client.write(partner.wrapOutboundOut(part), promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) { self.partner?.context?.flush() }

        func channelInactive(context: ChannelHandlerContext) { self.partner?.context?.close(promise: nil) }
    }
}
