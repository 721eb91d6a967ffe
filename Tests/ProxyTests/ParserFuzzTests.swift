import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Proxy

/// Seeded random mutations of valid requests, pipelined, through the proxy's request parser and its upstream
/// encoder, with NIO's llhttp-based decoder standing in for the upstream. For every input:
/// - the parser does not trap (a trap would take the whole proxy down, every connection with it);
/// - what it makes of the bytes does not depend on how they were split into reads;
/// - every request the proxy would forward is written upstream as bytes llhttp reads as exactly the requests the
///   proxy meant (method, target, body, trailers), nothing before, between or after them: no input makes the
///   upstream frame a request differently from the proxy, which is what request smuggling needs.
///
/// The seeds are fixed, so a failure names an input that fails again.
@Suite struct ParserFuzzTests {
    static let inputsPerSeed = 3_000

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func mutatedRequests(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for index in 0..<Self.inputsPerSeed {
            let input = Self.mutated(&random)
            let whole = Self.parsedAlikeInPieces(input, &random, "seed \(seed) input \(index)", Self.parse)
            let forwarded = Self.forwarded(whole.parts)
            guard !forwarded.isEmpty else { continue }
            let expected = forwarded.flatMap { request in Self.summary(request) }
            let encoded = Self.encoded(forwarded)
            // llhttp knows a fixed list of methods and refuses the rest; an extension method (a token, which the
            // proxy forwards) is read back by the proxy's own parser instead.
            let readBack = Self.parse(Array(encoded.readableBytesView), pieces: nil)
            #expect(readBack.error == nil, "seed \(seed) input \(index) \(Self.show(input)): \(readBack)")
            #expect(
                Self.forwarded(readBack.parts, routed: false).flatMap { Self.summary($0) } == expected,
                "seed \(seed) input \(index) \(Self.show(input)): read back as \(readBack)"
            )
            guard forwarded.allSatisfy({ !Self.isExtension($0.head.method) }) else { continue }
            do {
                #expect(
                    try Self.decodedByLLHTTP(encoded) == expected,
                    "seed \(seed) input \(index) \(Self.show(input))"
                )
            } catch {
                Issue.record(
                    "seed \(seed) input \(index) \(Self.show(input)): llhttp rejects what is forwarded: \(error)"
                )
            }
        }
    }

    // MARK: Inputs

    /// Whole requests to start from, pipelined two or three at a time.
    static let seeds: [[UInt8]] =
        (ClientRequestParserTests.valid + [
            "POST /c HTTP/1.1\r\nHost: a.egress.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            "GET /q HTTP/1.0\r\nHost: a.egress.local\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
        ]).map { Array($0.utf8) }

    /// Fragments inserted at random: framing, line ends, separators and bytes parsers disagree on.
    static let fragments: [[UInt8]] =
        [
            "\r\n", "\n", "\r", ":", " ", "\t", ";", ",", "0", "\r\n\r\n", "Content-Length: 5\r\n",
            "Content-Length: 0\r\n",
            "Content-Length: -1\r\n", "Content-Length: +5\r\n", "Content-Length: 5, 5\r\n",
            "Content-Length: 99999999999999999999\r\n", "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n", "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding:chunked\r\n",
            "Transfer-Encoding: \tchunked \r\n", "Connection: content-length\r\n", "Connection: transfer-encoding\r\n",
            "Connection: close\r\n", "Expect: 100-continue\r\n", "Host: b.egress.local\r\n", "0\r\n\r\n",
            "5\r\nhello\r\n", "ffffffffffffffff\r\n", "10000000000000000\r\n", "5;a=b\r\nhello\r\n",
            "GET / HTTP/1.1\r\n",
            "HTTP/1.0", "http://a.egress.local/x", "hello",
        ].map { Array($0.utf8) } + [[0], [0x7F], [0x80], [0xFF], [0xC3, 0xA9]]

    static func mutated(_ random: inout SplitMix64) -> [UInt8] {
        random.mutated(Self.seeds, inserting: Self.fragments)
    }

    static func show(_ input: [UInt8]) -> String {
        String(decoding: input, as: UTF8.self).debugDescription
    }

    // MARK: The proxy's side

    struct Parsed: CustomStringConvertible {
        var parts: [ClientRequestPart] = []
        var described: [String] = []
        /// nil, "malformed" or "too large".
        var error: String?

        var description: String { "\(self.described) error: \(self.error ?? "none")" }
    }

    /// `input` through a fresh parser, whole or in reads of `pieces` bytes, as `ProxyHandler` feeds it.
    static func parse(_ input: [UInt8], pieces: [Int]?) -> Parsed {
        var parser = ClientRequestParser(maximumHeadBytes: 4 * 1024, maximumHeaderCount: 32)
        var result = Parsed()
        do {
            try Self.feed(input, pieces: pieces) { unparsed in
                while let part = try parser.next(&unparsed) { result.parts.append(part) }
            }
        } catch {
            result.error = (error as? HTTPMessageError)?.tooLarge == true ? "too large" : "malformed"
        }
        result.described = Self.described(result.parts)
        return result
    }

    /// `input` parsed whole and in reads of the sizes `random` picks next: the two must read alike (their
    /// descriptions hold every part and the error). Returns the whole parse.
    static func parsedAlikeInPieces<Parsed: CustomStringConvertible>(
        _ input: [UInt8],
        _ random: inout SplitMix64,
        _ context: String,
        _ parse: (_ input: [UInt8], _ pieces: [Int]?) -> Parsed
    ) -> Parsed {
        let whole = parse(input, nil)
        let pieces = random.pieces(covering: input.count)
        let split = parse(input, pieces)
        #expect(
            whole.description == split.description,
            "\(context) \(Self.show(input)): \(whole) vs in pieces \(pieces): \(split)"
        )
        return whole
    }

    /// Hands `input` to `pull` as a handler gets it: in reads of `pieces` bytes (one read if nil), each appended to
    /// what the last pull left unparsed. Returns how many bytes were left unparsed at the end.
    @discardableResult
    static func feed(_ input: [UInt8], pieces: [Int]?, _ pull: (inout ByteBuffer) throws -> Void) rethrows -> Int {
        var unparsed = ByteBuffer()
        var rest = ByteBuffer(bytes: input)
        var sizes = (pieces ?? [input.count])[...]
        while rest.readableBytes > 0 {
            var read = rest.readSlice(length: min(sizes.popFirst() ?? rest.readableBytes, rest.readableBytes))!
            unparsed.writeBuffer(&read)
            try pull(&unparsed)
            unparsed.discardReadBytes()
        }
        return unparsed.readableBytes
    }

    /// Parts as text, bodies merged (their boundaries follow the reads) before they are read as text: a read may end
    /// inside a character.
    static func described(_ parts: [ClientRequestPart]) -> [String] {
        var out = DescribedParts()
        for part in parts {
            switch part {
            case .head(let head):
                let block = head.block.getString(at: head.block.readerIndex, length: head.block.readableBytes) ?? "?"
                out.append("head \(block.debugDescription)")
            case .body(let body): out.appendBody(body)
            case .end(let trailers): out.appendEnd(trailers)
            }
        }
        return out.lines
    }

    /// One request as the proxy forwards it.
    struct Forwarded {
        var head: ClientRequestHead
        var body: [ByteBuffer] = []
        var trailers: HTTPHeaders?
    }

    /// The complete requests the proxy would forward, in order: each accepted (framing and target), up to the first
    /// one it refuses (which ends the exchange here; whether the proxy goes on after it is `ProxyHandler`'s to test).
    /// With `routed: false`, every complete request (as an upstream reads what it was sent).
    static func forwarded(_ parts: [ClientRequestPart], routed: Bool = true) -> [Forwarded] {
        var requests: [Forwarded] = []
        var current: Forwarded?
        for part in parts {
            switch part {
            case .head(let head):
                if routed {
                    guard case .success = RequestValidation.validate(head),
                        case .success(let target) = RequestTarget.parse(head: head, suffix: "egress.local")
                    else { return requests }
                    head.upstreamTarget = target.upstreamTarget
                }
                current = Forwarded(head: head)
            case .body(let body):
                current?.body.append(body)
            case .end(let trailers):
                guard var request = current else { return requests }
                request.trailers = trailers
                requests.append(request)
                current = nil
            }
        }
        return requests
    }

    /// The bytes the upstream gets for `requests` on one connection, written as `UpstreamHandler` writes them.
    static func encoded(_ requests: [Forwarded]) -> ByteBuffer {
        var out = ByteBuffer()
        for request in requests {
            var encoder = UpstreamRequestEncoder(host: "upstream.test", port: 443)
            encoder.writeHead(request.head, into: &out)
            for part in request.body {
                encoder.writeBodyPrefix(length: part.readableBytes, into: &out)
                out.writeImmutableBuffer(part)
                encoder.writeBodySuffix(length: part.readableBytes, into: &out)
            }
            encoder.writeEnd(trailers: request.trailers, into: &out)
        }
        return out
    }

    /// What the upstream must read for `request`: its method and target, its body, its trailers.
    static func summary(_ request: Forwarded) -> [String] {
        let target = request.head.upstreamTarget ?? request.head.targetString
        var lines = ["\(request.head.method.rawValue) \(target)"]
        let body = request.body.flatMap { Array($0.readableBytesView) }
        if !body.isEmpty { lines.append("body " + String(decoding: body, as: UTF8.self)) }
        lines.append("end [" + (request.trailers?.map { "\($0.name)=\($0.value)" }.joined(separator: ",") ?? "") + "]")
        return lines
    }

    // MARK: The upstream's side

    static func isExtension(_ method: HTTPMethod) -> Bool {
        if case .RAW = method { return true }
        return false
    }

    /// What llhttp reads from `bytes`, summarised as `summary` does; throws if it rejects them or is left mid-request.
    static func decodedByLLHTTP(_ bytes: ByteBuffer) throws -> [String] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        try channel.writeInbound(bytes)
        var out = DescribedParts()
        while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): out.append("\(head.method.rawValue) \(head.uri)")
            case .body(let body): out.appendBody(body)
            case .end(let trailers): out.appendEnd(trailers)
            }
        }
        _ = try channel.finish()
        return out.lines
    }
}

