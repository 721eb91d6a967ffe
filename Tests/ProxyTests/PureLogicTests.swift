import Foundation
import Manifests
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Prometheus
import Testing

@testable import Proxy

@Suite struct RouterTests {
    let router = Router(
        AllowList(hosts: [
            .init(host: "api.github.com"),
            .init(host: "*.example.com", port: 8443),
            .init(host: "*.deep.example.com", port: 9443),
            .init(host: "example.com", port: 444),
        ])
    )

    @Test func exactMatch() {
        #expect(self.router.route(for: "api.github.com")?.entry.host == "api.github.com")
        #expect(self.router.route(for: "api.github.com")?.upstreamHost == "api.github.com")
        #expect(self.router.route(for: "github.com") == nil)
        #expect(self.router.route(for: "x.api.github.com") == nil)
    }

    @Test func wildcardMatchesOneOrMoreLabelsNeverTheBase() {
        #expect(self.router.route(for: "a.example.com")?.entry.port == 8443)
        #expect(self.router.route(for: "a.b.example.com")?.entry.port == 8443)
        #expect(self.router.route(for: "a.b.example.com")?.upstreamHost == "a.b.example.com")
        // The base itself only matches its own exact entry.
        #expect(self.router.route(for: "example.com")?.entry.port == 444)
        #expect(self.router.route(for: "notexample.com") == nil)
    }

    @Test func mostSpecificWildcardWins() {
        #expect(self.router.route(for: "x.deep.example.com")?.entry.port == 9443)
        #expect(self.router.route(for: "deep.example.com")?.entry.port == 8443)
    }

    @Test func labelIsTheEntryHost() {
        #expect(self.router.route(for: "q.example.com")?.label == "*.example.com")
    }

    @Test func laterDuplicateWinsAndMissesStayMisses() {
        let router = Router(
            AllowList(hosts: [
                .init(host: "a.example.com", port: 1), .init(host: "*.example.com", port: 2),
                .init(host: "a.example.com", port: 3),
            ])
        )
        #expect(router.route(for: "a.example.com")?.entry.port == 3)
        #expect(router.route(for: "b.example.com")?.entry.port == 2)
        #expect(router.route(for: "example.com") == nil)
        #expect(router.route(for: "a.example.org") == nil)
        #expect(Router(AllowList(hosts: [])).route(for: "a.example.com") == nil)
    }

    /// Pool keys hold an entry behind a reference made once per loop and router; after a reload, a key for an entry
    /// that did not change still equals the old one (its pooled connections stay usable), and a changed one does not.
    @Test func poolKeysSurviveAReloadOnlyForUnchangedEntries() throws {
        var targets = RouteTargets()
        let first = try #require(self.router.route(for: "a.example.com"))
        let key = UpstreamKey(host: "a.example.com", target: targets.target(for: first))
        #expect(targets.target(for: first) === key.target)
        #expect(targets.target(for: try #require(self.router.route(for: "b.example.com"))) === key.target)

        let reloaded = Router(self.router.list)
        let again = try #require(reloaded.route(for: "a.example.com"))
        let keyAfterReload = UpstreamKey(host: "a.example.com", target: targets.target(for: again))
        #expect(keyAfterReload.target !== key.target)
        #expect(keyAfterReload == key)
        #expect(keyAfterReload.hashValue == key.hashValue)

        var changedList = self.router.list
        changedList.hosts[1].timeouts.idleMillis = 1234
        let changed = try #require(Router(changedList).route(for: "a.example.com"))
        #expect(UpstreamKey(host: "a.example.com", target: targets.target(for: changed)) != key)
    }

    @Test func buildsAHundredThousandEntries() {
        let entries = (0..<100_000).map { AllowList.Entry(host: "host\($0).example\($0 % 97).com") }
        let router = Router(AllowList(hosts: entries))
        #expect(router.count == 100_000)
        #expect(router.route(for: "host4242.example\(4242 % 97).com") != nil)
    }
}

@Suite struct RequestTargetTests {
    func head(_ uri: String = "/", hosts: [String], minor: Int = 1) throws -> ClientRequestHead {
        try ClientRequestHead.parsing("GET", uri, minor: minor, fields: hosts.map { ("Host", $0) })
    }

    func name(_ hosts: [String], uri: String = "/", minor: Int = 1) throws -> String? {
        try? RequestTarget.parse(head: self.head(uri, hosts: hosts, minor: minor), suffix: "egress.local").get().name
    }

    func reason(_ hosts: [String], uri: String = "/", minor: Int = 1) throws -> String? {
        if case .failure(let refusal) = RequestTarget.parse(
            head: try self.head(uri, hosts: hosts, minor: minor),
            suffix: "egress.local"
        ) {
            return refusal.reason
        }
        return nil
    }

    @Test func stripsSuffixPortCaseAndTrailingDot() throws {
        #expect(try self.name(["api.github.com.egress.local"]) == "api.github.com")
        #expect(try self.name(["API.GitHub.com.Egress.Local:8080"]) == "api.github.com")
        #expect(try self.name(["api.github.com.egress.local."]) == "api.github.com")
        #expect(try self.name(["api.github.com.egress.local.:80"]) == "api.github.com")
    }

    @Test func refusals() throws {
        #expect(try self.reason([]) == "missing-host")
        #expect(try self.reason(["api.github.com"]) == "not-under-suffix")
        #expect(try self.reason(["egress.local"]) == "not-under-suffix")
        #expect(try self.reason([".egress.local"]) == "not-under-suffix")
        #expect(try self.reason(["evilegress.local"]) == "not-under-suffix")
        #expect(try self.reason(["127.0.0.1"]) == "ip-literal")
        #expect(try self.reason(["127.0.0.1.egress.local"]) == "ip-literal")
        #expect(try self.reason(["2130706433.egress.local"]) == "ip-literal")
        #expect(try self.reason(["[::1]:80"]) == "ip-literal")
        #expect(try self.reason(["a..b.egress.local"]) == "bad-host")
        #expect(try self.reason(["a b.egress.local"]) == "bad-host")
        #expect(try self.reason(["user@a.b.egress.local"]) == "bad-host")
        #expect(try self.reason(["a.b.egress.local:99999"]) == "bad-host")
        #expect(try self.reason(["a.b.egress.local:"]) == "bad-host")
        #expect(try self.reason(["-a.b.egress.local"]) == "bad-host")
        #expect(try self.reason(["a.b.egress.local", "c.d.egress.local"]) == "bad-host")
    }

