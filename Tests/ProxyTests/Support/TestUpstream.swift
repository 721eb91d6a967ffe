import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A real HTTPS server on 127.0.0.1 used as the proxy's upstream. It counts accepted connections and received
/// request heads so tests can prove reuse, and that refused requests never reached it.
///
/// Paths: `/hello` (small body, echoes the Host header and header names it received), `/download/N` (N generated
/// bytes, chunked, written with backpressure), `/download-cl/N` (same with Content-Length), `/upload` (counts the
/// request body and answers the count and a checksum), `/chunked` (three chunks), `/hang` (never answers),
/// `/slow/MS` (answers after MS milliseconds), `/invalid-http` (a response no parser accepts), `/two-responses` (its
/// answer and, in the same write, a response to no request), `/204`, `/304`, and raw responses for the proxy's
/// hard edges: `/stray/now|late`, `/overlong`, `/204-body`, `/http10-chunked`, `/unframed[/cut]`.
final class TestUpstream: Sendable {
    struct Counters: Sendable {
        var connections = 0
        var requests = 0
        var heads: [HTTPRequestHead] = []
    }

    let channel: Channel
    let port: Int
    private let counters: NIOLockedValueBox<Counters>

    var connections: Int { self.counters.withLockedValue { $0.connections } }
    var requests: Int { self.counters.withLockedValue { $0.requests } }
    var heads: [HTTPRequestHead] { self.counters.withLockedValue { $0.heads } }

    private init(channel: Channel, counters: NIOLockedValueBox<Counters>) {
        self.channel = channel
        self.port = channel.localAddress!.port!
        self.counters = counters
    }

    static func start(
        certificate: TestPKI.Issued = TestPKI.shared.leaf,
        requireClientCertificateFrom clientCA: TestPKI.Issued? = nil
    ) async throws -> TestUpstream {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(certificate.nioCertificate)],
            privateKey: .privateKey(certificate.nioKey)
        )
        if let clientCA {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates([clientCA.nioCertificate])
        }
        let context = try NIOSSLContext(configuration: tls)
        let counters = NIOLockedValueBox(Counters())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counters.withLockedValue { $0.connections += 1 }
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(SocketCloser())
                    try sync.addHandler(NIOSSLServerHandler(context: context))
                    try sync.configureHTTPServerPipeline()
                    try sync.addHandler(UpstreamTestHandler(counters: counters))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return TestUpstream(channel: channel, counters: counters)
    }

    func stop() async {
        try? await self.channel.close()
    }

    /// Runs `body` against a fresh upstream, which is stopped (and awaited) however `body` ends.
    static func with<T>(
        certificate: TestPKI.Issued = TestPKI.shared.leaf,
        requireClientCertificateFrom clientCA: TestPKI.Issued? = nil,
        _ body: (TestUpstream) async throws -> T
    ) async throws -> T {
        let upstream = try await Self.start(certificate: certificate, requireClientCertificateFrom: clientCA)
        do {
            let result = try await body(upstream)
            await upstream.stop()
            return result
        } catch {
            await upstream.stop()
            throw error
        }
    }
}

