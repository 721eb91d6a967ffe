import ControlPlaneTesting
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

@testable import KubeAPI

/// The state machine alone: when it pings, when it gives up, and what a frame from the server does.
final class ConnectionHealthStateTests: XCTestCase {
    private let settings = ConnectionHealth.Settings(readIdleTimeout: .seconds(30), pingTimeout: .seconds(15))
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    private func at(_ seconds: Int64) -> NIODeadline { self.start + .seconds(seconds) }

    func testASilentServerIsPingedThenTheConnectionClosed() {
        var health = ConnectionHealth(settings: self.settings, now: self.start)
        XCTAssertEqual(health.firstCheck, self.at(30))
        XCTAssertEqual(health.timerFired(at: self.at(29)), .check(at: self.at(30)), "not idle long enough yet")
        XCTAssertEqual(health.timerFired(at: self.at(30)), .sendPing(checkAt: self.at(45)))
        XCTAssertEqual(health.timerFired(at: self.at(44)), .check(at: self.at(45)), "the PING still has time")
        XCTAssertEqual(health.timerFired(at: self.at(45)), .close)
    }

    func testFramesPostponeThePing() {
        var health = ConnectionHealth(settings: self.settings, now: self.start)
        health.frameRead(at: self.at(20))
        XCTAssertEqual(health.timerFired(at: self.at(30)), .check(at: self.at(50)))
        XCTAssertEqual(health.timerFired(at: self.at(50)), .sendPing(checkAt: self.at(65)))
    }

    func testAnAnswerToThePingKeepsTheConnection() {
        var health = ConnectionHealth(settings: self.settings, now: self.start)
        XCTAssertEqual(health.timerFired(at: self.at(30)), .sendPing(checkAt: self.at(45)))
        health.frameRead(at: self.at(31))
        // The check scheduled for the PING's deadline finds the connection alive: the next PING is due 30 s after
        // the answer.
        XCTAssertEqual(health.timerFired(at: self.at(45)), .check(at: self.at(61)))
        XCTAssertEqual(health.timerFired(at: self.at(61)), .sendPing(checkAt: self.at(76)))
    }
}

/// The health check on real connections to the local API server, through a relay that can make the connections it
/// carries go silent: the path to the server dying without a reset.
final class ConnectionHealthTests: LiveTestCase {
    private let fast = ConnectionHealth.Settings(readIdleTimeout: .milliseconds(300), pingTimeout: .seconds(2))

    /// Runs `body` with a relay to the API server and a client that reaches the server through it, then closes both.
    private func withRelay(
        health: ConnectionHealth.Settings?,
        _ body: (SilenceableRelay, KubeClient) async throws -> Void
    ) async throws {
        let relay = try await SilenceableRelay.start(to: try TestCluster.adminConfig().server)
        var config = try TestCluster.adminConfig()
        config.server = "https://127.0.0.1:\(relay.port)"
        let client = try KubeClient(config: config, connectionHealth: health)
        do {
            try await body(relay, client)
        } catch {
            try? await client.shutdown()
            try? await relay.close()
            throw error
        }
        try await client.shutdown()
        try await relay.close()
    }

    /// A watch whose connection dies silently resumes on a new connection within the health check's timeouts, not
    /// after the watch's read timeout (11 minutes); no change is lost.
    func testAWatchOnASilentlyDeadConnectionResumesOnANewOne() async throws {
        try await self.withRelay(health: self.fast) { relay, client in
            let label = self.runID
            let informer = Informer(
                client: client,
                resource: .configMaps,
                namespace: self.namespace,
                labelSelector: "kubeapi-health=\(label)",
                backoff: Informer.Backoff(initial: .milliseconds(100), maximum: .seconds(1)),
                watchTimeoutSeconds: 300
            )
            let runner = Task { await informer.run() }
            defer { runner.cancel() }
            try await withTimeout("the informer to sync") { try await informer.waitForSync() }
            let before = self.uniqueName("health")
            try await self.createLabelled(before, label: label)
            try await eventually("the watch to see \(before)") { self.cached(informer).contains(before) }

            relay.silenceExistingConnections()
            let after = self.uniqueName("health")
            try await self.createLabelled(after, label: label)
            try await eventually("the informer to see \(after) after its connection went silent", timeout: .seconds(40))
            {
                self.cached(informer).contains(after)
            }
            XCTAssertGreaterThanOrEqual(relay.accepted, 2, "a new connection was opened")
        }
    }

