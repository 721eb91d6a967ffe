import Foundation
import Manifests
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Proxy

/// End-to-end over real sockets: client → proxy (plain HTTP) → real HTTPS upstream with test certificates.
@Suite struct RoutingAndTLSTests {
    @Test func allowedRequestIsProxiedOverVerifiedTLSWithSanitizedHeaders() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let client = try await proxy.client()
            let response = try await client.get(
                "/hello",
                host: Fixtures.host("good.upstream.test"),
                headers: [
                    ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"), ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic eA=="), ("TE", "trailers"), ("Upgrade", "h2c"),
                    ("Authorization", "Bearer app-token"),
                ]
            )
            #expect(response.status == .ok)
            #expect(response.text == "hello from upstream\n")
            #expect(response.headers["x-seen-host"] == ["good.upstream.test:\(upstream.port)"])
            #expect(response.headers["x-seen-headers"] == ["authorization,host"])
            #expect(response.headers["connection"].isEmpty)
            await client.close()
        }
    }

    @Test func deniedAndWildcardRouting() async throws {
        try await TestUpstream.with { upstream in
            let list = AllowList(hosts: [
                Fixtures.entry("good.upstream.test", upstream: upstream),
                Fixtures.entry("*.wild.upstream.test", upstream: upstream),
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let denied = try await client.get("/hello", host: Fixtures.host("api.github.com"))
                #expect(denied.status == .forbidden)
                #expect(denied.reason == "not-allowed")
                #expect(upstream.requests == 0)
                // The same connection stays usable after a denial.
                let wild = try await client.get("/hello", host: Fixtures.host("a.wild.upstream.test"))
                #expect(wild.status == .ok)
                #expect(wild.headers["x-seen-host"] == ["a.wild.upstream.test:\(upstream.port)"])
                let base = try await client.get("/hello", host: Fixtures.host("wild.upstream.test"))
                #expect(base.status == .forbidden)
                #expect(upstream.requests == 1)
                // Each request of a keep-alive connection is routed by its own name (the connection remembers only
                // its last Host value and routing).
                for name in [
                    "good.upstream.test", "b.wild.upstream.test", "b.wild.upstream.test", "a.wild.upstream.test",
                    "api.github.com", "a.wild.upstream.test",
                ] {
                    let response = try await client.get("/hello", host: Fixtures.host(name))
                    if name == "api.github.com" {
                        #expect(response.status == .forbidden)
                    } else {
                        #expect(response.status == .ok)
                        #expect(response.headers["x-seen-host"] == ["\(name):\(upstream.port)"])
                    }
                }
                #expect(upstream.requests == 6)
                // The last request's Host value, twice: refused all the same.
                let twice = try await client.get(
                    "/hello",
                    host: Fixtures.host("a.wild.upstream.test"),
                    headers: [("Host", Fixtures.host("a.wild.upstream.test"))]
                )
                #expect(twice.status == .badRequest)
                #expect(twice.reason == "bad-host")
                #expect(upstream.requests == 6)
                await client.close()
            }
        }
    }

    @Test(arguments: [
        ("unknown CA", TestPKI.shared.unknownCA), ("wrong host name", TestPKI.shared.wrongName),
        ("expired", TestPKI.shared.expired),
    ])
    func certificateVerificationFailuresAre502(_ label: String, certificate: TestPKI.Issued) async throws {
        try await TestUpstream.with(certificate: certificate) { upstream in
            try await ProxyHarness.with(AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)])) {
                proxy in
                let client = try await proxy.client()
                let response = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(response.status == .badGateway, "\(label)")
                #expect(response.reason == "upstream-certificate-invalid", "\(label): \(response.text)")
                #expect(upstream.requests == 0)
                await client.close()
            }
        }
    }

    @Test func systemTrustRootsDoNotTrustTheTestCAButInsecureSkipVerifyDoes() async throws {
        try await TestUpstream.with { upstream in
            let list = AllowList(hosts: [
                Fixtures.entry("good.upstream.test", upstream: upstream, ca: nil),
                Fixtures.entry(
                    "skip.upstream.test",
                    upstream: upstream,
                    tls: .init(insecureSkipVerify: true)
                ),
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let verified = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(verified.status == .badGateway)
                #expect(verified.reason == "upstream-certificate-invalid")
                let skipped = try await client.get("/hello", host: Fixtures.host("skip.upstream.test"))
                #expect(skipped.status == .ok)
                await client.close()
            }
        }
    }

    @Test func upstreamRequiringAClientCertificate() async throws {
        let pki = TestPKI.shared
        try await TestUpstream.with(requireClientCertificateFrom: pki.clientCA) { upstream in
            let list = AllowList(hosts: [
                Fixtures.entry("good.upstream.test", upstream: upstream),
                Fixtures.entry(
                    "mtls.wild.upstream.test",
                    upstream: upstream,
                    tls: .init(
                        caFile: pki.ca.certificatePath,
                        clientCertificateFile: pki.client.certificatePath,
                        clientKeyFile: pki.client.keyPath
                    )
                ),
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let without = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(without.status == .badGateway)
                // Under TLS 1.3 the refusal is an alert after the handshake, still a TLS failure; the body names
                // BoringSSL's reason, not its source paths.
                #expect(without.reason == "upstream-tls-failed")
                #expect(without.text.contains("requires a client certificate"), "\(without.text)")
                #expect(!without.text.contains(".cc"), "\(without.text)")
                let with = try await client.get("/hello", host: Fixtures.host("mtls.wild.upstream.test"))
                #expect(with.status == .ok)
                #expect(upstream.requests == 1)
                await client.close()
            }
        }
    }

    /// TLS files the allow-list names are read again when they change, without a change of the allow-list: the
    /// kubelet may update the TLS Secret's volume after the allow-list's ConfigMap, and rotates certificates in
    /// place. Until the files are there the host gets a 502; once they are, new connections use them.
    @Test func tlsFilesThatAppearOrChangeAreReadAgain() async throws {
        let pki = TestPKI.shared
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("egress-tls-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (certificate, key) = ("\(directory)/client.crt", "\(directory)/client.key")
        try await TestUpstream.with(requireClientCertificateFrom: pki.clientCA) { upstream in
            let list = AllowList(hosts: [
                Fixtures.entry(
                    "rotated.wild.upstream.test",
                    upstream: upstream,
                    tls: .init(
                        caFile: pki.ca.certificatePath,
                        clientCertificateFile: certificate,
                        clientKeyFile: key
                    )
                )
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let missing = try await client.get("/hello", host: Fixtures.host("rotated.wild.upstream.test"))
                #expect(missing.status == .badGateway)
                #expect(missing.reason == "upstream-tls-configuration")
                #expect(upstream.requests == 0)

                try FileManager.default.copyItem(atPath: pki.client.certificatePath, toPath: certificate)
                try FileManager.default.copyItem(atPath: pki.client.keyPath, toPath: key)
                try await Task.sleep(for: .milliseconds(1_100))
                let present = try await client.get("/hello", host: Fixtures.host("rotated.wild.upstream.test"))
                #expect(present.status == .ok, "\(present.reason ?? "")")
                #expect(upstream.requests == 1)

                // Files that vanish (a volume mid-update) do not take a good context away: the pooled connection
                // closes on this request, and its retry on a new connection still has TLS (and so reaches the
                // upstream, which closes again).
                try FileManager.default.removeItem(atPath: key)
                try await Task.sleep(for: .milliseconds(1_100))
                let vanished = try await client.get("/close", host: Fixtures.host("rotated.wild.upstream.test"))
                #expect(vanished.status == .badGateway)
                #expect(vanished.reason == "upstream-closed")
                #expect(upstream.heads.map(\.uri) == ["/hello", "/close", "/close"])
                await client.close()
            }
        }
    }

    @Test func keepAliveReusesOneUpstreamConnection() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let client = try await proxy.client()
            for _ in 0..<20 {
                let response = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(response.status == .ok)
            }
            #expect(upstream.requests == 20)
            #expect(upstream.connections == 1)
            let text = proxy.metricsText
            #expect(text.contains(#"egress_upstream_connections_total{host="good.upstream.test",kind="opened"} 1"#))
            #expect(text.contains(#"egress_upstream_connections_total{host="good.upstream.test",kind="reused"} 19"#))
            await client.close()
        }
    }

    /// A reused upstream connection that closes instead of answering: an idempotent request is sent once more on a
    /// fresh connection, a `POST` (which the upstream may have acted on) never is: its client gets the 502.
    @Test func onlyIdempotentRequestsAreRetriedOnAClosedPooledConnection() async throws {
        try await withEventLoopGroup(threads: 1) { loop in
            try await ProxyHarness.withGoodUpstream(group: loop) { proxy, upstream in
                let host = Fixtures.host("good.upstream.test")
                let raw = try await proxy.raw()
                for request in [
                    "GET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                    "POST /close HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 2\r\n\r\nhi",
                    "GET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                    "GET /close HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                    "GET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                    "GET /close-unclean HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                ] {
                    try await raw.send(request)
                    let response = await raw.readResponse() ?? ""
                    let expected = request.contains("/close") ? "HTTP/1.1 502 " : "HTTP/1.1 200 "
                    #expect(response.hasPrefix(expected), "\(request.prefix(16)): \(response.prefix(200))")
                    if request.contains("/close") {
                        #expect(response.lowercased().contains("x-egress-error: upstream-closed\r\n"))
                    }
                }
                await raw.close()
                // The POST reached the upstream once; each GET twice, the second time on a new connection, whether
                // the stale connection closed with TLS's close_notify or without.
                #expect(
                    upstream.heads.map(\.uri) == [
                        "/hello", "/close", "/hello", "/close", "/close", "/hello", "/close-unclean", "/close-unclean",
                    ]
                )
                #expect(upstream.connections == 5)
            }
        }
    }

    @Test func anAbandonedRequestDoesNotCostAnUpstreamConnection() async throws {
        // One event loop, so every client shares one upstream pool.
        try await withEventLoopGroup(threads: 1) { loop in
            try await TestUpstream.with { upstream in
                try await ProxyHarness.with(
                    AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                    group: loop
                ) { proxy in
                    let raw = try await proxy.raw()
                    try await raw.send("GET /slow/300 HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n\r\n")
                    while upstream.requests < 1 { try await Task.sleep(for: .milliseconds(10)) }
                    await raw.close()
                    // The abandoned response is drained and the connection goes back to the pool.
                    var polls = 0
                    while try await proxy.proxy.idleUpstreamConnections() < 1, polls < 500 {
                        try await Task.sleep(for: .milliseconds(10))
                        polls += 1
                    }
                    #expect(try await proxy.proxy.idleUpstreamConnections() == 1)
                    let client = try await proxy.client()
                    for _ in 0..<3 {
                        #expect(
                            try await client.get("/slow/400", host: Fixtures.host("good.upstream.test")).status == .ok
                        )
                    }
                    #expect(upstream.connections == 1)
                    #expect(
                        proxy.metricsText.contains(
                            #"egress_upstream_connections_total{host="good.upstream.test",kind="reused"} 3"#
                        )
                    )
                    await client.close()
                }
            }
        }
    }

    /// No client handler outlives its connection: not through its channel context (which holds it), nor through an
    /// upstream handler, which holds its owner strongly until the owner lets the connection go. Checked after an
    /// abandoned request (drained), a client leaving mid-download (closed), an invalid upstream response (502), a
    /// denied request, and keep-alive exchanges (pooled).
    @Test func noClientHandlerOutlivesItsConnection() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let abandoned = try await proxy.raw()
            try await abandoned.send("GET /slow/200 HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            let leaving = try await proxy.raw()
            try await leaving.send("GET /download/50000000 HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            while upstream.requests < 2 { try await Task.sleep(for: .milliseconds(10)) }
            await abandoned.close()
            await leaving.close()

            // Last, so the pooled connections were last used by this client.
            let client = try await proxy.client()
            #expect(try await client.get("/invalid-http", host: host).status == .badGateway)
            #expect(try await client.get("/hello", host: Fixtures.host("denied.test")).status == .forbidden)
            // A head followed at once by a malformed body: nothing of it has left, so still a 502 (and a closed
            // connection: the exchange is over), not a connection closed with no answer.
            let badBody = try await proxy.raw()
            try await badBody.send("GET /bad-chunk HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            let answer = await badBody.readResponse() ?? "<closed without a response>"
            #expect(answer.hasPrefix("HTTP/1.1 502 "), "\(answer)")
            #expect(answer.lowercased().contains("x-egress-error: upstream-protocol-error\r\n"), "\(answer)")
            await badBody.close()
            for _ in 0..<3 { #expect(try await client.get("/hello", host: host).status == .ok) }
            await client.close()

            var polls = 0
            while proxy.stats.liveClientHandlers > 0, polls < 500 {
                try await Task.sleep(for: .milliseconds(10))
                polls += 1
            }
            #expect(proxy.stats.liveClientHandlers == 0)
        }
    }

    @Test func ssrfRefusesPrivateAddressesUnlessAllowed() async throws {
        try await TestUpstream.with { upstream in
            var resolved = AllowList.Entry(host: "localhost", port: upstream.port)
            resolved.tls = .init(caFile: TestPKI.shared.ca.certificatePath)
            let list = AllowList(hosts: [
                Fixtures.entry("good.upstream.test", upstream: upstream, allowPrivateAddresses: false),
                // Resolved through DNS (/etc/hosts): still refused, the check is on the resolved address.
                resolved,
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let fixed = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(fixed.status == .badGateway)
                #expect(fixed.reason == "private-address")
                let dns = try await client.get("/hello", host: Fixtures.host("localhost"))
                #expect(dns.status == .badGateway)
                #expect(dns.reason == "private-address")
                #expect(upstream.connections == 0)
                #expect(proxy.metricsText.contains(#"egress_denials_total{reason="private-address"} 2"#))
                await client.close()
            }
        }
    }

    @Test func upstreamFailures() async throws {
        try await TestUpstream.with { upstream in
            // A port with nothing listening: bind one, note it, close it.
            let closed = try await TestUpstream.start()
            let closedPort = closed.port
            await closed.stop()
            var refused = Fixtures.entry("refused.upstream.test", upstream: upstream)
            refused.port = closedPort
            let list = AllowList(hosts: [
                Fixtures.entry("good.upstream.test", upstream: upstream, timeouts: .init(responseHeadersMillis: 300)),
                Fixtures.entry("patient.wild.upstream.test", upstream: upstream),
                refused,
            ])
            try await ProxyHarness.with(list) { proxy in
                let client = try await proxy.client()
                let timeout = try await client.get("/hang", host: Fixtures.host("good.upstream.test"))
                #expect(timeout.status == .gatewayTimeout)
                #expect(timeout.reason == "upstream-response-timeout")
                let refusedResponse = try await client.get("/hello", host: Fixtures.host("refused.upstream.test"))
                #expect(refusedResponse.status == .badGateway)
                #expect(refusedResponse.reason == "upstream-connect-failed")
                let invalid = try await client.get("/invalid-http", host: Fixtures.host("patient.wild.upstream.test"))
                #expect(invalid.status == .badGateway)
                #expect(invalid.reason == "upstream-protocol-error")
                // Still healthy afterwards, on the same client connection (through an entry with the default
                // response timeout, so a loaded test machine cannot turn this into a 504).
                let ok = try await client.get("/slow/10", host: Fixtures.host("patient.wild.upstream.test"))
                #expect(ok.status == .ok, "\(ok.reason ?? "") \(ok.text)")
                await client.close()
            }
        }
    }

    /// An upstream that sends a second response nobody asked for, in the same bytes as its answer, never gets it to
    /// a client, not even to the pipelined request that is sent on the same upstream connection as soon as the
    /// first response ends: bytes read before a request was written cannot answer it.
    @Test func aResponseToNoRequestNeverAnswersTheNextOne() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let raw = try await proxy.raw()
            let host = Fixtures.host("good.upstream.test")
            try await raw.send(
                "GET /two-responses HTTP/1.1\r\nHost: \(host)\r\n\r\nGET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n"
            )
            let first = await raw.readResponse() ?? ""
            #expect(first.hasPrefix("HTTP/1.1 200") && first.hasSuffix("\r\n\r\nmine"), "\(first)")
            let second = await raw.readResponse() ?? ""
            #expect(!second.contains("forged"), "\(second)")
            // Retried on a fresh connection (the first was failed), or refused: never the forged bytes.
            #expect(second.hasPrefix("HTTP/1.1 200") || second.hasPrefix("HTTP/1.1 502"), "\(second)")
            await raw.close()
        }
    }

    /// Bytes an upstream sends after the response asked for (the start of a forged response in the same write or
    /// while the connection idles in the pool, more body than the length said, a body on a `HEAD` or 204 answer)
    /// never become part of another client's answer: the connection is closed instead of pooled.
    @Test(arguments: [
        (HTTPMethod.GET, "/stray/now", HTTPResponseStatus.ok), (.GET, "/stray/late", .ok), (.GET, "/overlong", .ok),
        (.HEAD, "/overlong", .ok), (.GET, "/204-body", .noContent),
    ])
    func bytesAfterAResponseNeverReachTheNextClient(
        method: HTTPMethod,
        path: String,
        status: HTTPResponseStatus
    ) async throws {
        // One event loop: both clients share one upstream pool.
        try await withEventLoopGroup(threads: 1) { loop in
            try await ProxyHarness.withGoodUpstream(group: loop) { proxy, upstream in
                let host = Fixtures.host("good.upstream.test")
                let first = try await proxy.client()
                let answer = try await first.get(path, host: host, method: method)
                #expect(answer.status == status, "\(answer.reason ?? "") \(answer.text)")
                await first.close()
                // The late bytes arrive while the connection idles in the pool.
                try await Task.sleep(for: .milliseconds(300))
                let next = try await proxy.client()
                let response = try await next.get("/hello", host: host)
                #expect(response.status == .ok, "\(response.reason ?? "") \(response.text)")
                #expect(response.text == "hello from upstream\n")
                #expect(upstream.connections == 2)
                await next.close()
            }
        }
    }

    /// An HTTP/1.0 response with Transfer-Encoding ends its connection whatever its `Connection` header says
    /// (RFC 9112, section 6.1).
    @Test func anHTTP10ResponseWithTransferEncodingIsNotPooled() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let client = try await proxy.client()
            let first = try await client.get("/http10-chunked", host: host)
            #expect(first.status == .ok)
            #expect(first.text == "mine")
            let second = try await client.get("/hello", host: host)
            #expect(second.status == .ok, "\(second.reason ?? "") \(second.text)")
            #expect(upstream.connections == 2)
            await client.close()
        }
    }

    /// An HTTP/1.0 client reads a body without a length to the connection's close: when the upstream cuts it short
    /// the proxy resets the connection, so the client cannot take the part for the whole. A whole body still ends
    /// with an orderly close.
    @Test func anHTTP10ClientIsToldOfACutShortBodyByAReset() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let whole = try await proxy.raw(sending: "GET /unframed HTTP/1.0\r\nHost: \(host)\r\n\r\n")
            let head = await whole.readResponse() ?? ""
            #expect(head.hasPrefix("HTTP/1.0 200"), "\(head)")
            // No length: the rest is what arrives until the close.
            let body = await whole.readResponse() ?? ""
            #expect(body == "partial and the rest")
            #expect(whole.isClosed && !whole.wasReset)
            let cut = try await proxy.raw(sending: "GET /unframed/cut HTTP/1.0\r\nHost: \(host)\r\n\r\n")
            await cut.waitForClose()
            #expect(cut.wasReset)
        }
    }
}

