import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Proxy

/// The proxy's own request parser: the same parts as NIO's llhttp-based decoder for valid requests, whatever the
/// split of the bytes, and an error for everything that breaks the syntax.
@Suite struct ClientRequestParserTests {
    /// Parts as text: the head, bodies merged (their boundaries follow the reads), the end with its trailers.
    private func described(_ parts: [HTTPServerRequestPart]) -> [String] {
        var out: [String] = []
        for part in parts {
            switch part {
            case .head(let head):
                let headers = head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                out.append("head \(head.method.rawValue) \(head.uri) \(head.version) [\(headers)]")
            case .body(let body):
                if let last = out.last, last.hasPrefix("body ") {
                    out[out.count - 1] = last + String(buffer: body)
                } else {
                    out.append("body " + String(buffer: body))
                }
            case .end(let trailers):
                out.append("end [" + (trailers?.map { "\($0.name)=\($0.value)" }.joined(separator: ",") ?? "") + "]")
            }
        }
        return out
    }

    /// The proxy's parts in NIO's terms, to be described the same way: a head's field lines split here, at their
    /// CRLFs and first colons, values trimmed of spaces and tabs.
    private func described(_ parts: [ClientRequestPart]) -> [String] {
        self.described(
            parts.map { part -> HTTPServerRequestPart in
                switch part {
                case .head(let head): .head(Self.nioHead(head))
                case .body(let body): .body(body)
                case .end(let trailers): .end(trailers)
                }
            }
        )
    }

    static func nioHead(_ head: ClientRequestHead) -> HTTPRequestHead {
        let text = head.block.getString(at: head.block.readerIndex + head.fields.lowerBound, length: head.fields.count)!
        let headers = text.split(separator: "\r\n").map { line in
            let colon = line.firstIndex(of: ":")!
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            return (String(line[..<colon]), String(value.reversed().drop { $0 == " " || $0 == "\t" }.reversed()))
        }
        return HTTPRequestHead(
            version: head.version,
            method: head.method,
            uri: head.targetString,
            headers: HTTPHeaders(headers)
        )
    }

    private func parse(_ input: String, piece: Int = .max) throws -> [String] {
        var parser = ClientRequestParser(maximumHeadBytes: 32 * 1024, maximumHeaderCount: 100)
        var parts: [ClientRequestPart] = []
        var unparsed = ByteBuffer()
        var rest = ByteBuffer(string: input)
        while rest.readableBytes > 0 {
            var chunk = rest.readSlice(length: min(piece, rest.readableBytes))!
            unparsed.writeBuffer(&chunk)
            while let part = try parser.next(&unparsed) { parts.append(part) }
            unparsed.discardReadBytes()
        }
        return described(parts)
    }

