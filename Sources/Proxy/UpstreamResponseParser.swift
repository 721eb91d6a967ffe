import NIOCore
import NIOHTTP1

/// A response head as the upstream sent it. The header lines stay bytes (validated, passed to the client as they
/// came): building a `String` for every name and value is what made parsing cost more than relaying.
///
/// A class, as `ClientRequestHead` is: as a struct (about 130 bytes) every move of a part copied it field by field.
final class UpstreamResponseHead {
    let version: HTTPVersion
    let code: Int
    /// The reason phrase, as sent (may be empty).
    let reason: ByteBuffer
    /// The header lines, each ending in CRLF, without the blank line.
    let fields: ByteBuffer
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    let keepAlive: Bool
    /// The body's length as `Content-Length` gave it; the client gets it as one line the encoder writes.
    let contentLength: Int?
    var hasContentLength: Bool { self.contentLength != nil }
    /// The fixed hop-by-hop names plus what the `Connection` header lists besides `close` and `keep-alive`.
    let hopByHop: HeaderSanitizer.HopByHop
    /// The lines of `fields` the client must not get, as found while parsing.
    let dropped: DroppedLines

    init(
        version: HTTPVersion,
        code: Int,
        reason: ByteBuffer,
        fields: ByteBuffer,
        keepAlive: Bool,
        contentLength: Int?,
        hopByHop: HeaderSanitizer.HopByHop,
        dropped: DroppedLines
    ) {
        self.version = version
        self.code = code
        self.reason = reason
        self.fields = fields
        self.keepAlive = keepAlive
        self.contentLength = contentLength
        self.hopByHop = hopByHop
        self.dropped = dropped
    }

    /// Whether a body may follow this head: not for 204 and 304 (1xx heads are never handed out).
    var mayHaveBody: Bool { Self.mayHaveBody(code: self.code) }

    /// 1xx, 204 and 304 responses never have a body (RFC 9112 section 6.3). Decided on the number: building NIO's
    /// `HTTPResponseStatus` to ask it released a string, three times per response.
    static func mayHaveBody(code: Int) -> Bool { code >= 200 && code != 204 && code != 304 }
}

/// The field lines of a response head the client must not get (hop-by-hop ones, and Content-Length where there can
/// be no body), as byte ranges of its `fields` noted while parsing: writing the head then copies what lies between
/// them instead of finding and checking every line again. Up to four, without allocating; `isComplete` is false
/// when there were more, or when `Connection` names other headers, and the writer checks every line.
struct DroppedLines {
    private var starts = SIMD4<Int32>()
    private var ends = SIMD4<Int32>()
    private(set) var count = 0
    private(set) var isComplete = true

    mutating func append(_ range: Range<Int>) {
        guard self.count < 4 else {
            self.isComplete = false
            return
        }
        self.starts[self.count] = Int32(range.lowerBound)
        self.ends[self.count] = Int32(range.upperBound)
        self.count += 1
    }

    mutating func giveUp() { self.isComplete = false }

    subscript(index: Int) -> Range<Int> { Int(self.starts[index])..<Int(self.ends[index]) }
}

enum UpstreamResponsePart {
    case head(UpstreamResponseHead)
    case body(ByteBuffer)
    /// The trailer lines (each ending in CRLF) of a chunked body, if there were any.
    case end(trailers: ByteBuffer?)
}

/// Parses the responses of one upstream connection (HTTP/1.1, RFC 9112) into head, body and end parts.
///
/// Strict on purpose: the connection is pooled and serves one client after another, so anything that could leave
/// its framing in doubt (a bare LF, obsolete line folding, Content-Length with Transfer-Encoding, differing lengths,
/// a transfer coding other than chunked, an unrequested upgrade) is an error, never a guess. Header lines are
/// forwarded as bytes, so each is checked here: a token name, a colon, and a value of visible characters, spaces
/// and tabs only. Body bytes are slices of what was read (no copy). Interim 1xx responses are skipped; the proxy
/// answers `Expect: 100-continue` itself.
struct UpstreamResponseParser {
    static let maximumHeadBytes = 80 * 1024
    static let maximumHeaderCount = 1024