@Suite struct HTTPSemanticsTests {
    @Test func chunkedBothWaysHeadNoContentNotModified() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let client = try await proxy.client()
            let host = Fixtures.host("good.upstream.test")
            // Chunked upload (no Content-Length).
            let count = 1 << 20
            let upload = try await client.send(
                HTTPRequestHead(
                    version: .http1_1,
                    method: .POST,
                    uri: "/upload",
                    headers: ["Host": host, "Transfer-Encoding": "chunked"]
                ),
                body: .generated(count: count, chunk: 16 * 1024)
            )
            #expect(upload.text == "received \(count) checksum \(TestClient.checksum(count: count))\n")
            #expect(upstream.heads.last?.headers["transfer-encoding"] == ["chunked"])
            // Chunked download.
            let chunked = try await client.get("/chunked", host: host)
            #expect(chunked.text == "one,two,three")
            #expect(chunked.headers["transfer-encoding"] == ["chunked"])
            // HEAD: the length of the would-be body, no body, and the connection stays in sync.
            let head = try await client.get("/download-cl/1234", host: host, method: .HEAD)
            #expect(head.status == .ok)
            #expect(head.headers["content-length"] == ["1234"])
            #expect(head.bodyCount == 0)
            let noContent = try await client.get("/204", host: host)
            #expect(noContent.status == .noContent)
            #expect(noContent.bodyCount == 0)
            let notModified = try await client.get("/304", host: host)
            #expect(notModified.status == .notModified)
            #expect(notModified.bodyCount == 0)
            let after = try await client.get("/hello", host: host)
            #expect(after.text == "hello from upstream\n")
            #expect(upstream.connections == 1)
            await client.close()
        }
    }

    /// A chunked body on a method that rarely has one (`DELETE`, `GET`) is forwarded chunked. Sent unframed, its
    /// bytes would read as a second request on the pooled upstream connection (request smuggling).
    @Test func chunkedBodyOfAnyMethodStaysFramed() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let raw = try await proxy.raw()
            let smuggled = "GET /hello HTTP/1.1\r\nHost: good.upstream.test\r\n\r\n"
            let before = upstream.requests
            try await raw.send(
                "DELETE /upload HTTP/1.1\r\nHost: \(host)\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + String(smuggled.utf8.count, radix: 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"
            )
            let response = await raw.readResponse()
            #expect(response?.hasPrefix("HTTP/1.1 200 OK") == true)
            #expect(
                response?.hasSuffix("received \(smuggled.utf8.count) checksum \(Self.checksum(smuggled))\n") == true
            )
            // The same connection answers the next request with its own response, not a smuggled one.
            try await raw.send("GET /upload HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            let next = await raw.readResponse()
            #expect(next?.hasSuffix("received 0 checksum 0\n") == true)
            #expect(upstream.requests == before + 2)
            #expect(upstream.heads.suffix(2).map(\.method) == [.DELETE, .GET])
            #expect(upstream.heads.suffix(2).first?.headers["transfer-encoding"] == ["chunked"])
        }
    }

    @Test func expectContinueAndPipelining() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let raw = try await proxy.raw()
            try await raw.send(
                "PUT /upload HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            let interim = await raw.readResponse()
            #expect(interim?.hasPrefix("HTTP/1.1 100 Continue") == true)
            try await raw.send("hello")
            let final = await raw.readResponse()
            #expect(final?.hasPrefix("HTTP/1.1 200 OK") == true)
            #expect(final?.hasSuffix("received 5 checksum \(Self.checksum("hello"))\n") == true)
            #expect(upstream.heads.last?.headers["expect"] == [])
            // Two pipelined requests in one write: answered in order even though the first is slower.
            try await raw.send(
                "GET /slow/200 HTTP/1.1\r\nHost: \(host)\r\n\r\nGET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n"
            )
            let first = await raw.readResponse()
            let second = await raw.readResponse()
            #expect(first?.hasSuffix("slow\n") == true)
            #expect(second?.hasSuffix("hello from upstream\n") == true)
            await raw.close()
        }
    }

    /// A refused request's small body is read and discarded so the connection stays usable; a large one (or one
    /// the client may hold back for `100 Continue`) is not worth reading, so that connection is closed.
    @Test func refusedRequestBodies() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let denied = Fixtures.host("nope.example.com")
            let raw = try await proxy.raw()
            try await raw.send(
                "POST /x HTTP/1.1\r\nHost: \(denied)\r\nContent-Length: 5\r\n\r\nhello"
                    + "GET /hello HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n\r\n"
            )
            let refused = await raw.readResponse()
            #expect(refused?.hasPrefix("HTTP/1.1 403") == true)
            #expect(refused?.lowercased().contains("connection: close") == false)
            #expect(await raw.readResponse()?.hasSuffix("hello from upstream\n") == true)
            try await raw.send("POST /x HTTP/1.1\r\nHost: \(denied)\r\nContent-Length: 100000\r\n\r\nhello")
            #expect(await raw.readResponse()?.lowercased().contains("connection: close") == true)
            #expect(await raw.readResponse() == nil)
            await raw.close()

            let waiting = try await proxy.raw()
            try await waiting.send(
                "PUT /x HTTP/1.1\r\nHost: \(denied)\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            #expect(await waiting.readResponse()?.lowercased().contains("connection: close") == true)
            await waiting.close()
            #expect(upstream.heads.map(\.uri) == ["/hello"])
        }
    }

    /// The proxy queues pipelined requests itself: a slow allowed request, a denied one, one with a body and
    /// finally bytes that do not parse, all in one write, are answered in order, and only the allowed two reach the
    /// upstream.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let raw = try await proxy.raw()
            try await raw.send(
                "GET /slow/200 HTTP/1.1\r\nHost: \(host)\r\n\r\n"
                    + "GET /hello HTTP/1.1\r\nHost: \(Fixtures.host("nope.example.com"))\r\n\r\n"
                    + "PUT /upload HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\n\r\nhello"
                    + "NOT HTTP AT ALL\r\n\r\n"
            )
            let slow = await raw.readResponse()
            let denied = await raw.readResponse()
            let upload = await raw.readResponse()
            let malformed = await raw.readResponse()
            #expect(slow?.hasPrefix("HTTP/1.1 200 OK") == true && slow?.hasSuffix("slow\n") == true)
            #expect(denied?.hasPrefix("HTTP/1.1 403 Forbidden") == true)
            #expect(upload?.hasSuffix("received 5 checksum \(Self.checksum("hello"))\n") == true)
            #expect(malformed?.hasPrefix("HTTP/1.1 400 Bad Request") == true)
            #expect(await raw.readResponse() == nil, "the connection closes after the malformed request")
            #expect(upstream.heads.map(\.uri) == ["/slow/200", "/upload"])
            await raw.close()
        }
    }

    static func checksum(_ s: String) -> UInt64 {
        s.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }
    }
}