    /// What NIO's `HTTPRequestDecoder` (llhttp) makes of the same bytes.
    private func decodedByNIO(_ input: String) throws -> [String] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        try channel.writeInbound(ByteBuffer(string: input))
        var parts: [HTTPServerRequestPart] = []
        while let part = try channel.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
        _ = try channel.finish()
        return described(parts)
    }

    static let valid: [String] = [
        "GET / HTTP/1.1\r\nHost: a.egress.local\r\n\r\n",
        "GET /path?q=1&r=%20x HTTP/1.1\r\nHost: a.egress.local\r\nAccept: */*\r\nX-Empty:\r\nX-Spaces: \t v  w\r\n\r\n",
        "HEAD /h HTTP/1.0\r\nHost: a.egress.local\r\nConnection: keep-alive\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a.egress.local\r\nContent-Length: 11\r\n\r\nhello world",
        "PUT /p HTTP/1.1\r\nHost: a.egress.local\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Sum: 16\r\nX-Other: o\r\n\r\n",
        "DELETE /d HTTP/1.1\r\nHost: a.egress.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a.egress.local\r\n\r\n",
        "GET http://a.egress.local:8080/abs HTTP/1.1\r\nHost: a.egress.local:8080\r\n\r\n",
        "PATCH /x HTTP/1.1\r\nHost: a.egress.local\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
        "GET /obs HTTP/1.1\r\nHost: a.egress.local\r\nX-Latin: caf\u{E9}\r\n\r\n",
    ]

    @Test(arguments: valid)
    func sameAsNIOsDecoder(request: String) throws {
        let ours = try parse(request)
        let nio = try decodedByNIO(request)
        #expect(ours == nio, "\(ours.debugDescription) vs \(nio.debugDescription)")
    }

    /// Request trailers that could pass for the request's own framing or routing, or that are hop-by-hop, are not
    /// handed on.
    @Test func forbiddenTrailersAreDropped() throws {
        let request =
            "POST /t HTTP/1.1\r\nHost: a.egress.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            + "X-Sum: 1\r\nHost: evil.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n"
        let parts = try parse(request)
        #expect(parts.last == "end [X-Sum=1,X-B=2]", "\(parts)")
    }

    /// Fields the head's `Connection` names are hop-by-hop in the trailers too (RFC 9110, 7.6.1).
    @Test func trailersLoseTheFieldsConnectionNames() throws {
        let request =
            "POST /t HTTP/1.1\r\nHost: a.egress.local\r\nConnection: x-secret\r\nX-Secret: head\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-SECRET: trailer\r\nX-Other: ok\r\n\r\n"
        let parts = try parse(request)
        #expect(parts.last == "end [X-Other=ok]", "\(parts)")
    }

    /// RFC 9110 §5.5: whitespace around a value is not part of it. llhttp keeps trailing whitespace; this parser does
    /// not, so an upstream gets the value without it.
    @Test func fieldValuesLoseSurroundingWhitespace() throws {
        #expect(
            try parse("GET / HTTP/1.1\r\nHost: a \r\nX-A:\t v  w \t\r\n\r\n") == [
                "head GET / HTTP/1.1 [Host=a,X-A=v  w]", "end []",
            ]
        )
    }

    /// All of them pipelined on one connection, after empty lines, split at every size from 1 to 16 bytes.
    @Test func pipelinedAndSplitAnywhere() throws {
        let stream = "\r\n\r\n" + Self.valid.joined()
        let whole = try parse(stream)
        #expect(whole == (try Self.valid.flatMap(decodedByNIO)))
        for piece in 1...16 {
            #expect(try parse(stream, piece: piece) == whole, "pieces of \(piece)")
        }
    }

    @Test(arguments: [
        "GET / HTTP/1.1\nHost: a\r\n\r\n",  // bare LF ending the request line
        "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",  // bare LF inside the fields
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",  // obsolete line folding
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",  // space before the colon
        "GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n",  // NUL in a value
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",  // bare CR in a value
        "GET / HTTP/1.1\r\n: x\r\n\r\n",  // empty name
        "GET  / HTTP/1.1\r\n\r\n",  // two spaces
        "GET / HTTP/1.1 \r\n\r\n",  // trailing space
        "GET /a b HTTP/1.1\r\n\r\n",  // space in the target
        "GET /\u{7F} HTTP/1.1\r\n\r\n",  // control byte in the target
        "GET /caf\u{E9} HTTP/1.1\r\n\r\n",  // non-ASCII target
        "G(T / HTTP/1.1\r\n\r\n",  // not a token
        " GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1x\r\n\r\n",
        "GET / HTTX/1.1\r\n\r\n",
        "GET /\r\n\r\n",
        "HELLO THERE\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  // bad chunk size
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",  // chunk not followed by CRLF
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\nY: 2\r\n\r\n",  // bare LF in trailers
        // A bare LF after an empty line between requests (read a byte at a time, the empty line's CR arrives alone).
        "GET / HTTP/1.1\r\n\r\n\r\n\n",
    ])
    func malformedRequestsAreErrors(request: String) {
        // Whole, and arriving in pieces (an incomplete head is checked for bare LFs only where it grew).
        for piece in [Int.max, 1, 2, 3, 7] {
            #expect(throws: HTTPMessageError.self, "pieces of \(piece)") { try parse(request, piece: piece) }
        }
    }

    @Test func oversizedHeadsAndTooManyFieldsAreTooLarge() {
        let big = "GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 40_000) + "\r\n\r\n"
        let many = "GET / HTTP/1.1\r\n" + (0..<150).map { "X-H\($0): v\r\n" }.joined() + "\r\n"
        let endless = "GET / HTTP/1.1\r\nX-Endless: " + String(repeating: "a", count: 40_000)
        for request in [big, many, endless] {
            for piece in [.max, 1000] {
                #expect {
                    try parse(request, piece: piece)
                } throws: { error in
                    (error as? HTTPMessageError)?.tooLarge == true
                }
            }
        }
    }

    /// A head whose framing is refused with a close is handed on for its refusal, and the bytes after it (which the
    /// upstream might read as a second request) are never parsed.
    @Test func nothingIsReadAfterAmbiguousFraming() throws {
        let smuggled = "GET /admin HTTP/1.1\r\nHost: a.egress.local\r\n\r\n"
        for framing in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked", "Content-Length: 5\r\nContent-Length: 6",
            "Transfer-Encoding: gzip, chunked",
        ] {
            let parts = try parse("POST / HTTP/1.1\r\nHost: a.egress.local\r\n\(framing)\r\n\r\n0\r\n\r\n" + smuggled)
            #expect(parts.count == 2 && parts[0].hasPrefix("head POST /") && parts[1] == "end []", "\(parts)")
        }
    }

    /// `CONNECT` is refused without a close and has no body: the next request is parsed.
    @Test func theRequestAfterARefusedConnectIsRead() throws {
        let parts = try parse(
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\nGET / HTTP/1.1\r\nHost: a.egress.local\r\n\r\n"
        )
        #expect(
            parts == [
                "head CONNECT a.test:443 HTTP/1.1 [Host=a.test:443]", "end []",
                "head GET / HTTP/1.1 [Host=a.egress.local]", "end []",
            ]
        )
    }
}