    /// A quiet connection to a live server is pinged, answers, and is kept.
    func testAQuietLiveConnectionIsPingedAndKept() async throws {
        try await self.withRelay(health: self.fast) { relay, client in
            _ = try await client.serverVersion()
            let sentBefore = relay.bytesFromClients
            // Ten times the idle timeout, and longer than a PING's timeout: a PING that went unanswered, or whose
            // answer went unnoticed, would have closed the connection.
            try await Task.sleep(for: .seconds(3))
            XCTAssertGreaterThan(relay.bytesFromClients, sentBefore, "PINGs were sent while no request ran")
            _ = try await client.serverVersion()
            XCTAssertEqual(relay.accepted, 1, "the pinged connection was kept")
        }
    }

    private func createLabelled(_ name: String, label: String) async throws {
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)
        _ = try await self.client.create(
            .configMaps,
            self.configMap(name, data: ["v": "1"], labels: ["kubeapi-health": label])
        )
    }

    private func cached(_ informer: Informer) -> Set<String> { Set(informer.list().compactMap(\.name)) }
}

/// A TCP relay to the API server. `silenceExistingConnections()` makes every connection it carries stop passing
/// bytes either way while both sockets stay open (as when a load balancer or NAT forgets a flow: nothing is reset,
/// nothing arrives); connections accepted afterwards pass as usual.
final class SilenceableRelay: Sendable {
    let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let server: any Channel
    private let box: StateBox

    private struct State {
        var accepted = 0
        var bytesFromClients = 0
        var live: [SilenceSwitch] = []
    }

    private init(port: Int, group: MultiThreadedEventLoopGroup, server: any Channel, box: StateBox) {
        self.port = port
        self.group = group
        self.server = server
        self.box = box
    }

    var accepted: Int { self.box.state.withLock { $0.accepted } }
    var bytesFromClients: Int { self.box.state.withLock { $0.bytesFromClients } }

    func silenceExistingConnections() {
        let switches = self.box.state.withLock { state in
            defer { state.live.removeAll() }
            return state.live
        }
        for silence in switches { silence.silenced.store(true, ordering: .sequentiallyConsistent) }
    }

    func close() async throws {
        try? await self.server.close()
        try await self.group.shutdownGracefully()
    }

    /// Starts a relay on a free loopback port to `server` (an `https://HOST:PORT` URL).
    static func start(to server: String) async throws -> SilenceableRelay {
        guard let url = URL(string: server), let host = url.host, let upstreamPort = url.port else {
            throw TestFailure("cannot relay to \(server): no host and port")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = StateBox()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop).connect(host: host, port: upstreamPort).flatMapThrowing {
                    outbound in
                    let silence = SilenceSwitch()
                    box.accepted(silence)
                    try inbound.pipeline.syncOperations.addHandler(
                        RelayHandler(partner: outbound, silence: silence, count: box)
                    )
                    try outbound.pipeline.syncOperations.addHandler(
                        RelayHandler(partner: inbound, silence: silence, count: nil)
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else { throw TestFailure("the relay has no port") }
        return SilenceableRelay(port: port, group: group, server: channel, box: box)
    }

    /// What the channel initializers record (a class, so the `Mutex` is shared, not copied).
    private final class StateBox: Sendable {
        let state = Mutex(State())
        func accepted(_ silence: SilenceSwitch) {
            self.state.withLock { state in
                state.accepted += 1
                state.live.append(silence)
            }
        }
        func received(_ bytes: Int) { self.state.withLock { $0.bytesFromClients += bytes } }
    }

    private final class SilenceSwitch: Sendable {
        let silenced = Atomic<Bool>(false)
    }

    private final class RelayHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        let partner: any Channel
        let silence: SilenceSwitch
        let count: StateBox?

        init(partner: any Channel, silence: SilenceSwitch, count: StateBox?) {
            self.partner = partner
            self.silence = silence
            self.count = count
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !self.silence.silenced.load(ordering: .sequentiallyConsistent) else { return }
            let bytes = self.unwrapInboundIn(data)
            self.count?.received(bytes.readableBytes)
            self.partner.writeAndFlush(bytes, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.partner.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
