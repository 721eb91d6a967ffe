import Foundation
import Manifests
import NIOCore
import Testing

@testable import Proxy

/// Malformed and hostile requests: each gets the right status and reason, and nothing reaches the upstream.
@Suite struct HostileRequestTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var request: String
        var status: Int
        /// nil: any reason (the HTTP parser may refuse it before our own checks do).
        var reason: String?
        var description: String { self.name }
    }

    static let host = Fixtures.host("good.upstream.test")

    static let cases: [Case] = [
        Case(
            name: "Content-Length with Transfer-Encoding",
            request:
                "POST /upload HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            status: 400,
            reason: nil
        ),
        Case(
            name: "duplicate differing Content-Length",
            request: "POST /upload HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            status: 400,
            reason: nil
        ),
        Case(
            name: "Transfer-Encoding other than chunked",
            request: "POST /upload HTTP/1.1\r\nHost: \(host)\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            status: 400,
            reason: nil
        ),
        Case(
            name: "oversized header",
            request: "GET /hello HTTP/1.1\r\nHost: \(host)\r\nX-Big: \(String(repeating: "a", count: 40_000))\r\n\r\n",
            status: 431,
            reason: "headers-too-large"
        ),
        Case(
            name: "too many headers",
            request: "GET /hello HTTP/1.1\r\nHost: \(host)\r\n"
                + (0..<150).map { "X-H\($0): v\r\n" }.joined() + "\r\n",
            status: 431,
            reason: "headers-too-large"
        ),
        Case(name: "missing Host", request: "GET /hello HTTP/1.1\r\n\r\n", status: 400, reason: "missing-host"),
        Case(
            name: "HTTP/1.1 absolute URI without a Host header",
            request: "GET http://\(host)/hello HTTP/1.1\r\n\r\n",
            status: 400,
            reason: "missing-host"
        ),
        Case(
            name: "two Host headers",
            request: "GET /hello HTTP/1.1\r\nHost: \(host)\r\nHost: other.upstream.test.egress.local\r\n\r\n",
            status: 400,
            reason: "bad-host"
        ),
        Case(
            name: "Host not under the suffix",
            request: "GET /hello HTTP/1.1\r\nHost: good.upstream.test\r\n\r\n",
            status: 400,
            reason: "not-under-suffix"
        ),
        Case(
            name: "IP literal Host",
            request: "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            status: 400,
            reason: "ip-literal"
        ),
        Case(
            name: "IP literal under the suffix",
            request: "GET /hello HTTP/1.1\r\nHost: 127.0.0.1.egress.local\r\n\r\n",
            status: 400,
            reason: "ip-literal"
        ),
        Case(
            name: "IPv6 literal Host",
            request: "GET /hello HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
            status: 400,
            reason: "ip-literal"
        ),
        Case(
            name: "user info in Host",
            request: "GET /hello HTTP/1.1\r\nHost: evil.com@\(host)\r\n\r\n",
            status: 400,
            reason: "bad-host"
        ),
        Case(
            name: "absolute URI to another site with an allowed Host",
            request: "GET http://evil.com/ HTTP/1.1\r\nHost: \(host)\r\n\r\n",
            status: 400,
            reason: "not-under-suffix"
        ),
        Case(
            name: "absolute URI naming a different allowed-looking host",
            request: "GET http://other.upstream.test.egress.local/ HTTP/1.1\r\nHost: \(host)\r\n\r\n",
            status: 400,
            reason: "host-mismatch"
        ),
        Case(
            name: "absolute URI with user info",
            request: "GET http://evil.com@good.upstream.test.egress.local/ HTTP/1.1\r\nHost: \(host)\r\n\r\n",
            status: 400,
            reason: "bad-host"
        ),
        Case(
            name: "CONNECT",
            request: "CONNECT good.upstream.test:443 HTTP/1.1\r\nHost: \(host)\r\n\r\n",
            status: 405,
            reason: "connect-not-allowed"
        ),
        Case(
            name: "not allowed",
            request: "GET /hello HTTP/1.1\r\nHost: metadata.google.internal.egress.local\r\n\r\n",
            status: 403,
            reason: "not-allowed"
        ),
        Case(name: "garbage", request: "HELLO THERE\r\n\r\n", status: 400, reason: "malformed-request"),
        Case(
            name: "obsolete line folding",
            request: "GET /hello HTTP/1.1\r\nHost: \(host)\r\nX-A: 1\r\n folded\r\n\r\n",
            status: 400,
            reason: nil
        ),
        Case(
            name: "HTTP/2 preface on the HTTP/1 port",
            request: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            status: 400,
            reason: nil
        ),
    ]

    @Test func corpusIsRefusedAndNothingReachesTheUpstream() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [
                    Fixtures.entry("good.upstream.test", upstream: upstream),
                    Fixtures.entry("other.upstream.test", upstream: upstream),
                ]),
                configure: {
                    $0.maxHeaderBytes = 16 * 1024
                    $0.maxHeaderCount = 100
                }
            ) { proxy in
                for item in Self.cases {
                    let raw = try await proxy.raw()
                    try await raw.send(item.request)
                    let response = await raw.readResponse() ?? "<closed without a response>"
                    #expect(response.hasPrefix("HTTP/1.1 \(item.status) "), "\(item.name): \(response.prefix(200))")
                    if let reason = item.reason {
                        #expect(
                            response.lowercased().contains("x-egress-error: \(reason)\r\n"),
                            "\(item.name): \(response.prefix(300))"
                        )
                    }
                    await raw.close()
                }
                #expect(upstream.requests == 0)
                #expect(upstream.connections == 0)
            }
        }
    }

    /// `Connection: content-length` must not drop the length the proxy frames the body by: the body, a request
    /// of its own, would reach the upstream as a next request no check has seen, and its answer would go to the
    /// next client of that pooled connection.
    @Test func connectionNamingContentLengthSmugglesNothing() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)])
            ) { proxy in
                let smuggled = "GET /hello HTTP/1.1\r\nHost: good.upstream.test\r\n\r\n"
                let raw = try await proxy.raw()
                try await raw.send(
                    "POST /upload HTTP/1.1\r\nHost: \(Self.host)\r\nConnection: content-length\r\n"
                        + "Content-Length: \(smuggled.utf8.count)\r\n\r\n\(smuggled)"
                )
                let first = await raw.readResponse() ?? ""
                #expect(first.contains("received \(smuggled.utf8.count) "), "\(first)")
                // The next request on the same connection gets its own answer, not the smuggled request's.
                try await raw.send("POST /upload HTTP/1.1\r\nHost: \(Self.host)\r\nContent-Length: 3\r\n\r\nabc")
                let second = await raw.readResponse() ?? ""
                #expect(second.contains("received 3 "), "\(second)")
                await raw.close()
                #expect(upstream.heads.map(\.uri) == ["/upload", "/upload"])
                #expect(upstream.heads.first?.headers["content-length"] == ["\(smuggled.utf8.count)"])
            }
        }
    }

    /// The body of a refused request is read (to keep the connection usable) but, trickled, gets no more time than
    /// a head would.
    @Test func aTrickledRefusedBodyIsCutOff() async throws {
        try await ProxyHarness.with(
            AllowList(hosts: []),
            // Long enough for a loaded machine to send the head in time, short against the client idle timeout.
            configure: { $0.requestHeadTimeout = .milliseconds(1_500) }
        ) { proxy in
            let raw = try await proxy.raw(
                sending:
                    "POST /x HTTP/1.1\r\nHost: \(Fixtures.host("nope.example.com"))\r\nContent-Length: 1000\r\n\r\n"
            )
            #expect(await raw.readResponse()?.hasPrefix("HTTP/1.1 403 ") == true)
            let sent = try await raw.trickle(upTo: 100) { _ in "x" }
            #expect(raw.isClosed)
            #expect(sent < 100, "the proxy kept a trickling refused body open")
        }
    }

    /// A kept-alive connection may idle past the head timeout (the client idle timeout bounds it, as nginx's
    /// `keepalive_timeout` does); the next request's head, once begun, must still be complete in time.
    @Test func anIdleKeptAliveConnectionWaitsButItsNextHeadIsTimed() async throws {
        try await Self.withHeadTimeoutAlone { proxy in
            let request = "GET / HTTP/1.1\r\nHost: \(Fixtures.host("nope.example.com"))\r\n\r\n"
            let raw = try await proxy.raw(sending: request)
            #expect(await raw.readResponse()?.hasPrefix("HTTP/1.1 403 ") == true)
            try await Task.sleep(for: .milliseconds(2_500))
            try await raw.send(request)
            #expect(await raw.readResponse()?.hasPrefix("HTTP/1.1 403 ") == true)
            let sent = try await raw.trickle(upTo: 200) { $0 == 0 ? "GET / HTTP/1.1\r\n" : "X-\($0): a\r\n" }
            #expect(raw.isClosed)
            #expect(sent < 200, "the proxy kept a trickling connection open")
        }
    }

    /// The start of a head that arrives in the same read as the end of the request before it is timed as well:
    /// only the head timeout can close this connection (the time limit guards against a hang).
    @Test(.timeLimit(.minutes(1)))
    func aPartialHeadBehindAnAnsweredRequestIsTimed() async throws {
        try await Self.withHeadTimeoutAlone { proxy in
            let host = Fixtures.host("nope.example.com")
            let raw = try await proxy.raw(
                sending: "POST / HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: "
            )
            #expect(await raw.readResponse()?.hasPrefix("HTTP/1.1 403 ") == true)
            await raw.waitForClose()
            #expect(raw.isClosed)
        }
    }

    /// A proxy refusing every host whose head timeout (1.5 s: long enough for a loaded machine to send a head in
    /// time) is the only one that can close a connection in a test: the client idle timeout is an hour.
    private static func withHeadTimeoutAlone(_ body: (ProxyHarness) async throws -> Void) async throws {
        try await ProxyHarness.with(
            AllowList(hosts: []),
            configure: {
                $0.requestHeadTimeout = .milliseconds(1_500)
                $0.clientIdleTimeout = .seconds(3600)
            },
            body
        )
    }

    @Test func slowlorisIsCutOff() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                configure: { $0.requestHeadTimeout = .milliseconds(1_500) }
            ) { proxy in
                let raw = try await proxy.raw()
                // The request line, then header lines, a line every 50 ms (10 s for all 200); the proxy must close the
                // connection on its own anyway. On a loaded machine it may do so before the first line is sent: that
                // is the cut-off too, so the first line is trickled like the rest rather than sent with a `try`.
                let sent = try await raw.trickle(upTo: 200) {
                    $0 == 0 ? "GET /hello HTTP/1.1\r\nHost: \(Self.host)\r\n" : "X-\($0): a\r\n"
                }
                #expect(raw.isClosed)
                #expect(sent < 200, "the proxy kept a trickling connection open")
                #expect(upstream.requests == 0)
            }
        }
    }
}
