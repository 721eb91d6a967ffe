import CoreMetrics
import Foundation
import Logging
import NIOPosix
import Prometheus
import Synchronization
import Testing

@testable import Observability

#if canImport(Glibc)
    import Glibc
#endif

struct JSONLogHandlerTests {
    @Test func oneJSONObjectPerLineWithTypedMetadata() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "test") { label in
            JSONLogHandler(label: label, sink: { line in lines.withLock { $0.append(line) } })
        }
        logger[metadataKey: "component"] = "proxy"
        logger.info(
            "request \"quoted\"\nnext",
            metadata: ["status": .stringConvertible(403), "host": "api.github.com", "ok": .stringConvertible(false)]
        )
        let line = try #require(lines.withLock { $0.first })
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == "request \"quoted\"\nnext")
        #expect(object["level"] as? String == "info")
        #expect(object["logger"] as? String == "test")
        #expect(object["component"] as? String == "proxy")
        #expect(object["host"] as? String == "api.github.com")
        #expect(object["status"] as? Int == 403)
        #expect(object["ok"] as? Bool == false)
        #expect((object["time"] as? String)?.hasSuffix("Z") == true)
    }

    /// A huge message or value (an error quoting a 20 MB host) is cut to a readable size, whole characters only.
    @Test func hugeFieldsAreCut() throws {
        let lines = Mutex<[String]>([])
        let logger = Logger(label: "test") { label in
            JSONLogHandler(label: label, sink: { line in lines.withLock { $0.append(line) } })
        }
        let huge = "a" + String(repeating: "ü", count: 1 << 20)  // 8 KiB falls inside a "ü"
        logger.error("invalid: \(huge)", metadata: ["value": .string(huge)])
        let line = try #require(lines.withLock { $0.first })
        #expect(line.utf8.count < 3 * JSONLogHandler.maximumFieldBytes)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let value = try #require(object["value"] as? String)
        #expect(value.hasPrefix("aüü") && value.hasSuffix("ü… (2088962 more bytes)"))
        #expect(value.utf8.count <= JSONLogHandler.maximumFieldBytes + 40)
    }
}

struct StandardOutputBufferTests {
    /// Waits (bounded) until `condition` holds.
    static func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func linesReachTheOutputInOrder() async throws {
        let written = Mutex<[UInt8]>([])
        let buffer = StandardOutputBuffer(interval: 0.02) { bytes in written.withLock { $0 += bytes } }
        defer { buffer.stopWriter() }
        for i in 0..<3 { buffer.append("line \(i)\n") }
        try await Self.eventually { written.withLock { $0.count } == 21 }
        #expect(String(decoding: written.withLock { $0 }, as: UTF8.self) == "line 0\nline 1\nline 2\n")
    }

    /// With nothing to write the writer sleeps until a line comes, and a line after a quiet spell still reaches the
    /// output within the interval.
    @Test func aLineAfterAQuietSpellIsStillWritten() async throws {
        let written = Mutex<[UInt8]>([])
        let buffer = StandardOutputBuffer(interval: 0.02) { bytes in written.withLock { $0 += bytes } }
        defer { buffer.stopWriter() }
        buffer.append("before\n")
        try await Self.eventually { written.withLock { $0.count } == 7 }
        try await Task.sleep(for: .milliseconds(200))  // ten intervals with nothing to write
        buffer.append("after\n")
        try await Self.eventually { written.withLock { $0.count } == 13 }
        #expect(String(decoding: written.withLock { $0 }, as: UTF8.self) == "before\nafter\n")
    }