/// Runs `body` with a dedicated event loop group, shut down (and awaited) however `body` ends.
func withEventLoopGroup<T>(threads: Int, _ body: (MultiThreadedEventLoopGroup) async throws -> T) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    do {
        let result = try await body(group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

final class UpstreamTestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Only the first bytes are checksummed (a debug build cannot checksum 256 MiB quickly).
    static let checksumLimit = 4 << 20

    let counters: NIOLockedValueBox<TestUpstream.Counters>
    private var head: HTTPRequestHead?
    private var received = 0
    private var checksum: UInt64 = 0
    private var remainingDownload = 0
    private var downloading = false
    private var context: ChannelHandlerContext?

    init(counters: NIOLockedValueBox<TestUpstream.Counters>) { self.counters = counters }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.counters.withLockedValue {
                $0.requests += 1
                $0.heads.append(head)
            }
            self.head = head
            self.received = 0
            self.checksum = 0
        case .body(let buffer):
            let before = self.received
            self.received += buffer.readableBytes
            if before < Self.checksumLimit {
                buffer.withUnsafeReadableBytes { bytes in
                    for b in bytes.prefix(Self.checksumLimit - before) {
                        self.checksum = self.checksum &* 31 &+ UInt64(b)
                    }
                }
            }
        case .end:
            guard let head = self.head else { return }
            self.respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = head.uri.split(separator: "/")
        let route = parts.first.map(String.init) ?? ""
        switch route {
        case "hello":
            var headers: HTTPHeaders = ["x-seen-host": head.headers["host"].joined(separator: ",")]
            headers.add(
                name: "x-seen-headers",
                value: head.headers.map { $0.name.lowercased() }.sorted().joined(separator: ",")
            )
            self.send(.ok, body: "hello from upstream\n", headers: headers, context: context)
        case "upload":
            self.send(.ok, body: "received \(self.received) checksum \(self.checksum)\n", context: context)
        case "invalid-http":
            // Raw bytes written below the HTTP encoder: a status line no HTTP parser accepts.
            self.writeRaw("HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", context: context)
        case "bad-chunk":
            // A valid head and, in the same write, a chunk size that is not hexadecimal.
            self.writeRaw("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", context: context)
        case "two-responses":
            // Raw bytes below the HTTP encoder: the answer, and at once a second response nobody asked for.
            self.writeRaw(
                "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"
                    + "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged",
                context: context
            )
        case "stray":
            // The answer, then the start of a response to nothing: in the same write (`/stray/now`), or 100 ms later,
            // while the connection idles in the proxy's pool (`/stray/late`).
            self.writeRaw("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine", context: context)
            let stray =
                "HTTP/1.1 302 Found\r\nlocation: https://evil.example/\r\nset-cookie: session=forged\r\nx-junk: "
            if parts.count > 1, parts[1] == "late" {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) {
                    self.writeRaw(stray, context: context)
                }
            } else {
                self.writeRaw(stray, context: context)
            }
        case "overlong":
            // More body than the length says (and, to a HEAD request, a body at all).
            self.writeRaw("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine and more", context: context)
        case "204-body":
            self.writeRaw("HTTP/1.1 204 No Content\r\n\r\nmine", context: context)
        case "http10-chunked":
            self.writeRaw(
                "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n4\r\nmine\r\n0\r\n\r\n",
                context: context
            )
        case "unframed":
            // A body delimited by the close: whole (`/unframed`, closed with close_notify), or cut short
            // (`/unframed/cut`: 100 ms later the socket closes under TLS).
            self.writeRaw("HTTP/1.1 200 OK\r\n\r\npartial", context: context)
            let cut = parts.count > 1 && parts[1] == "cut"
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) {
                if cut {
                    try? context.pipeline.syncOperations.context(handlerType: SocketCloser.self).close(promise: nil)
                } else {
                    self.writeRaw(" and the rest", context: context)
                    context.close(promise: nil)
                }
            }
        case "chunked":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
            for piece in ["one,", "two,", "three"] {
                context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: piece)))), promise: nil)
            }
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        case "download", "download-cl":
            let count = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            var headers = HTTPHeaders()
            if route == "download-cl" { headers.add(name: "content-length", value: "\(count)") }
            context.write(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil
            )
            self.remainingDownload = count
            self.downloading = true
            self.pump(context: context)
        case "hang":
            break
        case "close":
            // Read the request, answer nothing, close (cleanly: TLS close_notify first), as a server that timed out
            // its idle keep-alive connection just as the request arrived does.
            context.close(promise: nil)
        case "close-unclean":
            // The same, but closing the socket under TLS: no close_notify, as many servers do.
            try? context.pipeline.syncOperations.context(handlerType: SocketCloser.self).close(promise: nil)
        case "stall":
            // Headers and half of the body, then silence.
            let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "10"])
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "12345")))), promise: nil)
        case "slow":
            let ms = parts.count > 1 ? Int64(parts[1]) ?? 0 : 0
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) {
                self.send(.ok, body: "slow\n", context: context)
            }
        case "204":
            context.write(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .noContent))),
                promise: nil
            )
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        case "304":
            let headers: HTTPHeaders = ["etag": "\"x\""]
            context.write(
                self.wrapOutboundOut(
                    .head(HTTPResponseHead(version: .http1_1, status: .notModified, headers: headers))
                ),
                promise: nil
            )
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        default:
            self.send(.notFound, body: "no such path\n", context: context)
        }
    }

    /// Writes bytes below the HTTP encoder, for responses it would not produce.
    private func writeRaw(_ text: String, context: ChannelHandlerContext) {
        let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
        encoder?.writeAndFlush(NIOAny(ByteBuffer(string: text)), promise: nil)
    }

    /// Writes generated bytes while the channel is writable; resumes on writability (bounded memory).
    private func pump(context: ChannelHandlerContext) {
        let chunk = 64 * 1024
        while self.downloading, self.remainingDownload > 0, context.channel.isWritable {
            let n = min(chunk, self.remainingDownload)
            var buffer = context.channel.allocator.buffer(capacity: n)
            buffer.writeRepeatingByte(UInt8(truncatingIfNeeded: self.remainingDownload / chunk), count: n)
            self.remainingDownload -= n
            // Flush every chunk: TLS buffers unflushed writes, and writability only reflects flushed bytes.
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if self.downloading, self.remainingDownload == 0 {
            self.downloading = false
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, self.downloading { self.pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func send(
        _ status: HTTPResponseStatus,
        body: String,
        headers: HTTPHeaders = [:],
        context: ChannelHandlerContext
    ) {
        var headers = headers
        headers.add(name: "content-length", value: "\(body.utf8.count)")
        context.write(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil
        )
        context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Sits below TLS: a close started from its context reaches the socket without a TLS close_notify.
final class SocketCloser: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
}