    @Test func absoluteForm() throws {
        #expect(try self.name(["a.b.egress.local"], uri: "http://a.b.egress.local/x") == "a.b")
        // HTTP/1.0 has no Host header, so the URI alone routes; HTTP/1.1 must send one (RFC 9112 §3.2).
        #expect(try self.name([], uri: "http://a.b.egress.local/x", minor: 0) == "a.b")
        #expect(try self.reason([], uri: "http://a.b.egress.local/x") == "missing-host")
        #expect(try self.reason(["a.b.egress.local"], uri: "http://evil.com/") == "not-under-suffix")
        #expect(try self.reason(["a.b.egress.local"], uri: "http://c.d.egress.local/") == "host-mismatch")
        #expect(try self.reason(["a.b.egress.local"], uri: "http://x@a.b.egress.local/") == "bad-host")
        #expect(try self.reason(["a.b.egress.local"], uri: "ftp://a.b.egress.local/") == "bad-request-target")
        #expect(try self.reason(["a.b.egress.local"], uri: "*") == "bad-request-target")
        let parsed = try RequestTarget.parse(
            head: self.head("HTTP://A.B.egress.local:80?q=1#frag", hosts: [], minor: 0),
            suffix: "egress.local"
        ).get()
        #expect(parsed == RequestTarget.Parsed(name: "a.b", upstreamTarget: "/?q=1"))
        // An origin-form target is sent as it came.
        #expect(
            try RequestTarget.parse(head: self.head("/x?y", hosts: ["a.egress.local"]), suffix: "egress.local").get()
                == RequestTarget.Parsed(name: "a", upstreamTarget: nil)
        )
    }

    @Test func configurableSuffix() throws {
        let parsed = try? RequestTarget.parse(head: try self.head(hosts: ["x.y.out.corp"]), suffix: "out.corp").get()
        #expect(parsed?.name == "x.y")
        #expect(RequestTarget.normalizeSuffix(".Out.Corp.") == "out.corp")
    }
}

@Suite struct RequestValidationTests {
    func validate(
        _ headers: [(String, String)],
        method: HTTPMethod = .POST,
        version: HTTPVersion = .http1_1
    )
        -> Result<BodyFraming, Refusal>
    {
        do {
            let target = method == .CONNECT ? "a.test:443" : "/"
            let head = try ClientRequestHead.parsing(method.rawValue, target, minor: version.minor, fields: headers)
            return RequestValidation.validate(head)
        } catch {
            Issue.record(error)
            return .failure(Refusal(.badRequest, "unparsed", "\(error)"))
        }
    }

    func reason(_ result: Result<BodyFraming, Refusal>) -> String? {
        if case .failure(let r) = result { return r.reason }
        return nil
    }

    @Test func framing() throws {
        #expect(try self.validate([]).get() == .none)
        #expect(try self.validate([("Content-Length", "10")]).get() == .contentLength(10))
        #expect(try self.validate([("Content-Length", "0")]).get() == .none)
        #expect(try self.validate([("Content-Length", "5"), ("Content-Length", "5")]).get() == .contentLength(5))
        #expect(try self.validate([("Content-Length", "5, 5")]).get() == .contentLength(5))
        #expect(try self.validate([("Transfer-Encoding", "Chunked")]).get() == .chunked)
    }

    @Test func smugglingDefences() {
        #expect(
            self.reason(self.validate([("Content-Length", "5"), ("Transfer-Encoding", "chunked")]))
                == "content-length-and-transfer-encoding"
        )
        #expect(self.reason(self.validate([("Content-Length", "5"), ("Content-Length", "6")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "5, 6")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "-1")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "+5")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "0x10")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Transfer-Encoding", "gzip, chunked")])) == "unsupported-transfer-encoding")
        #expect(
            self.reason(self.validate([("Transfer-Encoding", "chunked")], version: .http1_0))
                == "unsupported-transfer-encoding"
        )
        #expect(
            self.reason(self.validate([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]))
                == "unsupported-transfer-encoding"
        )
        #expect(self.reason(self.validate([("Transfer-Encoding", "")])) == "unsupported-transfer-encoding")
        #expect(self.reason(self.validate([("Content-Length", "5,")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "")])) == "bad-content-length")
        #expect(self.reason(self.validate([("Content-Length", "1234567890123456789")])) == "bad-content-length")
        #expect(self.reason(self.validate([], version: HTTPVersion(major: 1, minor: 2))) == "unsupported-version")
        #expect(self.reason(self.validate([], method: .CONNECT)) == "connect-not-allowed")
        if case .failure(let r) = self.validate([], method: .CONNECT) { #expect(r.status == .methodNotAllowed) }
    }

    @Test func expectContinue() throws {
        #expect(
            RequestValidation.expectsContinue(
                try ClientRequestHead.parsing("PUT", fields: [("Expect", "100-Continue")])
            )
        )
        #expect(!RequestValidation.expectsContinue(try ClientRequestHead.parsing("PUT", fields: [("Expect", "100")])))
        // HTTP/1.0 has no 100 Continue.
        #expect(
            !RequestValidation.expectsContinue(
                try ClientRequestHead.parsing("PUT", minor: 0, fields: [("Expect", "100-continue")])
            )
        )
    }
}

@Suite struct SpareBufferTests {
    let allocator = ByteBufferAllocator()

    private func address(_ buffer: ByteBuffer) -> UInt {
        buffer.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
    }

    /// Once nothing else holds the buffer written last, the next message is written into its memory.
    @Test func theLastBufferIsWrittenIntoAgain() {
        var spare = SpareBuffer()
        let first: UInt
        do {
            var sent = self.allocator.buffer(capacity: 512)
            sent.writeString("sent")
            first = self.address(sent)
            spare.keep(sent)
        }
        var next = spare.take(self.allocator)
        #expect(next.readableBytes == 0)
        #expect(self.address(next) == first)
        next.writeString("next")
        #expect(String(buffer: next) == "next")
    }

    /// A buffer still held (NIO has not written it yet) is never written into: the next message gets other memory
    /// and the held bytes stay as they were. Large buffers are not kept.
    @Test func aBufferStillHeldOrLargeIsNotReused() {
        var spare = SpareBuffer()
        var held = self.allocator.buffer(capacity: 512)
        held.writeString("still queued")
        spare.keep(held)
        var next = spare.take(self.allocator)
        next.writeString("next")
        #expect(String(buffer: held) == "still queued")
        #expect(self.address(next) != self.address(held))

        do {
            var big = self.allocator.buffer(capacity: 64 * 1024)
            big.writeString("big")
            spare.keep(big)
        }
        #expect(spare.take(self.allocator).capacity < 64 * 1024)
    }
}