    /// While lines keep coming the writer wakes by itself at the end of each interval: a line signals it only when it
    /// found the writer asleep after a quiet interval, not as the first line of every batch.
    @Test func aBusyWriterIsNotWokenForEachBatch() async throws {
        let written = Mutex(0)
        let outputs = Mutex(0)
        let buffer = StandardOutputBuffer(interval: 0.05) { bytes in
            written.withLock { $0 += bytes.count }
            outputs.withLock { $0 += 1 }
        }
        defer { buffer.stopWriter() }
        var expected = 0
        for i in 0..<250 {  // a line every 2 ms or so: every 50 ms interval has some
            let line = "line \(i)\n"
            expected += line.utf8.count
            buffer.append(line)
            try await Task.sleep(for: .milliseconds(2))
        }
        try await Self.eventually { written.withLock { $0 } == expected }
        let batches = outputs.withLock { $0 }
        #expect(batches >= 5)
        // Each batch's first line signalled before: as many signals as batches. A slow machine may leave an
        // interval empty now and then, and the line after it signals; far fewer than one per batch either way.
        #expect(buffer.signalsSent * 2 < batches, "\(buffer.signalsSent) signals for \(batches) batches")
    }

    /// A stalled output never blocks whoever logs: the buffer stops at its capacity, later lines are dropped and
    /// counted, and a warning line reports them once output resumes.
    @Test func aStalledOutputDropsLinesBeyondCapacityInsteadOfBlocking() async throws {
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let calls = Mutex(0)
        let written = Mutex<[UInt8]>([])
        let buffer = StandardOutputBuffer(flushThreshold: 10, capacity: 100, interval: 0.02) { bytes in
            if calls.withLock({
                $0 += 1; return $0
            }) == 1 {
                entered.signal()
                release.wait()
            }
            written.withLock { $0 += bytes }
        }
        defer { buffer.stopWriter() }
        buffer.append("first ...\n")
        entered.wait()  // the writer thread is now stuck in the output
        for i in 0..<50 { buffer.append("line \(i < 10 ? "0" : "")\(i)..\n") }  // 10 bytes each
        release.signal()
        try await Self.eventually { String(decoding: written.withLock { $0 }, as: UTF8.self).contains("dropped") }
        let text = String(decoding: written.withLock { $0 }, as: UTF8.self)
        let lines = text.split(separator: "\n")
        #expect(lines.first == "first ...")
        #expect(lines.dropFirst().prefix(10) == (0..<10).map { "line 0\($0).." }[...])
        let warning = try #require(lines.last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(warning.utf8)) as? [String: Any])
        #expect(object["dropped"] as? Int == 40)
        #expect(object["level"] as? String == "warning")
    }
}