/// Large bodies through the proxy, with proxy memory measured two ways: the most bytes ever queued towards a
/// client (an exact count kept by the proxy), and the growth of this process's resident set (coarse: the test
/// process also hosts the client and the upstream, but a proxy that buffered the body would grow by 256 MiB).
@Suite(.serialized) struct StreamingTests {
    static let size = 256 << 20

    @Test func largeDownloadAndUploadStreamWithBoundedMemory() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let client = try await proxy.client()
            let host = Fixtures.host("good.upstream.test")
            // Warm up (TLS contexts, pools), then measure.
            _ = try await client.get("/hello", host: host)
            let rssBefore = residentBytes()
            let download = try await client.get("/download/\(Self.size)", host: host)
            #expect(download.status == .ok)
            #expect(download.bodyCount == Self.size)
            let afterDownload = residentBytes() - rssBefore
            #expect(afterDownload < 64 << 20, "resident memory grew by \(afterDownload >> 20) MiB during the download")
            let upload = try await client.send(
                HTTPRequestHead(
                    version: .http1_1,
                    method: .PUT,
                    uri: "/upload",
                    headers: ["Host": host, "Content-Length": "\(Self.size)"]
                ),
                body: .generated(count: Self.size, chunk: 256 * 1024)
            )
            #expect(upload.text == "received \(Self.size) checksum \(TestClient.checksum(count: Self.size))\n")
            let growth = residentBytes() - rssBefore
            print(
                "streaming 2 x \(Self.size >> 20) MiB: RSS growth \(growth >> 20) MiB, max queued \(proxy.stats.maxBufferedBytes) B"
            )
            #expect(growth < 96 << 20, "resident memory grew by \(growth >> 20) MiB while streaming 2 x 256 MiB")
            #expect(
                proxy.stats.maxBufferedBytes < 4 << 20,
                "the proxy queued up to \(proxy.stats.maxBufferedBytes) bytes towards the client"
            )
            await client.close()
        }
    }
}