extension SpareBufferTests {
    /// The allocator is reached for only when there is no buffer to reuse: reaching a channel's retains the channel.
    @Test func theAllocatorIsAskedForOnlyWithoutASpare() {
        var spare = SpareBuffer()
        var asked = 0
        func allocator() -> ByteBufferAllocator {
            asked += 1
            return self.allocator
        }
        _ = spare.take(allocator())
        #expect(asked == 1)
        spare.keep(self.allocator.buffer(capacity: 16))
        _ = spare.take(allocator())
        #expect(asked == 1)
    }
}

@Suite struct LazyTimeoutClockTests {
    /// Timeouts are armed by the coarse clock: the monotonic clock NIO's deadlines count in, as of the kernel's
    /// last tick. Read just before the precise one, it is never ahead of it and only a tick behind (a second allows
    /// for a thread preempted between the two reads; another clock would be off by far more).
    @Test func coarseNowIsNIOsClockAtMostATickBehind() {
        for _ in 0..<1000 {
            let coarse = LazyTimeout.coarseNow()
            let precise = NIODeadline.now()
            #expect(coarse <= precise)
            #expect(precise - coarse < .seconds(1))
        }
    }
}

@Suite struct HeaderSanitizerTests {
    /// The head an upstream gets for `head`, as text.
    private func encoded(_ head: ClientRequestHead, host: String = "api.github.com", port: Int = 443) -> String {
        var encoder = UpstreamRequestEncoder(host: host, port: port)
        var buffer = ByteBuffer()
        encoder.writeHead(head, into: &buffer)
        return String(buffer: buffer)
    }

