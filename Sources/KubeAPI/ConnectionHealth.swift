import Logging
import NIOCore
import NIOHTTP2

/// The HTTP/2 health check client-go runs on its connections to the API server (kubernetes#95898): after
/// `readIdleTimeout` with no frame from the server, send a PING; if nothing arrives within `pingTimeout` after it,
/// close the connection.
///
/// Why: every request and watch of the process shares one HTTP/2 connection. When the path to the server dies
/// without a reset (a load balancer or NAT forgets the flow, a node vanishes), the kernel keeps the socket open for
/// the 15 minutes of TCP retransmissions, every request on it times out, and a quiet watch waits for its read timeout
/// of 11 minutes: the operator would stop seeing changes. Closing the connection fails what runs on it at once;
/// informers resume their watches from their last resourceVersion on a new connection.
public struct ConnectionHealth: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Silence from the server this long starts a PING.
        public var readIdleTimeout: TimeAmount
        /// No frame this long after the PING closes the connection.
        public var pingTimeout: TimeAmount

        public init(readIdleTimeout: TimeAmount, pingTimeout: TimeAmount) {
            self.readIdleTimeout = readIdleTimeout
            self.pingTimeout = pingTimeout
        }

        /// client-go's values (`ReadIdleTimeout` 30 s, `PingTimeout` 15 s): a dead connection is closed within 45 s
        /// of the last frame, and a live but quiet one costs a PING every 30 s.
        public static let `default` = Settings(readIdleTimeout: .seconds(30), pingTimeout: .seconds(15))
    }

    public enum Action: Equatable, Sendable {
        /// Nothing to do yet: look again then.
        case check(at: NIODeadline)
        /// Send a PING, and look again then.
        case sendPing(checkAt: NIODeadline)
        /// The server has been silent for a PING's timeout: the connection is dead.
        case close
    }

    public let settings: Settings
    private var lastRead: NIODeadline
    private var pingSentAt: NIODeadline?

    public init(settings: Settings, now: NIODeadline) {
        self.settings = settings
        self.lastRead = now
    }

    /// The first look: when the connection would have been idle long enough to need a PING.
    public var firstCheck: NIODeadline { self.lastRead + self.settings.readIdleTimeout }

    /// Any frame from the server, a PING's ACK included, shows the connection is alive.
    public mutating func frameRead(at now: NIODeadline) {
        self.lastRead = now
        self.pingSentAt = nil
    }

    public mutating func timerFired(at now: NIODeadline) -> Action {
        if let sent = self.pingSentAt {
            let deadline = sent + self.settings.pingTimeout
            return now >= deadline ? .close : .check(at: deadline)
        }
        let idleUntil = self.lastRead + self.settings.readIdleTimeout
        guard now >= idleUntil else { return .check(at: idleUntil) }
        self.pingSentAt = now
        return .sendPing(checkAt: now + self.settings.pingTimeout)
    }
}

/// Runs ``ConnectionHealth`` on one HTTP/2 connection channel, after its `NIOHTTP2Handler` (which answers the
/// server's PINGs itself and passes every frame on, our PINGs' ACKs included).
final class HTTP2HealthCheckHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let settings: ConnectionHealth.Settings
    private let logger: Logger
    private var health: ConnectionHealth
    private var timer: Scheduled<Void>?
    private var pingsSent: UInt64 = 0

    init(settings: ConnectionHealth.Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.health = ConnectionHealth(settings: settings, now: .now())
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.schedule(at: self.health.firstCheck, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.health.frameRead(at: .now())
        context.fireChannelRead(data)
    }

    private func schedule(at deadline: NIODeadline, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        self.timer = nil
        guard context.channel.isActive else { return }
        switch self.health.timerFired(at: .now()) {
        case .check(let deadline):
            self.schedule(at: deadline, context: context)
        case .sendPing(let deadline):
            self.pingsSent &+= 1
            let ping = HTTP2Frame(
                streamID: .rootStream,
                payload: .ping(HTTP2PingData(withInteger: self.pingsSent), ack: false)
            )
            context.writeAndFlush(self.wrapOutboundOut(ping), promise: nil)
            self.schedule(at: deadline, context: context)
        case .close:
            self.logger.warning(
                "closing the connection to the API server: no frame within the PING timeout after a PING",
                metadata: [
                    "readIdleTimeout": "\(self.settings.readIdleTimeout)",
                    "pingTimeout": "\(self.settings.pingTimeout)",
                ]
            )
            context.close(promise: nil)
        }
    }
}
