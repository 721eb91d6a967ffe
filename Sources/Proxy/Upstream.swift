import Manifests
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Pool key: the concrete upstream name plus the entry it was allowed by (port, addresses, TLS, timeouts).
struct UpstreamKey: Hashable {
    let host: String
    /// The entry, behind a reference (see `RouteTarget`).
    let target: RouteTarget
    var entry: AllowList.Entry { self.target.entry }
    /// The host's hash: for an exact entry (the host is the entry's) the one its target computed once, otherwise
    /// computed here. Every request looks its key up twice (acquire, release), and hashing the name was most of it.
    private let hostHash: Int

    init(host: String, target: RouteTarget) {
        self.host = host
        self.target = target
        self.hostHash = host == target.entry.host ? target.hostHash : host.hashValue
    }

    static func == (lhs: UpstreamKey, rhs: UpstreamKey) -> Bool {
        lhs.host == rhs.host && lhs.target == rhs.target
    }

    /// The name and port only: hashing the whole entry (TLS files, addresses, timeouts) cost more than the rest of
    /// the lookup. Equality still compares all of it.
    func hash(into hasher: inout Hasher) {
        hasher.combine(self.hostHash)
        hasher.combine(self.target.entry.port)
    }
}

/// Receives everything that happens on an upstream connection while a client request owns it. All calls happen on
/// the shared event loop.
protocol UpstreamConnectionDelegate: AnyObject {
    func upstreamRead(_ part: UpstreamResponsePart)
    func upstreamReadComplete()
    func upstreamWritabilityChanged()
    /// The connection failed or closed while in use.
    func upstreamFailed(_ error: ProxyError)
    /// Whether the client can take more response bytes (read backpressure on the upstream).
    var upstreamMayRead: Bool { get }
}

/// One upstream connection (TCP + TLS + HTTP/1.1 codec), owned either by the pool (idle) or by one client request.
final class UpstreamConnection {
    let channel: Channel
    let handler: UpstreamHandler
    /// The pool's slot for the key the connection was opened for, set when the pool opened it.
    var slot: UpstreamPool.Slot?

    init(channel: Channel, handler: UpstreamHandler) {
        self.channel = channel
        self.handler = handler
    }
}