    @Test func removesHopByHopAndRewritesHost() throws {
        let head = try ClientRequestHead.parsing(
            "GET",
            "http://api.github.com.egress.local/ignored",
            fields: [
                ("Host", "api.github.com.egress.local"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"), ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"), ("Trailer", "x"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"),
                ("Expect", "100-continue"), ("Accept", "*/*"), ("Authorization", "Bearer t"),
            ]
        )
        head.upstreamTarget = "/p"
        var encoder = UpstreamRequestEncoder(host: "api.github.com", port: 443)
        var buffer = ByteBuffer()
        encoder.writeHead(head, into: &buffer)
        #expect(encoder.chunked)
        #expect(
            String(buffer: buffer)
                == "GET /p HTTP/1.1\r\nhost: api.github.com\r\nAccept: */*\r\nAuthorization: Bearer t\r\n"
                + "transfer-encoding: chunked\r\n\r\n"
        )
        #expect(
            self.encoded(
                try ClientRequestHead.parsing("POST", minor: 0, fields: [("Host", "x")]),
                host: "h.example.com",
                port: 8443
            )
                == "POST / HTTP/1.1\r\nhost: h.example.com:8443\r\ncontent-length: 0\r\n\r\n"
        )
    }

    /// Whether the parser noted every line to drop (up to four, and `Connection` naming no other header) or the
    /// encoder checks each line, the upstream gets the same lines: the client's, in order, minus the hop-by-hop
    /// ones, the ones `Connection` names, and `Host`.
    @Test func droppedLinesAreTheSameWhicheverWayTheyAreFound() throws {
        let kept: [(String, String)] = [("Accept", "*/*"), ("X-Keep", "a, b"), ("Content-Type", "text/plain")]
        let dropped: [(String, String)] = [
            ("Host", "a.egress.local"), ("Connection", "close"), ("keep-alive", "t=1"), ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"), ("Upgrade", "h2c"), ("X-Named", "1"),
        ]
        // Every way of dropping the first n lines of `dropped`, woven between the kept ones.
        for count in 0...dropped.count {
            for offset in 0..<3 {
                var fields = kept
                var connection = "close"
                for (index, field) in dropped.prefix(count).enumerated() {
                    if field.0 == "X-Named" { connection += ", x-named" }
                    fields.insert(field, at: min(fields.count, (index + offset) % (fields.count + 1)))
                }
                fields = fields.map { $0.0 == "Connection" ? ($0.0, connection) : $0 }
                let head = try ClientRequestHead.parsing("GET", fields: fields)
                let expected =
                    "GET / HTTP/1.1\r\nhost: api.github.com\r\n"
                    + fields.filter { field in kept.contains { $0.0 == field.0 } }.map { "\($0.0): \($0.1)\r\n" }
                    .joined() + "\r\n"
                #expect(self.encoded(head) == expected, "\(fields)")
            }
        }
    }

    /// The body is framed as the client framed it, whatever the method: a chunked `DELETE` stays chunked.
    @Test func upstreamBodiesKeepTheClientsFraming() throws {
        var encoder = UpstreamRequestEncoder(host: "api.github.com", port: 443)
        var buffer = ByteBuffer()
        let head = try ClientRequestHead.parsing(
            "DELETE",
            "/x",
            fields: [("Host", "api.github.com.egress.local"), ("Transfer-Encoding", "chunked")]
        )
        encoder.writeHead(head, into: &buffer)
        encoder.writeBodyPrefix(length: 5, into: &buffer)
        buffer.writeString("hello")
        encoder.writeBodySuffix(length: 5, into: &buffer)
        encoder.writeEnd(trailers: nil, into: &buffer)
        #expect(
            String(buffer: buffer)
                == "DELETE /x HTTP/1.1\r\nhost: api.github.com\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        var sized = UpstreamRequestEncoder(host: "api.github.com", port: 443)
        buffer.clear()
        sized.writeHead(try ClientRequestHead.parsing(fields: [("Content-Length", "5")]), into: &buffer)
        #expect(!sized.chunked)
        #expect(String(buffer: buffer) == "GET / HTTP/1.1\r\nhost: api.github.com\r\ncontent-length: 5\r\n\r\n")
        // Duplicates and lists of one length reach the upstream as that one length, wherever they were.
        for fields in [
            [("Content-Length", "5"), ("X-A", "a"), ("content-length", "5")],
            [("Content-Length", "5, 5"), ("X-A", "a")],
            [("X-A", "a"), ("CONTENT-LENGTH", "5,5")],
        ] {
            var encoder = UpstreamRequestEncoder(host: "api.github.com", port: 443)
            buffer.clear()
            encoder.writeHead(try ClientRequestHead.parsing("POST", fields: fields), into: &buffer)
            #expect(
                String(buffer: buffer)
                    == "POST / HTTP/1.1\r\nhost: api.github.com\r\nX-A: a\r\ncontent-length: 5\r\n\r\n",
                "\(fields)"
            )
        }
    }

    @Test(arguments: [
        ("TE", true), ("te", true), ("Expect", true), ("TRAILER", true), ("Upgrade", true), ("Connection", true),
        ("keep-ALIVE", true), ("Transfer-Encoding", true), ("Proxy-", true), ("proxy-authorization", true),
        ("Proxy-A", true), ("proxy", false), ("ta", false), ("Trailers", false), ("Content-Type", false),
        ("connections", false), ("x-te", false), ("", false), ("Accept", false), ("Transfer-Encodings", false),
        // Only letters fold: `\r` with the case bit set is `-`.
        ("keep\ralive", false), ("Proxy\rX", false), ("Transfer\rEncoding", false), ("tE", true),
    ])
    func hopByHopNamesIgnoreCase(name: String, hopByHop: Bool) {
        #expect(name.withContiguousUTF8 { HeaderSanitizer.isHopByHop(UnsafeRawBufferPointer($0)) } == hopByHop)
    }

    /// Names of every length the proxy compares (2 to 17 bytes: byte by byte below 8, eight at a time from 8), with
    /// every byte value at every position: equal exactly when that byte is the literal's, in either ASCII case.
    @Test func namesCompareIgnoringOnlyASCIICase() {
        let literals: [StaticString] = [
            "te", "host", "expect", "trailer", "100-cont", "keep-alive", "100-continue", "connection", "content-length",
            "a{b|c}d~e",
            "transfer-encoding",
        ]
        for literal in literals {
            let expected = literal.withUTF8Buffer { Array($0) }
            for position in expected.indices {
                for value in 0...255 {
                    var name = expected
                    name[position] = UInt8(value)
                    // Capitals elsewhere never matter.
                    for index in name.indices where index != position && index % 2 == 0 {
                        name[index] = name[index] >= 0x61 && name[index] <= 0x7A ? name[index] - 0x20 : name[index]
                    }
                    let folded = value >= 0x41 && value <= 0x5A ? UInt8(value + 0x20) : UInt8(value)
                    let equal = name.withUnsafeBytes { $0.equalsIgnoringASCIICase(literal) }
                    #expect(equal == (folded == expected[position]), "\(literal): \(value) at \(position)")
                }
            }
            // Another length never matches.
            #expect(!(expected + [0x61]).withUnsafeBytes { $0.equalsIgnoringASCIICase(literal) })
            #expect(!expected.dropLast().withUnsafeBytes { $0.equalsIgnoringASCIICase(literal) })
        }
    }

    @Test func connectionTokensWithSpacesTabsAndEmptyItems() throws {
        let head = try ClientRequestHead.parsing(
            fields: [
                ("Connection", " , x-a ,\tX-B\t,, keep-alive"), ("X-A", "1"), ("x-b", "2"), ("X-Keep", "3"),
                ("Keep-Alive", "t=1"),
            ]
        )
        #expect(self.encoded(head) == "GET / HTTP/1.1\r\nhost: api.github.com\r\nX-Keep: 3\r\n\r\n")
        #expect(head.keepAlive)
    }

    /// As NIO decides: `close` wins; HTTP/1.0 keeps the connection only when asked to.
    @Test func keepAlive() throws {
        #expect(try ClientRequestHead.parsing(fields: []).keepAlive)
        #expect(try !ClientRequestHead.parsing(fields: [("Connection", "close")]).keepAlive)
        #expect(try !ClientRequestHead.parsing(fields: [("Connection", "keep-alive, Close")]).keepAlive)
        #expect(try !ClientRequestHead.parsing(minor: 0, fields: []).keepAlive)
        #expect(try ClientRequestHead.parsing(minor: 0, fields: [("Connection", "Keep-Alive")]).keepAlive)
    }

    /// Parses what an upstream sent and encodes it for a client, as the proxy does: the client's bytes, as text.
    private func relay(
        _ upstream: String,
        method: HTTPMethod = .GET,
        version: HTTPVersion = .http1_1,
        close: Bool = false
    ) throws -> (text: String, encoder: ClientResponseEncoder) {
        var parser = UpstreamResponseParser()
        var input = ByteBuffer(string: upstream)
        var parts: [UpstreamResponsePart] = []
        while let part = try parser.next(&input, nextMethod: { method }) { parts.append(part) }
        if let last = try parser.inputClosed(unparsed: input.readableBytes) { parts.append(last) }
        var encoder = ClientResponseEncoder()
        var buffer = ByteBuffer()
        for part in parts {
            switch part {
            case .head(let head):
                encoder.writeHead(head, version: version, close: close, answeringHEAD: method == .HEAD, into: &buffer)
            case .body(let body) where !encoder.suppressBody:
                encoder.writeBodyPrefix(length: body.readableBytes, into: &buffer)
                buffer.writeImmutableBuffer(body)
                encoder.writeBodySuffix(length: body.readableBytes, into: &buffer)
            case .body:
                break
            case .end(let trailers):
                encoder.writeEnd(trailers: trailers, into: &buffer)
            }
        }
        return (String(buffer: buffer), encoder)
    }

    /// Trailers that could pass for the message's own framing or routing, or that are hop-by-hop, are dropped;
    /// the others reach the client as they came.
    @Test func responseTrailersLoseForbiddenFields() throws {
        let upstream =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            + "X-Sum: 1\r\nContent-Length: 99\r\nHost: evil.example\r\nConnection: close\r\nX-After: 2\r\n\r\n"
        #expect(
            try relay(upstream).text
                == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-After: 2\r\n\r\n"
        )
    }

    /// Fields the head's `Connection` names are hop-by-hop in the trailers too (RFC 9110, 7.6.1).
    @Test func responseTrailersLoseTheFieldsConnectionNames() throws {
        let upstream =
            "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            + "X-Secret: trailer\r\nX-After: 2\r\n\r\n"
        #expect(
            try relay(upstream).text
                == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-After: 2\r\n\r\n"
        )
    }

    /// `Connection` cannot drop a response's own `Content-Length`: the client would get a body with no framing.
    @Test func connectionCannotDropTheResponsesContentLength() throws {
        let upstream = "HTTP/1.1 200 OK\r\nConnection: content-length, x-a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
        #expect(try relay(upstream).text == "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc")
    }

    /// Repeated equal lengths reach the client as one canonical line (RFC 9112, 6.3).
    @Test func repeatedContentLengthsReachTheClientAsOne() throws {
        let upstream = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\ncontent-length: 3\r\n\r\nabc"
        #expect(try relay(upstream).text == "HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 3\r\n\r\nabc")
    }

    @Test func responseHeadDropsHopByHopHeaders() throws {
        let upstream =
            "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: x\r\nContent-Length: 3\r\n"
            + "ETag: \"e\"\r\n\r\nabc"
        #expect(try relay(upstream).text == "HTTP/1.1 200 OK\r\nETag: \"e\"\r\ncontent-length: 3\r\n\r\nabc")
        #expect(
            try relay(upstream, close: true).text
                == "HTTP/1.1 200 OK\r\nETag: \"e\"\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
        )
    }

    /// The parser notes up to four lines to drop and the encoder copies around them; with more, or with names
    /// listed by `Connection`, the encoder checks every line. Either way the client gets the same bytes.
    @Test(arguments: 0...6)
    func droppedLinesGoWhereverAndHoweverManyTheyAre(dropped: Int) throws {
        let kept = ["Content-Length: 3", "ETag: \"e\"", "X-Z: z"]
        let hopByHop = [
            "Connection: keep-alive", "Keep-Alive: timeout=5", "Proxy-Authenticate: x", "Upgrade: y", "TE: t",
            "Trailer: u",
        ]
        var lines: [String] = []
        for (index, line) in hopByHop.prefix(dropped).enumerated() {
            if index < kept.count { lines.append(kept[index]) }
            lines.append(line)
        }
        lines += kept.dropFirst(min(dropped, kept.count))
        let upstream = "HTTP/1.1 200 OK\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\nabc"
        // Content-Length comes last, as the encoder writes it.
        let expected =
            "HTTP/1.1 200 OK\r\n" + kept.dropFirst().map { $0 + "\r\n" }.joined() + "content-length: 3\r\n\r\nabc"
        #expect(try relay(upstream).text == expected)
        let named = upstream.replacingOccurrences(of: "X-Z: z\r\n", with: "X-Z: z\r\nConnection: x-z\r\n")
        #expect(try relay(named).text == expected.replacingOccurrences(of: "X-Z: z\r\n", with: ""))
    }

    @Test func aResponseWithoutBodyLosesItsContentLength() throws {
        let upstream = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n"
        #expect(try relay(upstream).text == "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
    }

    @Test func responseWithoutLengthIsChunkedForHTTP11AndCloseDelimitedForHTTP10() throws {
        let upstream =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nff\r\n"
            + String(repeating: "x", count: 255) + "\r\n0\r\nX-T: 1\r\n\r\n"
        let chunked = try relay(upstream)
        #expect(chunked.encoder.chunked)
        #expect(
            chunked.text == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nff\r\n"
                + String(repeating: "x", count: 255) + "\r\n0\r\nX-T: 1\r\n\r\n"
        )
        let old = try relay(upstream, version: .http1_0)
        #expect(!old.encoder.chunked)
        #expect(old.text == "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\nabc" + String(repeating: "x", count: 255))
        // A body delimited by the upstream closing the connection.
        #expect(
            try relay("HTTP/1.1 200 OK\r\n\r\nabc").text
                == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
    }

    @Test func responsesWithoutBodies() throws {
        // HEAD: the framing headers a GET would get, and no body bytes.
        let head = try relay("HTTP/1.1 200 OK\r\n\r\n", method: .HEAD)
        #expect(head.encoder.suppressBody && !head.encoder.chunked)
        #expect(head.text == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        #expect(
            try relay("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: .HEAD).text
                == "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
        )
        // 204 and 304 never carry Content-Length or chunked framing; an interim 100 is skipped.
        #expect(
            try relay("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n").text == "HTTP/1.1 204 No Content\r\n\r\n"
        )
        #expect(
            try relay("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").text
                == "HTTP/1.1 304 Not Modified\r\n\r\n"
        )
    }

    @Test(arguments: [(1, "1"), (15, "f"), (16, "10"), (4096, "1000"), (65535, "ffff"), (1 << 20, "100000")])
    func chunkSizesAreHex(length: Int, hex: String) throws {
        let encoder = try relay("HTTP/1.1 200 OK\r\n\r\n").encoder
        var buffer = ByteBuffer()
        encoder.writeBodyPrefix(length: length, into: &buffer)
        #expect(String(buffer: buffer) == hex + "\r\n")
    }
}