/// Each timeout of an entry and of the client connection, provoked for real: a port whose backlog is full (the
/// connect never completes), a port that accepts and never speaks TLS, an upstream that stops mid-body, a pooled
/// connection left idle, and a client that goes quiet. A broken timeout would hang its test, hence the time limit.
@Suite(.timeLimit(.minutes(1))) struct TimeoutTests {
    static func silentEntry(_ host: String, _ listener: SilentListener) -> AllowList.Entry {
        AllowList.Entry(
            host: host,
            port: listener.port,
            tls: AllowList.TLS(caFile: TestPKI.shared.ca.certificatePath),
            addresses: ["127.0.0.1"],
            allowPrivateAddresses: true,
            timeouts: .init(connectMillis: 300)
        )
    }

    @Test func connectAndHandshakeTimeoutsAre504() async throws {
        let noSynAck = try SilentListener(completesConnections: false)
        let noTLS = try SilentListener(completesConnections: true)
        defer {
            noSynAck.close()
            noTLS.close()
        }
        let list = AllowList(hosts: [
            Self.silentEntry("syn.upstream.test", noSynAck), Self.silentEntry("tls.upstream.test", noTLS),
        ])
        try await ProxyHarness.with(list) { proxy in
            let client = try await proxy.client()
            for host in ["syn.upstream.test", "tls.upstream.test"] {
                let response = try await client.get("/", host: Fixtures.host(host))
                #expect(response.status == .gatewayTimeout, "\(host)")
                #expect(response.reason == "upstream-connect-timeout", "\(host)")
            }
            await client.close()
            #expect(proxy.metricsText.contains(#"egress_denials_total{reason="upstream-connect-timeout"} 2"#))
        }
    }

    @Test func upstreamIdleTimeoutEndsAStalledResponseAndEvictsPooledConnections() async throws {
        try await TestUpstream.with { upstream in
            let entry = Fixtures.entry("good.upstream.test", upstream: upstream, timeouts: .init(idleMillis: 2500))
            try await ProxyHarness.with(AllowList(hosts: [entry])) { proxy in
                // Headers and 5 of 10 body bytes, then nothing: the client gets what was sent, then a close (a
                // truncated response is detectable; a silently completed one would not be).
                let raw = try await proxy.raw()
                try await raw.send("GET /stall HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n\r\n")
                let stalled = await raw.readResponse()
                #expect(stalled?.hasPrefix("HTTP/1.1 200 OK") == true)
                #expect(stalled?.hasSuffix("\r\n\r\n12345") == true)
                await raw.close()
                let line = proxy.accessLog.all.first { $0.contains(#""reason":"upstream-idle-timeout""#) }
                #expect(line != nil)

                // A pooled connection left idle is closed and forgotten.
                let client = try await proxy.client()
                #expect(try await client.get("/hello", host: Fixtures.host("good.upstream.test")).status == .ok)
                #expect(try await proxy.proxy.idleUpstreamConnections() == 1)
                var polls = 0
                while try await proxy.proxy.idleUpstreamConnections() > 0, polls < 500 {
                    try await Task.sleep(for: .milliseconds(10))
                    polls += 1
                }
                #expect(try await proxy.proxy.idleUpstreamConnections() == 0)
                // The same keep-alive client remembers a routing whose pool slot is now forgotten: it is routed to
                // the key's new slot, and the new connection is pooled there like the first.
                #expect(try await client.get("/hello", host: Fixtures.host("good.upstream.test")).status == .ok)
                #expect(try await proxy.proxy.idleUpstreamConnections() == 1)
                #expect(upstream.connections == 3)
                await client.close()
            }
        }
    }

    /// The client's idle timeout is for a client that sends nothing: a request waiting on a slow upstream, within
    /// that upstream's response-headers timeout, still gets its answer.
    @Test func aClientWaitingOnASlowUpstreamIsNotIdle() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [
                    Fixtures.entry(
                        "good.upstream.test",
                        upstream: upstream,
                        timeouts: AllowList.Timeouts(responseHeadersMillis: 10_000)
                    )
                ]),
                // Long enough for a loaded machine to send the request in time; the answer takes over twice as long.
                configure: { $0.clientIdleTimeout = .seconds(1) }
            ) { proxy in
                let raw = try await proxy.raw(
                    sending: "GET /slow/2500 HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n\r\n"
                )
                let response = await raw.readResponse() ?? "<closed without a response>"
                #expect(response.hasPrefix("HTTP/1.1 200 ") && response.hasSuffix("slow\n"), "\(response)")
                // Idle again, the client is disconnected after its idle timeout.
                #expect(await raw.readResponse() == nil)
                await raw.close()
            }
        }
    }

    @Test func aQuietClientIsDisconnected() async throws {
        try await ProxyHarness.with(
            AllowList(hosts: []),
            configure: {
                $0.clientIdleTimeout = .seconds(2)
                $0.requestHeadTimeout = .seconds(3600)
            }
        ) { proxy in
            let raw = try await proxy.raw(
                sending: "GET / HTTP/1.1\r\nHost: \(Fixtures.host("nope.example.com"))\r\n\r\n"
            )
            #expect(await raw.readResponse()?.hasPrefix("HTTP/1.1 403") == true)
            // Nothing else is sent: only the idle timeout can close the connection (the head timeout is an hour).
            #expect(await raw.readResponse() == nil)
            await raw.close()
        }
    }
}