struct AdminServerTests {
    @Test func healthReadinessAndMetrics() async throws {
        let registry = PrometheusCollectorRegistry()
        PrometheusMetricsFactory(registry: registry).makeCounter(label: "things_total", dimensions: []).increment(by: 3)
        let ready = Mutex<String?>("caches not synced")
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: registry,
            readiness: { ready.withLock { $0 } }
        )
        let port = try #require(server.localAddress.port)
        #expect(try get(port, "/healthz").hasPrefix("HTTP/1.1 200"))
        let notReady = try get(port, "/readyz")
        #expect(notReady.hasPrefix("HTTP/1.1 503") && notReady.hasSuffix("caches not synced\n"))
        ready.withLock { $0 = nil }
        #expect(try get(port, "/readyz").hasPrefix("HTTP/1.1 200"))
        let metrics = try get(port, "/metrics")
        #expect(metrics.contains("\r\n\r\n# TYPE things_total counter\nthings_total 3\n"))
        #expect(try get(port, "/nope").hasPrefix("HTTP/1.1 404"))
        await server.close()
    }

    /// A request that cannot be parsed is answered 400 and its connection closed at once, not held.
    @Test func aMalformedRequestIsAnsweredAndClosed() async throws {
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: PrometheusCollectorRegistry(),
            readiness: { nil },
            limits: AdminServer.Limits(requestTimeout: .seconds(60))
        )
        let client = try AdminClient(port: try #require(server.localAddress.port))
        #expect(client.send(Array("G\"ET / HTTP/1.1\r\n\r\n".utf8)))
        let answer = client.readUntilClosed(within: 10).map { String(decoding: $0, as: UTF8.self) }
        #expect(answer?.hasPrefix("HTTP/1.1 400") == true, "\(String(describing: answer))")
        await server.close()
    }

    /// A client that connects and says nothing, and one that trickles a request a byte at a time, each lose their
    /// connection at the request timeout.
    @Test func silentAndTricklingClientsAreClosedAtTheRequestTimeout() async throws {
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: PrometheusCollectorRegistry(),
            readiness: { nil },
            limits: AdminServer.Limits(requestTimeout: .milliseconds(500))
        )
        let port = try #require(server.localAddress.port)
        let silent = try AdminClient(port: port)
        let trickling = try AdminClient(port: port)
        let trickle = Task.detached {
            for byte in "GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: \(String(repeating: "z", count: 200))".utf8 {
                guard trickling.send([byte]) else { return }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // Bounded waits (a receive timeout of 10 s), not timing assertions: without the limit neither would end.
        #expect(silent.readUntilClosed(within: 10) != nil, "the silent client's connection is closed")
        #expect(trickling.readUntilClosed(within: 10) != nil, "the trickling client's connection is closed")
        await trickle.value
        #expect(try get(port, "/healthz").hasPrefix("HTTP/1.1 200"), "others are still served")
        await server.close()
    }

    /// At the limit a new connection takes the place of the one idle longest, so clients holding connections
    /// cannot lock probes out; only when every connection is busy answering is the new one closed unanswered.
    @Test func atTheLimitTheLongestIdleConnectionMakesRoom() async throws {
        // An answer larger than loopback's socket buffers: a client that reads only its head keeps it busy.
        let reason = String(repeating: "r", count: 32 << 20)
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: PrometheusCollectorRegistry(),
            readiness: { reason },
            limits: AdminServer.Limits(requestTimeout: .seconds(60), maximumConnections: 2)
        )
        let port = try #require(server.localAddress.port)
        let healthz = Array("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n".utf8)
        let (older, newer) = (try AdminClient(port: port), try AdminClient(port: port))
        for client in [older, newer] {
            // Answered on a kept-alive connection: the server has taken both, and both are idle again.
            #expect(client.send(healthz))
            #expect(client.readResponse(within: 10)?.hasPrefix("HTTP/1.1 200") == true)
        }
        // The server marks an answered connection idle just after its answer left: wait for both (bounded).
        for _ in 0..<1_000 where server.connections.idleCount < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(try get(port, "/healthz").hasPrefix("HTTP/1.1 200"), "a probe is answered at the limit")
        #expect(older.readUntilClosed(within: 10) == [], "the connection idle longest made room")
        #expect(newer.send(healthz))
        #expect(newer.readResponse(within: 10)?.hasPrefix("HTTP/1.1 200") == true, "the newer one stays")

        // Both slots busy answering (each answer is being written): a new connection is closed unanswered. (Once
        // the server has let the probe's connection go: until then it holds a slot.)
        for _ in 0..<1_000 where server.connections.count > 1 { try await Task.sleep(for: .milliseconds(10)) }
        let busy = try AdminClient(port: port)
        for client in [newer, busy] {
            #expect(client.send(Array("GET /readyz HTTP/1.1\r\nHost: admin\r\n\r\n".utf8)))
            #expect(client.readResponseHead(within: 10)?.hasPrefix("HTTP/1.1 503") == true)
        }
        #expect(server.connections.idleCount == 0)
        let refused = try AdminClient(port: port)
        #expect(refused.readUntilClosed(within: 10) == [], "closed without an answer while all are busy")
        await server.close()
    }

    /// Requests pipelined by a client that never reads its answers: the server stops answering once an answer cannot
    /// leave, instead of building every one of them in memory.
    @Test func aClientThatDoesNotReadHoldsAtMostOneAnswer() async throws {
        let answers = Atomic<Int>(0)
        let reason = String(repeating: "r", count: 256 * 1024)
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: PrometheusCollectorRegistry(),
            readiness: {
                answers.wrappingAdd(1, ordering: .relaxed)
                return reason
            },
            limits: AdminServer.Limits(requestTimeout: .seconds(60))
        )
        let port = try #require(server.localAddress.port)
        let client = try AdminClient(port: port)
        let requests = 2_000
        let request = Array("GET /readyz HTTP/1.1\r\nHost: admin\r\n\r\n".utf8)
        #expect(client.send(Array((0..<requests).map { _ in request }.joined()), timeoutSeconds: 5))
        try await Task.sleep(for: .seconds(2))
        // The loopback socket's buffers take a few answers of 256 KiB; without backpressure all 2,000 (512 MiB)
        // would be built.
        let built = answers.load(ordering: .relaxed)
        #expect(built < 100, "answers built for a client that reads none: \(built)")
        client.close()
        await server.close()
    }

    /// A page that takes long (thousands of entries to list) is answered off the event loop: with one event loop, a
    /// `/healthz` on another connection is answered while the page is still being made. The page is released only
    /// after that answer, so a page made on the loop would block both, and the test would time out.
    @Test func aSlowPageDoesNotHoldUpTheEventLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let server = try await AdminServer.bind(
            host: "127.0.0.1",
            port: 0,
            registry: PrometheusCollectorRegistry(),
            readiness: { nil },
            pages: [
                "/slow": {
                    started.signal()
                    release.wait()
                    return ("text/plain", Array("made\n".utf8))
                }
            ],
            group: group
        )
        let port = try #require(server.localAddress.port)
        // The blocking exchanges run on threads of their own, not on the tests' cooperative threads.
        let slow = Mutex<String?>(nil)
        let slowDone = DispatchSemaphore(value: 0)
        Thread {
            slow.withLock { $0 = try? self.get(port, "/slow") }
            slowDone.signal()
        }.start()
        started.wait()
        #expect(try get(port, "/healthz").hasPrefix("HTTP/1.1 200"))
        release.signal()
        slowDone.wait()
        #expect(slow.withLock { $0 }?.hasSuffix("\r\n\r\nmade\n") == true)
        await server.close()
        try await group.shutdownGracefully()
    }

    /// A blocking HTTP/1.0-style exchange over a real socket: the server closes after the response.
    private func get(_ port: Int, _ path: String) throws -> String {
        let client = try AdminClient(port: port)
        #expect(client.send(Array("GET \(path) HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".utf8)))
        return String(decoding: client.readUntilClosed(within: 10) ?? [], as: UTF8.self)
    }
}