@Suite struct HTTP1SyntaxTests {
    /// Field values are scanned eight bytes at a time: every byte value, at every position of a value long enough for
    /// several words (and at its ragged end), is accepted exactly when the byte-by-byte rule accepts it.
    @Test func fieldValuesAcceptExactlyTheValueBytes() throws {
        for position in 0..<21 {
            for byte in UInt8.min...UInt8.max {
                var value = [UInt8](repeating: UInt8(ascii: "v"), count: 21)
                value[position] = byte
                var block = ByteBuffer(string: "x-name: ")
                block.writeBytes(value)
                block.writeString("\r\n\r\n")
                var seen: [UInt8]? = nil
                let parsed = try? HTTP1Syntax.fields(of: block, from: 0, maximumCount: 10) { _, _, value in
                    seen = Array(value)
                }
                // A value is trimmed of the spaces and tabs around it.
                var expected = value[...]
                while let first = expected.first, first == 0x20 || first == 0x09 { expected = expected.dropFirst() }
                while let last = expected.last, last == 0x20 || last == 0x09 { expected = expected.dropLast() }
                if HTTP1Syntax.isValueByte(byte) {
                    #expect(parsed != nil && seen == Array(expected), "byte \(byte) at \(position)")
                } else {
                    #expect(parsed == nil, "byte \(byte) at \(position)")
                }
            }
        }
    }

    /// Field names are scanned eight bytes at a time while they are letters and hyphens: every byte value at every
    /// position of names of 1-19 bytes (ending in a colon) gives the name the byte-by-byte token rule gives.
    @Test func fieldNamesEndWhereTheTokenRuleEndsThem() {
        for length in 1..<20 {
            for position in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    var name = Array("aZ-zA-yB-xC-wD-vE-uF".utf8.prefix(length))
                    name[position] = byte
                    var line = name
                    line.append(contentsOf: ": v\r\n".utf8)
                    var expected = 0
                    while expected < line.count, HTTP1Syntax.isTokenByte(line[expected]) { expected += 1 }
                    let end = line.withUnsafeBytes { HTTP1Syntax.tokenEnd($0, from: 0) }
                    #expect(end == expected, "byte \(byte) at \(position) of \(length)")
                }
            }
        }
    }

    /// A tab (allowed) before a control byte (not) in the same or a later word: the scan goes on past the tab.
    @Test func aTabDoesNotHideAControlByteAfterIt() {
        for tab in 1..<20 {
            for other in (tab + 1)..<20 {
                for (byte, allowed) in [(UInt8(0x09), true), (0x01, false), (0x7F, false), (0x0A, false)] {
                    var value = [UInt8](repeating: UInt8(ascii: "v"), count: 21)
                    value[tab] = 0x09
                    value[other] = byte
                    var block = ByteBuffer(string: "x-name: ")
                    block.writeBytes(value)
                    block.writeString("\r\n\r\n")
                    let parsed = try? HTTP1Syntax.fields(of: block, from: 0, maximumCount: 10) { _, _, _ in }
                    #expect((parsed != nil) == allowed, "tab at \(tab), byte \(byte) at \(other)")
                }
            }
        }
    }
}