    private enum State {
        case head
        case body(HTTP1BodyReader)
        /// A head without a body was handed out: its end comes next.
        case end
        /// Neither length nor chunked: the body ends when the connection does.
        case untilClose
    }

    private var state = State.head
    private var heads = HTTP1BlockReader()

    /// Whether the last response (if any) has ended and no byte of another has been parsed.
    var isBetweenResponses: Bool {
        if case .head = self.state { return true }
        return false
    }

    /// The next part of a response from `buffer`, or nil when more input is needed. `nextMethod` gives the method of
    /// the request a final response answers (a response to `HEAD` has no body), nil if none is outstanding.
    mutating func next(_ buffer: inout ByteBuffer, nextMethod: () -> HTTPMethod?) throws -> UpstreamResponsePart? {
        while true {
            switch self.state {
            case .head:
                guard buffer.readableBytes > 0,
                    let block = try self.heads.read(&buffer, trailers: false, maximumBytes: Self.maximumHeadBytes)
                else { return nil }
                guard let (head, framing) = try Self.head(block) else { continue }  // an interim 1xx response
                guard let method = nextMethod() else {
                    throw HTTPMessageError(description: "a response arrived with no request outstanding")
                }
                self.state = Self.bodyState(framing, head: head, answeringHEAD: method.isHEAD) ?? .end
                return .head(head)
            case .end:
                self.state = .head
                return .end(trailers: nil)
            case .body(var reader):
                switch try reader.next(&buffer) {
                case .needMore:
                    self.state = .body(reader)
                    return nil
                case .body(let bytes):
                    self.state = .body(reader)
                    return .body(bytes)
                case .ended(let trailers):
                    self.state = .head
                    return .end(trailers: trailers)
                }
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .body(buffer.readSlice(length: buffer.readableBytes)!)
            }
        }
    }

    /// The connection closed with `unparsed` bytes left over: the end of a body delimited by the close, nothing
    /// between responses, or an error when a response was cut short.
    mutating func inputClosed(unparsed: Int) throws -> UpstreamResponsePart? {
        switch self.state {
        case .untilClose:
            self.state = .head
            return .end(trailers: nil)
        case .head where unparsed == 0:
            return nil
        default:
            throw HTTPMessageError(description: "the upstream closed the connection in the middle of a response")
        }
    }

    // MARK: Head

    /// How the fields say the body is framed.
    private enum Framing {
        case chunked
        case length(Int)
        /// Neither: the body ends when the connection does.
        case unspecified
    }

    /// The head in `block` (status line, fields, blank line) and its body framing, or nil for an interim 1xx.
    private static func head(_ block: ByteBuffer) throws -> (UpstreamResponseHead, Framing)? {
        let lineEnd = block.withUnsafeReadableBytes { HTTP1Syntax.lineEnd($0, from: 0) }
        guard let lineEnd, lineEnd >= 12 else { throw HTTPMessageError(description: "invalid status line") }
        let (minor, code) = try block.withUnsafeReadableBytes {
            try Self.statusLine(UnsafeRawBufferPointer(rebasing: $0[..<lineEnd]))
        }
        if (100..<200).contains(code) {
            guard code != 101 else {
                throw HTTPMessageError(description: "the upstream switched protocols unasked")
            }
            _ = try HTTP1Syntax.fields(of: block, from: lineEnd + 2, maximumCount: Self.maximumHeaderCount) { _, _, _ in
            }
            return nil
        }
        var summary = FieldSummary(mayHaveBody: UpstreamResponseHead.mayHaveBody(code: code))
        let fields = try HTTP1Syntax.fields(of: block, from: lineEnd + 2, maximumCount: Self.maximumHeaderCount) {
            line,
            name,
            value in
            try summary.add(line: line, name: name, value: value)
        }
        if !summary.hopByHop.isEmptyOfNamed { summary.dropped.giveUp() }
        if summary.chunked, summary.length != nil {
            throw HTTPMessageError(description: "both Content-Length and Transfer-Encoding")
        }
        let reason = lineEnd > 13 ? block.getSlice(at: block.readerIndex + 13, length: lineEnd - 13)! : ByteBuffer()
        let head = UpstreamResponseHead(
            version: HTTPVersion(major: 1, minor: minor),
            code: code,
            reason: reason,
            fields: fields,
            // An HTTP/1.0 message with Transfer-Encoding: its framing is suspect, so the connection closes after it
            // (RFC 9112, section 6.1).
            keepAlive: !summary.close && (minor == 1 || (summary.keepAlive && !summary.chunked)),
            contentLength: summary.length,
            hopByHop: summary.hopByHop,
            dropped: summary.dropped
        )
        let framing: Framing = summary.chunked ? .chunked : summary.length.map { .length($0) } ?? .unspecified
        return (head, framing)
    }