@Suite struct ClientConnectionTests {
    /// A client may shut down its sending side once its requests are sent (RFC 9112, 9.6): every request it sent
    /// is still answered, in order (a relayed one, a refused one, a large one), and then the connection closes.
    @Test func aClientThatStopsSendingStillGetsEveryAnswer() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let host = Fixtures.host("good.upstream.test")
            let raw = try await proxy.raw(
                sending: "GET /hello HTTP/1.1\r\nHost: \(host)\r\n\r\n"
                    + "GET / HTTP/1.1\r\nHost: \(Fixtures.host("nope.example.com"))\r\n\r\n"
                    + "GET /download-cl/300000 HTTP/1.1\r\nHost: \(host)\r\n\r\n"
            )
            try await raw.shutdownOutput()
            let hello = await raw.readResponse() ?? ""
            #expect(hello.hasPrefix("HTTP/1.1 200") && hello.hasSuffix("hello from upstream\n"), "\(hello)")
            let refused = await raw.readResponse() ?? ""
            #expect(refused.hasPrefix("HTTP/1.1 403"), "\(refused)")
            let download = await raw.readResponse() ?? ""
            #expect(download.hasPrefix("HTTP/1.1 200"), "\(download.prefix(200))")
            let body = download.range(of: "\r\n\r\n").map { download[$0.upperBound...] } ?? ""
            #expect(body.utf8.count == 300_000)
            await raw.waitForClose()
            #expect(!raw.wasReset)
            #expect(upstream.requests == 2)
        }
    }

    /// A request the client stopped sending in the middle of can never be answered: the connection closes. Its
    /// head and idle timeouts are an hour, so only that can close it (the time limit guards against a hang).
    @Test(.timeLimit(.minutes(1)))
    func aClientThatStopsSendingMidRequestIsClosed() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                configure: {
                    $0.requestHeadTimeout = .seconds(3600)
                    $0.clientIdleTimeout = .seconds(3600)
                }
            ) { proxy in
                let raw = try await proxy.raw(
                    sending: "POST /upload HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n"
                        + "Content-Length: 10\r\n\r\nabc"
                )
                try await raw.shutdownOutput()
                await raw.waitForClose()
                #expect(raw.isClosed)
            }
        }
    }

    /// An HTTP/1.0 client keeps its connection only when an answer says `keep-alive`; refusals say it too.
    @Test func anHTTP10KeepAliveClientIsToldItsConnectionStays() async throws {
        try await ProxyHarness.with(AllowList(hosts: [])) { proxy in
            let request =
                "GET / HTTP/1.0\r\nHost: \(Fixtures.host("nope.example.com"))\r\nConnection: keep-alive\r\n\r\n"
            let raw = try await proxy.raw(sending: request)
            for _ in 0..<2 {
                let refused = await raw.readResponse() ?? ""
                #expect(refused.hasPrefix("HTTP/1.0 403"), "\(refused)")
                #expect(refused.lowercased().contains("\r\nconnection: keep-alive\r\n"), "\(refused)")
                try await raw.send(request)
            }
            await raw.close()
        }
    }
}