@Suite struct UpstreamResponseParserTests {
    /// Every part of `input`, parsed in one go or fed in pieces of `piece` bytes.
    private func parts(_ input: String, piece: Int = .max, methods: [HTTPMethod] = []) throws -> [String] {
        var parser = UpstreamResponseParser()
        var pending = methods[...]
        var out: [String] = []
        var unparsed = ByteBuffer()
        var rest = ByteBuffer(string: input)
        while rest.readableBytes > 0 {
            var chunk = rest.readSlice(length: min(piece, rest.readableBytes))!
            unparsed.writeBuffer(&chunk)
            while let part = try parser.next(&unparsed, nextMethod: { pending.popFirst() ?? .GET }) {
                switch part {
                case .head(let head):
                    out.append("head \(head.code) keepAlive=\(head.keepAlive) \(String(buffer: head.fields))")
                case .body(let body): out.append("body \(String(buffer: body))")
                case .end(let trailers): out.append("end \(trailers.map { String(buffer: $0) } ?? "")")
                }
            }
            unparsed.discardReadBytes()
        }
        if let last = try parser.inputClosed(unparsed: unparsed.readableBytes), case .end = last { out.append("end ") }
        return out
    }

    static let stream =
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        + "HTTP/1.1 100 Continue\r\n\r\n"
        + "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        + "2\r\nab\r\n1;x=y\r\nc\r\n0\r\nX-Sum: 3\r\n\r\n"
        + "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"

    /// The same parts however the bytes are split (body parts are merged: their boundaries follow the reads).
    @Test func splitAnywhereGivesTheSameParts() throws {
        let whole = try self.parts(Self.stream)
        #expect(
            whole == [
                "head 200 keepAlive=true Content-Length: 5\r\n", "body hello", "end ",
                "head 201 keepAlive=true Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n", "body ab", "body c",
                "end X-Sum: 3\r\n", "head 204 keepAlive=false Connection: close\r\n", "end ",
            ]
        )
        func merged(_ parts: [String]) -> [String] {
            parts.reduce(into: []) { result, part in
                if part.hasPrefix("body "), let last = result.last, last.hasPrefix("body ") {
                    result[result.count - 1] = last + part.dropFirst(5)
                } else {
                    result.append(part)
                }
            }
        }
        for piece in 1...12 {
            #expect(merged(try self.parts(Self.stream, piece: piece)) == merged(whole), "pieces of \(piece)")
        }
    }

    @Test func headResponsesHaveNoBodyAndCloseDelimitedBodiesEndAtClose() throws {
        #expect(
            try self.parts("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", methods: [.HEAD])
                == ["head 200 keepAlive=true Content-Length: 9\r\n", "end "]
        )
        #expect(try self.parts("HTTP/1.0 200 OK\r\n\r\nabc") == ["head 200 keepAlive=false ", "body abc", "end "])
    }

    /// HTTP/1.0 keeps a connection only when asked, and never after a message with Transfer-Encoding.
    @Test func http10KeepAliveIsNeverKeptWithTransferEncoding() throws {
        #expect(
            try self.parts("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na").first
                == "head 200 keepAlive=true Connection: keep-alive\r\nContent-Length: 1\r\n"
        )
        let chunked =
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
        #expect(try self.parts(chunked).first?.hasPrefix("head 200 keepAlive=false") == true)
    }

    @Test func itKnowsWhenItIsBetweenResponses() throws {
        var parser = UpstreamResponseParser()
        #expect(parser.isBetweenResponses)
        var input = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\na")
        _ = try parser.next(&input, nextMethod: { .GET })
        #expect(!parser.isBetweenResponses)
        input.writeString("bHTTP/1.1 2")
        while let part = try parser.next(&input, nextMethod: { nil }) {
            if case .end = part { break }
        }
        // The response ended; the bytes after it are still in the input, unparsed.
        #expect(parser.isBetweenResponses)
        #expect(String(buffer: input) == "HTTP/1.1 2")
    }

    @Test(arguments: [
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",  // bare LF
        "HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n",  // bare LF inside the fields
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",  // obsolete line folding
        "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",  // space before the colon
        "HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\n\r\n",  // NUL in a value
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",  // bare CR in a value
        "HTTP/1.1 200 OK\r\nX-A: a\u{7F}\r\n\r\n",  // DEL in a value
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\nX-U: 2\r\n\r\n",  // bare LF in trailers
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 20\r\n\r\n",  // status line cut short (nothing read past its end)
        "HTTP/1.\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  // cut short by the close
    ])
    func malformedResponsesAreErrors(input: String) {
        #expect(throws: HTTPMessageError.self) { try self.parts(input) }
    }

    @Test func anOversizedHeadIsAnError() {
        let head = "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "a", count: UpstreamResponseParser.maximumHeadBytes)
        #expect(throws: HTTPMessageError.self) { try self.parts(head) }
    }

    @Test func aResponseWithNoRequestOutstandingIsAnError() {
        var parser = UpstreamResponseParser()
        var input = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(throws: HTTPMessageError.self) { try parser.next(&input, nextMethod: { nil }) }
    }

    @Test func whetherABodyMayFollowAgreesWithNIOForEveryCode() {
        for code in 100...999 {
            #expect(
                UpstreamResponseHead.mayHaveBody(code: code)
                    == HTTPResponseStatus(statusCode: code).mayHaveResponseBody,
                "code \(code)"
            )
        }
    }
}