/// Lines describing request parts, a body's bytes gathered until the part after it.
struct DescribedParts {
    private(set) var finished: [String] = []
    private var body: [UInt8]?

    var lines: [String] { self.finished + (self.body.map { ["body " + String(decoding: $0, as: UTF8.self)] } ?? []) }

    mutating func append(_ line: String) {
        self.flushBody()
        self.finished.append(line)
    }

    mutating func appendBody(_ bytes: ByteBuffer) {
        self.body = (self.body ?? []) + bytes.readableBytesView
    }

    mutating func appendEnd(_ trailers: HTTPHeaders?) {
        self.append("end [" + (trailers?.map { "\($0.name)=\($0.value)" }.joined(separator: ",") ?? "") + "]")
    }

    private mutating func flushBody() {
        if let body = self.body {
            self.finished.append("body " + String(decoding: body, as: UTF8.self))
            self.body = nil
        }
    }
}

/// The same for the other direction: mutated upstream responses through the proxy's response parser and the
/// encoder that writes them to the client, with llhttp's response decoder standing in for the client. Whatever an
/// upstream sends, the parser does not trap and does not depend on the split of the reads, and what reaches the
/// client reads as exactly the responses the proxy relayed: a pooled upstream cannot make one client read part of
/// another's response.
@Suite struct ResponseParserFuzzTests {
    static let inputsPerSeed = 3_000

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func mutatedResponses(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for index in 0..<Self.inputsPerSeed {
            let input = Self.mutated(&random)
            let whole = ParserFuzzTests.parsedAlikeInPieces(input, &random, "seed \(seed) input \(index)", Self.parse)
            let relayed = Self.complete(whole.parts)
            guard !relayed.isEmpty else { continue }
            do {
                #expect(
                    try Self.decodedByLLHTTP(Self.encoded(relayed), requests: relayed.count)
                        == relayed.flatMap(Self.summary),
                    "seed \(seed) input \(index) \(ParserFuzzTests.show(input))"
                )
            } catch {
                Issue.record(
                    "seed \(seed) input \(index) \(ParserFuzzTests.show(input)): llhttp rejects what is relayed: \(error)"
                )
            }
        }
    }

    static let seeds: [[UInt8]] = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
            + "2\r\nab\r\n1;x=y\r\nc\r\n0\r\nX-Sum: 3\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
    ].map { Array($0.utf8) }

    static let fragments: [[UInt8]] =
        [
            "\r\n", "\n", "\r", ":", " ", "\t", ";", ",", "0", "\r\n\r\n", "Content-Length: 5\r\n",
            "Content-Length: 0\r\n",
            "Content-Length: 5, 5\r\n", "Content-Length: 99999999999999999999\r\n", "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip\r\n", "Connection: content-length\r\n", "Connection: transfer-encoding\r\n",
            "Connection: close\r\n", "Upgrade: h2c\r\n", "0\r\n\r\n", "5\r\nhello\r\n", "ffffffffffffffff\r\n",
            "HTTP/1.1 200 OK\r\n", "HTTP/1.1 101 Switching Protocols\r\n", "hello",
        ].map { Array($0.utf8) } + [[0], [0x7F], [0x80], [0xFF]]

    static func mutated(_ random: inout SplitMix64) -> [UInt8] {
        random.mutated(Self.seeds, inserting: Self.fragments)
    }

    struct Parsed: CustomStringConvertible {
        var parts: [UpstreamResponsePart] = []
        var described: [String] = []
        var error = false

        var description: String { "\(self.described) error: \(self.error)" }
    }

    /// `input` through a fresh parser (every response answering a `GET`), then the connection's close.
    static func parse(_ input: [UInt8], pieces: [Int]?) -> Parsed {
        var parser = UpstreamResponseParser()
        var result = Parsed()
        do {
            let unparsed = try ParserFuzzTests.feed(input, pieces: pieces) { unparsed in
                while let part = try parser.next(&unparsed, nextMethod: { .GET }) { result.parts.append(part) }
            }
            if let last = try parser.inputClosed(unparsed: unparsed) { result.parts.append(last) }
        } catch {
            result.error = true
        }
        var out = DescribedParts()
        for part in result.parts {
            switch part {
            case .head(let head): out.append("head \(head.code) \(String(buffer: head.fields).debugDescription)")
            case .body(let body): out.appendBody(body)
            case .end(let trailers): out.append("end \(trailers.map { String(buffer: $0) } ?? "")")
            }
        }
        result.described = out.lines
        return result
    }

    struct Relayed {
        var head: UpstreamResponseHead
        var body: [ByteBuffer] = []
        var trailers: ByteBuffer?
    }

    /// The complete responses, in order.
    static func complete(_ parts: [UpstreamResponsePart]) -> [Relayed] {
        var responses: [Relayed] = []
        var current: Relayed?
        for part in parts {
            switch part {
            case .head(let head): current = Relayed(head: head)
            case .body(let body): current?.body.append(body)
            case .end(let trailers):
                guard var response = current else { return responses }
                response.trailers = trailers
                responses.append(response)
                current = nil
            }
        }
        return responses
    }

    /// What a keep-alive HTTP/1.1 client gets for `responses`, written as `ProxyHandler` writes them.
    static func encoded(_ responses: [Relayed]) -> ByteBuffer {
        var out = ByteBuffer()
        for response in responses {
            var encoder = ClientResponseEncoder()
            encoder.writeHead(response.head, version: .http1_1, close: false, answeringHEAD: false, into: &out)
            for part in response.body {
                encoder.writeBodyPrefix(length: part.readableBytes, into: &out)
                out.writeImmutableBuffer(part)
                encoder.writeBodySuffix(length: part.readableBytes, into: &out)
            }
            encoder.writeEnd(trailers: response.trailers, into: &out)
        }
        return out
    }

    /// What the client must read for `response`: its status, its body, its trailers as name=value.
    static func summary(_ response: Relayed) -> [String] {
        var lines = ["\(response.head.code)"]
        let body = response.body.flatMap { Array($0.readableBytesView) }
        if !body.isEmpty { lines.append("body " + String(decoding: body, as: UTF8.self)) }
        var trailers: [String] = []
        if let block = response.trailers {
            for line in String(buffer: block).split(separator: "\r\n") {
                let colon = line.firstIndex(of: ":")!
                let value = line[line.index(after: colon)...].trimmingCharacters(in: [" ", "\t"])
                trailers.append("\(line[..<colon])=\(value)")
            }
        }
        lines.append("end [" + trailers.joined(separator: ",") + "]")
        return lines
    }

    /// What llhttp's response decoder reads from `bytes`, after `requests` GETs were sent (it pairs each response
    /// with a request).
    static func decodedByLLHTTP(_ bytes: ByteBuffer, requests: Int) throws -> [String] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPResponseDecoder()))
        for _ in 0..<requests {
            try channel.writeOutbound(
                HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"))
            )
            try channel.writeOutbound(HTTPClientRequestPart.end(nil))
        }
        try channel.writeInbound(bytes)
        var out = DescribedParts()
        while let part = try channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let head): out.append("\(head.status.code)")
            case .body(let body): out.appendBody(body)
            case .end(let trailers):
                out.append(
                    "end ["
                        + (trailers?.map { "\($0.name)=\($0.value.trimmingCharacters(in: [" ", "\t"]))" }
                            .joined(separator: ",") ?? "") + "]"
                )
            }
        }
        _ = try channel.finish()
        return out.lines
    }
}