/// One blocking TCP connection to the admin server.
private final class AdminClient: Sendable {
    let fd: Int32

    init(port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            Glibc.close(self.fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { Glibc.close(self.fd) }

    func close() { shutdown(self.fd, Int32(SHUT_RDWR)) }

    /// Sends all of `bytes`; false if the connection failed or the send timed out.
    func send(_ bytes: [UInt8], timeoutSeconds: Int = 10) -> Bool {
        self.setTimeout(SO_SNDTIMEO, seconds: timeoutSeconds)
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes {
                Glibc.send(self.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if count <= 0 { return false }
            sent += count
        }
        return true
    }

    /// Everything up to the server's close, or nil if it has not closed within `seconds` (or reset).
    func readUntilClosed(within seconds: Int) -> [UInt8]? {
        self.setTimeout(SO_RCVTIMEO, seconds: seconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return received }
            if count < 0 { return errno == ECONNRESET ? received : nil }
            received += buffer[0..<count]
        }
    }

    /// Reads until the end of a response head (`\r\n\r\n`); nil on close or timeout first.
    func readResponseHead(within seconds: Int) -> String? {
        self.setTimeout(SO_RCVTIMEO, seconds: seconds)
        var received: [UInt8] = []
        var byte: UInt8 = 0
        while !received.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            guard recv(self.fd, &byte, 1, 0) == 1 else { return nil }
            received.append(byte)
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Reads a whole response (its head, then `Content-Length` bytes of body) and returns its head.
    func readResponse(within seconds: Int) -> String? {
        guard let head = self.readResponseHead(within: seconds) else { return nil }
        let length =
            head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        var byte: UInt8 = 0
        for _ in 0..<length {
            guard recv(self.fd, &byte, 1, 0) == 1 else { return nil }
        }
        return head
    }

    private func setTimeout(_ option: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}