@Suite struct AddressClassificationTests {
    @Test(arguments: [
        ("8.8.8.8", AddressClass.public), ("1.1.1.1", .public), ("127.0.0.1", .loopback), ("127.255.0.9", .loopback),
        ("10.1.2.3", .private), ("172.16.0.1", .private), ("172.31.255.255", .private), ("172.32.0.1", .public),
        ("192.168.1.1", .private), ("169.254.169.254", .linkLocal), ("100.64.0.1", .sharedAddressSpace),
        ("100.127.255.255", .sharedAddressSpace), ("100.128.0.1", .public), ("224.0.0.1", .multicast),
        ("0.0.0.0", .unspecified), ("255.255.255.255", .reserved), ("::", .unspecified), ("::1", .loopback),
        ("fc00::1", .private), ("fd12:3456::1", .private), ("fe80::1", .linkLocal), ("ff02::1", .multicast),
        ("::ffff:127.0.0.1", .loopback), ("::ffff:10.0.0.1", .private), ("::ffff:8.8.8.8", .public),
        ("64:ff9b::a9fe:a9fe", .linkLocal), ("2606:4700::1111", .public), ("2002:7f00:1::", .loopback),
        ("2002:a9fe:a9fe::1", .linkLocal), ("2002:0808:0808::1", .public), ("64:ff9b:1::808:808", .private),
        ("100::1", .reserved), ("2001:db8::1", .reserved), ("2001:4860::8888", .public),
        ("::ffff:0:7f00:1", .loopback), ("::ffff:0:a00:1", .private), ("::ffff:0:808:808", .public),
        // Teredo: the client's IPv4 address inverted in the last four bytes (80ff:fffe is 127.0.0.1).
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", .loopback), ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", .public),
    ])
    func classify(address: String, expected: AddressClass) {
        #expect(AddressClass.classify(ipAddress: address) == expected)
    }
}

@Suite struct ClientStateMachineTests {
    let refusal = Refusal(.forbidden, "not-allowed", "no")

    @Test func happyPathKeepsAlive() {
        var m = ClientStateMachine()
        #expect(m.requestHead(refusal: nil, keepAlive: true, body: .none) == .acquireUpstream)
        #expect(m.requestEnd() == .buffer)
        #expect(m.upstreamReady() == .sendRequestHeadAndBuffered)
        #expect(m.responseHead() == .writeResponseHead)
        #expect(m.responseBody() == .writeResponseBody)
        #expect(m.responseEnd(upstreamKeepAlive: true) == .finish(reuseUpstream: true, closeClient: false))
        #expect(m.state == .idle)
    }

    @Test func refusalWithoutBodyKeepsConnection() {
        var m = ClientStateMachine()
        #expect(
            m.requestHead(refusal: self.refusal, keepAlive: true, body: .none) == .refuse(self.refusal, close: false)
        )
        #expect(m.requestEnd() == .none)
        #expect(m.state == .idle)
    }

    @Test func refusalWithALargeBodyCloses() {
        var m = ClientStateMachine()
        #expect(
            m.requestHead(refusal: self.refusal, keepAlive: true, body: .large) == .refuse(self.refusal, close: true)
        )
        #expect(m.requestBody() == .drop)
    }

    @Test func refusalWithASmallBodyDiscardsItAndKeepsTheConnection() {
        var m = ClientStateMachine()
        #expect(
            m.requestHead(refusal: self.refusal, keepAlive: true, body: .small) == .refuse(self.refusal, close: false)
        )
        #expect(m.requestBody() == .drop)
        #expect(m.requestEnd() == .none)
        #expect(m.state == .idle)
    }

    @Test func upstreamFailureBeforeResponseIsA502AfterItAnAbort() {
        var m = ClientStateMachine()
        _ = m.requestHead(refusal: nil, keepAlive: true, body: .none)
        _ = m.requestEnd()
        let bad = Refusal(.badGateway, "upstream-closed", "x")
        #expect(m.upstreamFailed(bad) == .refuse(bad, close: false))
        _ = m.requestHead(refusal: nil, keepAlive: true, body: .none)
        _ = m.requestEnd()
        _ = m.upstreamReady()
        _ = m.responseHead()
        #expect(m.upstreamFailed(bad) == .abort)
    }

    @Test func earlyResponseClosesBoth() {
        var m = ClientStateMachine()
        _ = m.requestHead(refusal: nil, keepAlive: true, body: .large)
        _ = m.upstreamReady()
        #expect(m.requestBody() == .forwardRequestPart)
        #expect(!m.closeAfterResponse)
        _ = m.responseHead()
        // Known when the head is written, so the head says `Connection: close`.
        #expect(m.closeAfterResponse)
        #expect(m.responseEnd(upstreamKeepAlive: true) == .finish(reuseUpstream: false, closeClient: true))
    }

    /// The rest of the body may still arrive while the response streams: the client connection closes all the
    /// same, as its response head said; the upstream one, with the whole exchange done, stays reusable.
    @Test func earlyResponseClosesTheClientEvenIfTheBodyEndsFirst() {
        var m = ClientStateMachine()
        _ = m.requestHead(refusal: nil, keepAlive: true, body: .large)
        _ = m.upstreamReady()
        _ = m.responseHead()
        #expect(m.requestEnd() == .forwardRequestPart)
        #expect(m.responseEnd(upstreamKeepAlive: true) == .finish(reuseUpstream: true, closeClient: true))
    }

    /// Graceful shutdown while a refused request's body is read to be discarded: the connection closes at its end.
    @Test func shutdownDuringARefusedBodyClosesAtItsEnd() {
        var m = ClientStateMachine()
        #expect(
            m.requestHead(refusal: self.refusal, keepAlive: true, body: .small) == .refuse(self.refusal, close: false)
        )
        #expect(m.closeWhenIdle(drain: true) == .none)
        #expect(m.requestEnd() == .close)
        #expect(m.state == .closed)
    }

    @Test func shutdownDrains() {
        var m = ClientStateMachine()
        _ = m.requestHead(refusal: nil, keepAlive: true, body: .none)
        #expect(m.closeWhenIdle(drain: true) == .none)
        _ = m.requestEnd()
        _ = m.upstreamReady()
        _ = m.responseHead()
        #expect(m.responseEnd(upstreamKeepAlive: true) == .finish(reuseUpstream: true, closeClient: true))
    }
}

@Suite struct UpstreamErrorTests {
    /// What NIOSSL reports for a client certificate the server wanted (TLS 1.3: an alert after the handshake).
    static let certificateRequired =
        "sslError([Error: 268436052 error:10000454:SSL routines:OPENSSL_internal:TLSV1_ALERT_CERTIFICATE_REQUIRED at "
        + "/src/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/tls_record.cc:592])"

    @Test func tlsFailuresNameBoringSSLsReasonsOnly() {
        #expect(UpstreamHandler.tlsReasons(Self.certificateRequired) == ["TLSV1_ALERT_CERTIFICATE_REQUIRED"])
        let required = UpstreamHandler.tlsFailure(Self.certificateRequired)
        #expect(required.reason == "upstream-tls-failed")
        #expect(required.detail == "the upstream requires a client certificate: TLSV1_ALERT_CERTIFICATE_REQUIRED")
        let verify = UpstreamHandler.tlsFailure(
            "handshakeFailed(sslError([Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:"
                + "CERTIFICATE_VERIFY_FAILED at /x/handshake.cc:393, Error: 1 error:1:a:b:CERTIFICATE_VERIFY_FAILED]))"
        )
        #expect(verify.reason == "upstream-certificate-invalid")
        #expect(verify.detail == "upstream certificate verification failed: CERTIFICATE_VERIFY_FAILED")
        // Text without BoringSSL's error strings is kept as it is.
        #expect(UpstreamHandler.tlsFailure("readEOF").detail == "TLS with the upstream failed: readEOF")
    }
}