    /// `HTTP/1.x NNN reason` (the reason may be empty, and then its space may be missing).
    private static func statusLine(_ line: UnsafeRawBufferPointer) throws -> (minor: Int, code: Int) {
        let bad = HTTPMessageError(description: "invalid status line")
        guard line.count >= 12, HTTP1Syntax.startsWithHTTP1(line), line[8] == UInt8(ascii: " ") else { throw bad }
        let minor: Int
        switch line[7] {
        case UInt8(ascii: "0"): minor = 0
        case UInt8(ascii: "1"): minor = 1
        default: throw bad
        }
        var code = 0
        for index in 9..<12 {
            let digit = line[index]
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { throw bad }
            code = code * 10 + Int(digit - UInt8(ascii: "0"))
        }
        guard code >= 100 else { throw bad }
        if line.count > 12 {
            guard line[12] == UInt8(ascii: " "), line[13...].allSatisfy(HTTP1Syntax.isValueByte) else { throw bad }
        }
        return (minor, code)
    }

    /// What the body after `head` is, or nil when there is none.
    private static func bodyState(_ framing: Framing, head: UpstreamResponseHead, answeringHEAD: Bool) -> State? {
        if answeringHEAD || !head.mayHaveBody { return nil }
        switch framing {
        case .chunked:
            return .body(
                HTTP1BodyReader(chunkedWithMaximumTrailerBytes: Self.maximumHeadBytes, hopByHop: head.hopByHop)
            )
        case .length(let length): return HTTP1BodyReader(length: length).map { .body($0) }
        case .unspecified: return .untilClose
        }
    }

    /// What the field lines of a head say, gathered as each is checked: the body framing (checked for conflicts),
    /// keep-alive (`close` wins over `keep-alive`), the extra names `Connection` lists, and the lines to drop.
    private struct FieldSummary {
        let mayHaveBody: Bool
        var chunked = false
        var length: Int? = nil
        var close = false
        var keepAlive = false
        var hopByHop = HeaderSanitizer.HopByHop()
        var dropped = DroppedLines()

        mutating func add(line: Range<Int>, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws {
            // Most names are ruled out by their length alone.
            switch name.count {
            case 17 where name.equalsIgnoringASCIICase("transfer-encoding"):
                guard !self.chunked, value.equalsIgnoringASCIICase("chunked") else {
                    throw HTTPMessageError(description: "unsupported Transfer-Encoding")
                }
                self.chunked = true
            case 14 where name.equalsIgnoringASCIICase("content-length"):
                guard let parsed = HTTP1Syntax.decimal(value), self.length == nil || self.length == parsed
                else {
                    throw HTTPMessageError(description: "invalid or conflicting Content-Length")
                }
                self.length = parsed
                // Written again by the encoder as one canonical line (duplicates and `5, 5` lists never reach the
                // client), and not at all for a response that cannot have a body (as NIO's encoder does).
                self.dropped.append(line)
                return
            case 10 where name.equalsIgnoringASCIICase("connection"):
                let said = self.hopByHop.listConnection(value)
                if said.close { self.close = true }
                if said.keepAlive { self.keepAlive = true }
            default:
                break
            }
            if HeaderSanitizer.isHopByHop(name) { self.dropped.append(line) }
        }
    }
}