/// The HTTP/1.1 side of an upstream connection, after TLS: writes the owner's requests through
/// `UpstreamRequestEncoder`, parses responses with `UpstreamResponseParser` (learning here which request each one
/// answers) and hands each part straight to the owning client request. Holds `read()` while the client cannot keep
/// up, so a slow client slows the upstream instead of filling memory.
///
/// One handler, not a codec plus a handler: every part that crossed a pipeline hop was boxed in `NIOAny` and cast
/// back, several times per request. Request parts are gathered until the flush, so a `GET` (head and end) leaves as
/// one buffer and one TLS record. Response parts are handed on after a read has been parsed, never from inside the
/// parser: the owner may react to a part by writing the next request or closing the connection.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Whoever owns the connection: a client request or a drainer. Held strongly, and cleared by every path that
    /// lets the connection go (`UpstreamPool.release`, a close by the owner, `detach`). A weak reference gave the
    /// client handler a side table, and every retain and release of it then took the runtime's slow path: about
    /// 2 % of a request's instructions.
    var delegate: (any UpstreamConnectionDelegate)?
    /// Called once when the channel goes inactive (the pool forgets the connection).
    var onClose: (() -> Void)?
    /// Set while connecting: completes when the TLS handshake finishes or fails.
    var onHandshake: ((Result<Void, ProxyError>) -> Void)?
    private(set) var context: ChannelHandlerContext?
    private var pendingRead = false
    private var lastError: ProxyError?
    /// No traffic for this long: evicted when idle in the pool, failed when a response stalls.
    private let idleTimeAmount: TimeAmount
    private var idleTimeout: LazyTimeout?

    private var encoder: UpstreamRequestEncoder
    private var parser = UpstreamResponseParser()
    /// Methods of the requests written and not yet answered.
    private var methods = CircularBuffer<HTTPMethod>(initialCapacity: 4)
    /// Request bytes gathered until the next flush.
    private var pending: ByteBuffer?
    private var spare = SpareBuffer()
    /// Response bytes read and not parsed yet (an incomplete head or chunk-size line).
    private var unparsed: ByteBuffer?
    /// After a parse error or the end of input nothing more is parsed.
    private var parsingDone = false
    /// The upstream sent bytes after the end of the last response anyone asked for (an over-long body, a body on a
    /// `HEAD` or 204 answer, the start of a response to nothing). Whoever used the connection next would read them
    /// as the start of its own answer, so it is never reused.
    private(set) var sentUnaskedBytes = false

    init(host: String, port: Int, idleTimeout: TimeAmount) {
        self.encoder = UpstreamRequestEncoder(host: host, port: port)
        self.idleTimeAmount = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.idleTimeout = LazyTimeout(eventLoop: context.eventLoop) { [self] in
            // Idle in the pool: evict. Idle while in use: a stalled stream.
            self.fail(.idleTimeout("no upstream traffic within the idle timeout"))
        }
        self.noteActivity()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.idleTimeout?.cancel()
        self.context = nil
    }

    private func noteActivity() {
        self.idleTimeout?.arm(in: self.idleTimeAmount)
    }

    // MARK: Responses

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.parsingDone else { return }
        var input = self.unwrapInboundIn(data)
        if var unparsed = self.unparsed {
            self.unparsed = nil
            unparsed.writeBuffer(&input)
            input = unparsed
        }
        // Each part is handed on as it is pulled from the parser. A response in this input can only answer a
        // request written before the input was read: one the owner writes while the parts are handed on (the next
        // request on a kept-alive connection) is not offered to it, and bytes for it are an error, as they would be
        // had the whole input been parsed first. Parsing stops if handing on a part ended the connection.
        var answerable = self.methods.count
        do {
            while !self.parsingDone,
                let part = try self.parser.next(
                    &input,
                    nextMethod: {
                        guard answerable > 0 else { return nil }
                        answerable -= 1
                        return self.methods.popFirst()
                    }
                )
            {
                if case .end = part, answerable == 0, input.readableBytes > 0 {
                    // Known before the owner hears of the end and offers the connection to the pool.
                    self.sentUnaskedBytes = true
                }
                self.handOn(part, context: context)
            }
            if !self.parsingDone, input.readableBytes > 0 {
                guard answerable > 0 || !self.parser.isBetweenResponses else {
                    // Bytes between responses that no request written before them can have asked for: an idle
                    // pooled connection, or what followed the response just ended.
                    self.sentUnaskedBytes = true
                    self.parsingDone = true
                    self.fail(.upstreamProtocol("the upstream sent bytes that answer no request"))
                    return
                }
                self.unparsed = input
            }
        } catch {
            self.parsingDone = true
            self.fail(Self.map(error))
        }
    }

    private func handOn(_ part: UpstreamResponsePart, context: ChannelHandlerContext) {
        if let delegate = self.delegate {
            delegate.upstreamRead(part)
        } else {
            // Bytes on an idle pooled connection: the upstream is not speaking HTTP/1.1 keep-alive properly.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.noteActivity()
        self.delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.isWritable = context.channel.isWritable
        self.delegate?.upstreamWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let delegate = self.delegate, !delegate.upstreamMayRead {
            self.pendingRead = true
        } else {
            context.read()
        }
    }

    func resumeReading() {
        guard self.pendingRead, let context = self.context else { return }
        self.pendingRead = false
        context.read()
    }

    // MARK: Requests

    /// Encodes a request part; the bytes leave at the next `flush()` (or now, once they reach the copy limit).
    func write(_ part: ClientRequestPart) {
        guard let context = self.context else { return }
        var out = self.takePending(context)
        switch part {
        case .head(let head):
            self.methods.append(head.method)
            self.encoder.writeHead(head, into: &out)
        case .body(let body):
            let length = body.readableBytes
            self.encoder.writeBodyPrefix(length: length, into: &out)
            if length <= ProxyHandler.copiedBodyPart {
                out.writeImmutableBuffer(body)
            } else {
                // Large parts are written as they are (no copy).
                context.write(self.wrapOutboundOut(out), promise: nil)
                context.write(self.wrapOutboundOut(body), promise: nil)
                out = context.channel.allocator.buffer(capacity: 2)
            }
            self.encoder.writeBodySuffix(length: length, into: &out)
        case .end(let trailers):
            self.encoder.writeEnd(trailers: trailers, into: &out)
        }
        if out.readableBytes >= ProxyHandler.copiedBodyPart {
            context.write(self.wrapOutboundOut(out), promise: nil)
        } else {
            self.pending = out
        }
    }

    func flush() {
        self.noteActivity()
        guard let context = self.context else { return }
        if let pending = self.pending {
            self.pending = nil
            // One trip down the pipeline (through NIOSSL) for both.
            context.writeAndFlush(self.wrapOutboundOut(pending), promise: nil)
            self.spare.keep(pending)
        } else {
            context.flush()
        }
    }

    /// The bytes gathered so far (moved out, so appending does not copy them), or a new buffer.
    private func takePending(_ context: ChannelHandlerContext) -> ByteBuffer {
        if let pending = self.pending {
            self.pending = nil
            return pending
        }
        return self.spare.take(context.channel.allocator)
    }

    /// The channel's writability, as its last change said: kept here because asking the channel on every read
    /// retains and releases it.
    private(set) var isWritable = true

    // MARK: Failures

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(Self.map(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isWritable = false
        self.idleTimeout?.cancel()
        if !self.parsingDone {
            self.parsingDone = true
            do {
                let last = try self.parser.inputClosed(unparsed: self.unparsed?.readableBytes ?? 0)
                if let last { self.handOn(last, context: context) }
            } catch {
                if self.lastError == nil { self.lastError = Self.map(error) }
            }
        }
        self.detach(self.lastError ?? .upstreamClosed("the upstream closed the connection"))
        context.fireChannelInactive()
    }

    /// Tells the owner (the handshake waiter, the client request, the pool) that this connection is gone; once.
    private func detach(_ error: ProxyError) {
        if let onHandshake = self.onHandshake {
            self.onHandshake = nil
            onHandshake(.failure(error))
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(error)
        let onClose = self.onClose
        self.onClose = nil
        onClose?()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            if let onHandshake = self.onHandshake {
                self.onHandshake = nil
                onHandshake(.success(()))
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Fails the connection with a specific error (timeouts decided by the owner, or an error in the pipeline).
    ///
    /// The owner hears of it now, not when the channel finally goes inactive: closing a TLS connection waits for
    /// the peer's close_notify (up to NIOSSL's shutdown timeout of seconds), and neither a client waiting for its
    /// 502/504 nor the pool handing out connections should wait for that.
    func fail(_ error: ProxyError) {
        if self.lastError == nil { self.lastError = error }
        self.detach(self.lastError ?? error)
        self.context?.close(promise: nil)
    }

    static func map(_ error: any Error) -> ProxyError {
        if let error = error as? ProxyError { return error }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return .certificateInvalid("the upstream certificate does not match the host name: \(extra)")
        }
        if let ssl = error as? NIOSSLError {
            // Many servers close an idle keep-alive connection without TLS's close_notify: a closed connection (which
            // an idempotent request on a reused one may retry), not a failed handshake.
            if case .uncleanShutdown = ssl {
                return .upstreamClosed("the upstream closed the connection without a TLS close_notify")
            }
            return Self.tlsFailure("\(ssl)")
        }
        if error is BoringSSLError {
            // An alert after the handshake: with TLS 1.3 a server checks the client's certificate only then.
            return Self.tlsFailure("\(error)")
        }
        if error is HTTPMessageError {
            return .upstreamProtocol("the upstream sent invalid HTTP: \(error)")
        }
        return .upstreamClosed("upstream connection error: \(error)")
    }
}

extension UpstreamHandler {
    /// A TLS failure described by BoringSSL's reason names (`CERTIFICATE_VERIFY_FAILED`): its full error strings
    /// also carry numeric codes and the library's source paths, which tell a client nothing.
    static func tlsFailure(_ text: String) -> ProxyError {
        let reasons = Self.tlsReasons(text)
        let summary = reasons.isEmpty ? text : reasons.joined(separator: ", ")
        if reasons.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
            return .certificateInvalid("upstream certificate verification failed: \(summary)")
        }
        if reasons.contains(where: { $0.hasSuffix("CERTIFICATE_REQUIRED") }) {
            return .tlsFailed("the upstream requires a client certificate: \(summary)")
        }
        return .tlsFailed("TLS with the upstream failed: \(summary)")
    }

    /// The reason names in BoringSSL error strings (`error:1000007d:SSL routines:OPENSSL_internal:REASON at
    /// /path/file.cc:393`), once each, in order.
    static func tlsReasons(_ text: String) -> [String] {
        var reasons: [String] = []
        for segment in text.split(separator: "error:").dropFirst() {
            let message = segment.firstRange(of: " at ").map { segment[..<$0.lowerBound] } ?? segment
            guard let last = message.split(separator: ":").last else { continue }
            let name = String(last.prefix { $0.isUppercase || $0.isNumber || $0 == "_" })
            if name.count > 2, !reasons.contains(name) { reasons.append(name) }
        }
        return reasons
    }
}

/// Opens upstream connections: resolves the name itself (or uses the entry's fixed `addresses`), refuses
/// non-public addresses unless allowed, then connects and performs a verifying TLS handshake.
///
/// This is plain NIO rather than AsyncHTTPClient on purpose: the proxy must see and check every resolved address
/// before connecting (SSRF rules on the resolved addresses, not the name), must be able to connect to fixed
/// `addresses` while still sending SNI and verifying the certificate for the host name, and must keep client and
/// upstream channels on the same event loop so body parts are relayed without thread hops.
enum UpstreamConnector {
    static func connect(
        key: UpstreamKey,
        tls: TLSContextCache,
        eventLoop: EventLoop,
        callback: @escaping (Result<UpstreamConnection, ProxyError>) -> Void
    ) {
        let entry = key.entry
        let deadline = NIODeadline.now() + .milliseconds(Int64(entry.timeouts.connectMillis))
        let sslContext: NIOSSLContext
        switch tls.context(for: entry.tls) {
        case .failure(let error):
            callback(.failure(error))
            return
        case .success(let context):
            sslContext = context
        }
        let resolved: (Result<[SocketAddress], ProxyError>) -> Void = { result in
            switch result {
            case .failure(let error):
                callback(.failure(error))
            case .success(let addresses):
                if !entry.allowPrivateAddresses,
                    let bad = addresses.first(where: { !AddressClass.classify($0).isPublic })
                {
                    let kind = AddressClass.classify(bad).rawValue
                    callback(
                        .failure(
                            .privateAddress("\(key.host) resolved to a \(kind) address (\(bad.ipAddress ?? "?"))")
                        )
                    )
                    return
                }
                Self.connect(
                    addresses: addresses[...],
                    key: key,
                    sslContext: sslContext,
                    deadline: deadline,
                    eventLoop: eventLoop,
                    lastError: nil,
                    callback: callback
                )
            }
        }
        if !entry.addresses.isEmpty {
            var addresses: [SocketAddress] = []
            for text in entry.addresses {
                guard let address = try? SocketAddress(ipAddress: text, port: entry.port) else {
                    resolved(.failure(.configuration("allow-list address \"\(text)\" is not an IP address")))
                    return
                }
                addresses.append(address)
            }
            resolved(.success(addresses))
        } else {
            let host = key.host
            let port = entry.port
            // Answered once, by the lookup or by the connect deadline, whichever comes first (both on the loop).
            let answered = NIOLoopBoundBox(false, eventLoop: eventLoop)
            let expiry = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                guard !answered.value else { return }
                answered.value = true
                callback(.failure(.connectTimeout("resolving \(host) took longer than the connect timeout")))
            }
            Self.resolverPool.runIfActive(eventLoop: eventLoop) {
                try Self.resolve(host: host, port: port)
            }.assumeIsolated().whenComplete { result in
                guard !answered.value else { return }
                answered.value = true
                expiry.cancel()
                resolved(result.mapError { ($0 as? ProxyError) ?? .resolutionFailed("\($0)") })
            }
        }
    }

    private static func connect(
        addresses: ArraySlice<SocketAddress>,
        key: UpstreamKey,
        sslContext: NIOSSLContext,
        deadline: NIODeadline,
        eventLoop: EventLoop,
        lastError: ProxyError?,
        callback: @escaping (Result<UpstreamConnection, ProxyError>) -> Void
    ) {
        guard let address = addresses.first else {
            callback(.failure(lastError ?? .connectFailed("no address to connect to")))
            return
        }
        let remaining = deadline - .now()
        guard remaining > .zero else {
            callback(.failure(.connectTimeout("connecting to \(key.host) timed out")))
            return
        }
        let serverName = key.entry.tls.serverName ?? key.host
        let idle = TimeAmount.milliseconds(Int64(key.entry.timeouts.idleMillis))
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(remaining)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    let tlsHandler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                    try sync.addHandler(tlsHandler)
                    // The proxy's own HTTP/1.1 codec: requests sanitized and framed as the client framed them,
                    // responses parsed strictly with their header lines kept as bytes.
                    try sync.addHandler(UpstreamHandler(host: key.host, port: key.entry.port, idleTimeout: idle))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        bootstrap.connect(to: address).assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                let mapped: ProxyError
                if case ChannelError.connectTimeout = error {
                    mapped = .connectTimeout("connecting to \(key.host) at \(address) timed out")
                } else {
                    mapped = .connectFailed("cannot connect to \(key.host) at \(address): \(error)")
                }
                Self.connect(
                    addresses: addresses.dropFirst(),
                    key: key,
                    sslContext: sslContext,
                    deadline: deadline,
                    eventLoop: eventLoop,
                    lastError: mapped,
                    callback: callback
                )
            case .success(let channel):
                let handler: UpstreamHandler
                do {
                    handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                } catch {
                    channel.close(promise: nil)
                    callback(.failure(.connectFailed("pipeline error: \(error)")))
                    return
                }
                let timeout = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                    handler.fail(.connectTimeout("TLS handshake with \(key.host) timed out"))
                }
                handler.onHandshake = { result in
                    timeout.cancel()
                    switch result {
                    case .success:
                        callback(.success(UpstreamConnection(channel: channel, handler: handler)))
                    case .failure(let error):
                        callback(.failure(error))
                    }
                }
            }
        }
    }

    /// All addresses of `host` (getaddrinfo, blocking: run on the thread pool).
    /// `getaddrinfo` blocks, so lookups run on threads of their own: not NIO's shared pool (one thread per core),
    /// where a few slow names would hold up every new upstream connection and anything else queued there.
    static let resolverPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    static func resolve(host: String, port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw ProxyError.resolutionFailed("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sa = current.pointee.ai_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                case AF_INET6:
                    sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                default:
                    break
                }
            }
            node = current.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw ProxyError.resolutionFailed("\(host) has no addresses") }
        return addresses
    }
}