@Suite struct AccessLogTests {
    @Test func linesAreJSONWithEveryField() throws {
        let lines = NIOLockedValueBox<[String]>([])
        let formatter = AccessLogFormatter(
            AccessLog(label: "egress-proxy.access") { bytes in
                lines.withLockedValue { $0.append(String(decoding: bytes, as: UTF8.self)) }
            }
        )
        var record = AccessRecord(
            client: "10.0.0.7",
            method: "POST",
            host: "api.github.com",
            path: "/a\"b\\c\u{1}\u{7F}/é?q=\t",
            status: 201,
            bytesIn: 12,
            bytesOut: 3456,
            durationNanoseconds: 1_234_567,
            decision: "allow",
            reason: nil,
            upstreamReused: true
        )
        formatter.write(record)
        record.durationNanoseconds = 500_000
        record.upstreamReused = nil
        record.reason = "not-allowed"
        record.host = nil
        formatter.write(record)
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 2 && written.allSatisfy { $0.hasSuffix("}\n") && $0.hasPrefix("{\"time\":\"") })
        let first = try #require(
            try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: Any]
        )
        #expect(first["logger"] as? String == "egress-proxy.access")
        #expect(first["message"] as? String == "request")
        #expect(first["path"] as? String == "/a\"b\\c\u{1}\u{7F}/é?q=\t")
        #expect(first["status"] as? Int == 201 && first["bytes_out"] as? Int == 3456)
        #expect(first["duration_ms"] as? Double == 1.234)
        #expect(first["upstream_reused"] as? Bool == true)
        #expect((first["time"] as? String)?.count == 24)
        let second = try #require(
            try JSONSerialization.jsonObject(with: Data(written[1].utf8)) as? [String: Any]
        )
        #expect(second["duration_ms"] as? Double == 0.5)
        #expect(second["host"] == nil && second["upstream_reused"] == nil)
        #expect(second["reason"] as? String == "not-allowed")
        // Keys in order, as the JSON log handler writes them.
        #expect(written[1].contains(#""bytes_in":12,"bytes_out":3456,"client":"10.0.0.7","decision":"allow""#))
    }

    /// Lines are written into memory sized before each line: a line longer than any before it (here a path whose
    /// every byte is escaped to six) gets more memory, and the lines after it are whole too.
    @Test func linesOfEveryLengthAreWhole() throws {
        let lines = NIOLockedValueBox<[String]>([])
        let formatter = AccessLogFormatter(
            AccessLog(label: "access") { bytes in
                lines.withLockedValue { $0.append(String(decoding: bytes, as: UTF8.self)) }
            }
        )
        let paths = ["/", String(repeating: "\u{1}", count: 3000), "/b", String(repeating: "é\"", count: 5000), "/c"]
        for path in paths {
            formatter.write(
                AccessRecord(
                    client: "10.0.0.7:5000",
                    method: "GET",
                    host: "api.github.com",
                    path: path,
                    status: 200,
                    bytesIn: Int.max,
                    bytesOut: Int.min + 1,
                    durationNanoseconds: .max,
                    decision: "allow",
                    reason: String(repeating: "\u{7F}", count: 100),
                    upstreamReused: false
                )
            )
        }
        let written = lines.withLockedValue { $0 }
        #expect(written.count == paths.count)
        for (line, path) in zip(written, paths) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["path"] as? String == path)
            #expect(object["bytes_in"] as? Int == Int.max && object["bytes_out"] as? Int == Int.min + 1)
        }
    }
}

@Suite struct TLSContextCacheTests {
    /// A reload keeps the contexts built from no files (they cannot have changed) instead of rebuilding them on the
    /// first request after it.
    @Test func reloadKeepsContextsThatReadNoFiles() throws {
        let cache = TLSContextCache()
        let system = try cache.context(for: AllowList.TLS()).get()
        let next = cache.keepingFilelessContexts()
        #expect(try next.context(for: AllowList.TLS()).get() === system)
        #expect(try TLSContextCache().context(for: AllowList.TLS()).get() !== system)
    }
}

@Suite struct LoopMetricsTests {
    @Test(arguments: [(99, "5xx"), (100, "1xx"), (204, "2xx"), (308, "3xx"), (499, "4xx"), (503, "5xx"), (600, "5xx")])
    func statusClasses(code: UInt, expected: String) {
        #expect(ProxyMetrics.statusClass(code) == expected)
    }

    /// Every loop's cached handles write to the same series: one per host and status class.
    @Test func cachedHandlesCountIntoTheSharedSeries() {
        let registry = PrometheusCollectorRegistry()
        let shared = ProxyMetrics(factory: PrometheusMetricsFactory(registry: registry))
        let first = LoopMetrics(shared)
        let second = LoopMetrics(shared)
        for status: UInt in [200, 201, 503, 99] {
            first.request(first.host("api.github.com"), status: status, durationNanoseconds: 1_000_000)
        }
        second.request(second.host("api.github.com"), status: 204, durationNanoseconds: 1_000_000)
        let third = LoopMetrics(shared)
        third.request(third.host("api.github.com"), status: 200, durationNanoseconds: 1_000_000)
        first.upstreamConnection(first.host("api.github.com"), reused: false)
        second.upstreamConnection(second.host("api.github.com"), reused: true)
        second.upstreamConnection(second.host("api.github.com"), reused: true)
        // Requests that were never routed count under the denied label.
        first.request(nil, status: 403, durationNanoseconds: 1_000_000)
        second.request(nil, status: 400, durationNanoseconds: 1_000_000)
        let text = registry.emitToString()
        for line in [
            #"egress_requests_total{host="api.github.com",code="2xx"} 4"#,
            #"egress_requests_total{host="api.github.com",code="5xx"} 2"#,
            #"egress_request_duration_seconds_count{host="api.github.com"} 6"#,
            #"egress_upstream_connections_total{host="api.github.com",kind="opened"} 1"#,
            #"egress_upstream_connections_total{host="api.github.com",kind="reused"} 2"#,
            #"egress_requests_total{host="\#(ProxyMetrics.deniedHost)",code="4xx"} 2"#,
        ] {
            #expect(text.contains(line + "\n"), "missing \(line)")
        }
        #expect(!text.contains(#"code="1xx""#))
    }
}
