import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A request head as the client sent it. As with `UpstreamResponseHead`, the field lines stay bytes: the parser
/// checks them and they are copied upstream as they came, minus the lines it noted to drop. What the proxy needs from
/// them (framing, `Expect`, `Host`, keep-alive, the names `Connection` lists) is gathered in the parser's one pass.
/// NIO's `HTTPRequestHead` it replaces cost a `String` per name and value, a headers array and a storage object per
/// request, and was walked again to validate, route and encode.
///
/// A class: as a struct (about 250 bytes, four references) every move of a part copied it field by field, which
/// cost more than the one allocation.
final class ClientRequestHead {
    let method: HTTPMethod
    let version: HTTPVersion
    /// The head as read: request line, field lines, blank line.
    let block: ByteBuffer
    /// Where the request target is in `block`.
    let target: Range<Int>
    /// Where the field lines are in `block` (each ends in CRLF; the blank line is not included).
    let fields: Range<Int>
    /// Where the `Host` value is in `block` (the first one, if there are several).
    var host: Range<Int>? = nil
    var hostCount = 0
    /// What the fields say about the body, for `RequestValidation`.
    var framing = RequestValidation.FramingFields()
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (as NIO decides).
    var keepAlive: Bool { !self.connectionClose && (self.version.minor >= 1 || self.connectionKeepAlive) }
    var connectionClose = false
    var connectionKeepAlive = false
    /// The fixed hop-by-hop names plus what the `Connection` header lists besides `close` and `keep-alive`.
    var hopByHop = HeaderSanitizer.HopByHop()
    /// The field lines not sent upstream (hop-by-hop ones and `Host`; offsets from `fields.lowerBound`).
    var dropped = DroppedLines()
    /// The origin-form target to send upstream instead of `target`, when the client sent an absolute-form one.
    var upstreamTarget: String? = nil

    init(method: HTTPMethod, version: HTTPVersion, block: ByteBuffer, target: Range<Int>, fields: Range<Int>) {
        self.method = method
        self.version = version
        self.block = block
        self.target = target
        self.fields = fields
    }

    /// Whether the target is a path (`/x?y`), as opposed to an absolute URI, `*` or an authority.
    var isOriginForm: Bool {
        self.block.getInteger(at: self.block.readerIndex + self.target.lowerBound, as: UInt8.self) == UInt8(ascii: "/")
    }

    /// The (first) `Host` value's bytes.
    var hostValue: [UInt8]? {
        self.host.map { self.block.getBytes(at: self.block.readerIndex + $0.lowerBound, length: $0.count)! }
    }

    /// Whether the `Host` value is exactly `bytes`.
    func hostValueEquals(_ bytes: [UInt8]) -> Bool {
        guard let host = self.host, host.count == bytes.count else { return false }
        return self.block.withUnsafeReadableBytes { block in
            bytes.withUnsafeBytes { memcmp(block.baseAddress! + host.lowerBound, $0.baseAddress!, host.count) == 0 }
        }
    }

    /// The request target as text (for the access log, and to parse an absolute-form target).
    var targetString: String {
        self.block.getString(at: self.block.readerIndex + self.target.lowerBound, length: self.target.count)!
    }
}

/// One part of a client's request, as `ClientRequestParser` reads it and `UpstreamHandler` writes it.
enum ClientRequestPart {
    case head(ClientRequestHead)
    case body(ByteBuffer)
    case end(trailers: HTTPHeaders?)
}

/// Parses the requests of one client connection (HTTP/1.1, RFC 9112) into head, body and end parts, in `ProxyHandler`
/// itself rather than in a decoder handler in front of it: every part that crossed that hop was boxed in `NIOAny`
/// and cast back, and the decoder's machinery around llhttp cost more than the parse.
///
/// Strict, as `HTTP1Syntax` describes: a request line of exactly `method SP target SP HTTP/1.x` (the target
/// visible ASCII), token field names, no folding, no bare LF, no control bytes. The body is framed as
/// `RequestValidation` decides from the head, the same decision `ProxyHandler` acts on, so the parser and the proxy
/// never disagree on where a request ends. A head whose framing is refused with a close (Content-Length with
/// Transfer-Encoding, differing lengths, an unknown coding) is handed on for its refusal and nothing after it is
/// read; one refused without a close (`CONNECT`) has no body and the next request follows. `ProxyHandler` asks
/// `RequestValidation` again, which decides from the facts gathered here without walking the fields.
struct ClientRequestParser {
    private enum State {
        case head
        case body(HTTP1BodyReader)
        /// A head without a body was handed out: its end comes next, and after it nothing more is read when
        /// `stop` (the head's framing was refused).
        case end(stop: Bool)
        /// After a head whose framing was refused: nothing more is read from this connection.
        case stopped
    }

    private let maximumHeadBytes: Int
    private let maximumHeaderCount: Int
    private var state = State.head
    private var heads = HTTP1BlockReader()

    init(maximumHeadBytes: Int, maximumHeaderCount: Int) {
        self.maximumHeadBytes = maximumHeadBytes
        self.maximumHeaderCount = maximumHeaderCount
    }

    /// The next part of a request from `buffer`, or nil when more input is needed (what is left is the start of a
    /// head or chunk-size line). Parts are pulled one at a time, so the caller hands each on as it comes, with no
    /// queue in between. Throws `HTTPMessageError` for a request that breaks the syntax.
    mutating func next(_ buffer: inout ByteBuffer) throws -> ClientRequestPart? {
        while true {
            switch self.state {
            case .head:
                // Empty lines before a request line are ignored (RFC 9112 §2.2).
                while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                    buffer.moveReaderIndex(forwardBy: 2)
                    // A lone CR the block reader saw in an earlier read began this empty line, not a head: what it
                    // searched is gone, and the byte after the line must still be checked.
                    self.heads = HTTP1BlockReader()
                }
                let maximum = self.maximumHeadBytes
                guard buffer.readableBytes > 0,
                    let block = try self.heads.read(&buffer, trailers: false, maximumBytes: maximum)
                else { return nil }
                let head = try Self.head(block, maximumHeaderCount: self.maximumHeaderCount)
                switch RequestValidation.validate(head) {
                case .success(.none):
                    self.state = .end(stop: false)
                case .success(.contentLength(let length)):
                    self.state = HTTP1BodyReader(length: length).map { .body($0) } ?? .end(stop: false)
                case .success(.chunked):
                    self.state = .body(
                        HTTP1BodyReader(chunkedWithMaximumTrailerBytes: maximum, hopByHop: head.hopByHop)
                    )
                case .failure(let refusal):
                    self.state = .end(stop: refusal.closeConnection)
                }
                return .head(head)
            case .end(let stop):
                self.state = stop ? .stopped : .head
                return .end(trailers: nil)
            case .body(var reader):
                let piece = try reader.next(&buffer)
                switch piece {
                case .needMore:
                    self.state = .body(reader)
                    return nil
                case .body(let bytes):
                    self.state = .body(reader)
                    return .body(bytes)
                case .ended(let trailers):
                    self.state = .head
                    return .end(trailers: try trailers.map(Self.headers))
                }
            case .stopped:
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                return nil
            }
        }
    }

    /// The request line and fields of a complete head block, with what the fields say gathered in the same pass.
    private static func head(_ block: ByteBuffer, maximumHeaderCount: Int) throws -> ClientRequestHead {
        let (method, target, minor, fieldsStart) = try block.withUnsafeReadableBytes { bytes in
            guard let lineEnd = HTTP1Syntax.lineEnd(bytes, from: 0) else {
                throw HTTPMessageError(description: "invalid request line")
            }
            let (method, target, minor) = try Self.requestLine(UnsafeRawBufferPointer(rebasing: bytes[..<lineEnd]))
            return (method, target, minor, lineEnd + 2)
        }
        let head = ClientRequestHead(
            method: method,
            version: HTTPVersion(major: 1, minor: minor),
            block: block,
            target: target,
            fields: fieldsStart..<(block.readableBytes - 2)
        )
        _ = try HTTP1Syntax.fields(of: block, from: fieldsStart, maximumCount: maximumHeaderCount) {
            line,
            name,
            value in
            head.add(line: line, name: name, value: value)
        }
        if !head.hopByHop.isEmptyOfNamed { head.dropped.giveUp() }
        return head
    }

    /// `method SP request-target SP HTTP/1.D`, single spaces, nothing else.
    private static func requestLine(
        _ line: UnsafeRawBufferPointer
    ) throws -> (method: HTTPMethod, target: Range<Int>, minor: Int) {
        let bad = HTTPMessageError(description: "invalid request line")
        var index = 0
        while index < line.count, HTTP1Syntax.isTokenByte(line[index]) { index += 1 }
        guard index > 0, index < line.count, line[index] == UInt8(ascii: " ") else { throw bad }
        let method = Self.method(UnsafeRawBufferPointer(rebasing: line[..<index]))
        let targetStart = index + 1
        index = targetStart
        while index < line.count, line[index] > 0x20, line[index] < 0x7F { index += 1 }
        guard index > targetStart, line.count - index == 9, line[index] == UInt8(ascii: " ") else { throw bad }
        let version = UnsafeRawBufferPointer(rebasing: line[(index + 1)...])
        // Only HTTP/1.x is HTTP/1 (an HTTP/2 preface is malformed here); which 1.x is `RequestValidation`'s call.
        guard HTTP1Syntax.startsWithHTTP1(version), let digit = version.last, digit >= UInt8(ascii: "0"),
            digit <= UInt8(ascii: "9")
        else { throw bad }
        return (method, targetStart..<index, Int(digit - UInt8(ascii: "0")))
    }

    /// The common methods are matched as bytes; `HTTPMethod(rawValue:)` makes a `String` and compares it with every
    /// name it knows in turn.
    static func method(_ name: UnsafeRawBufferPointer) -> HTTPMethod {
        switch name.count {
        case 3 where name.equals("GET"): .GET
        case 3 where name.equals("PUT"): .PUT
        case 4 where name.equals("POST"): .POST
        case 4 where name.equals("HEAD"): .HEAD
        case 5 where name.equals("PATCH"): .PATCH
        case 6 where name.equals("DELETE"): .DELETE
        default: HTTPMethod(rawValue: String(decoding: name, as: UTF8.self))
        }
    }

    /// The trailer lines of a chunked body (already checked), as headers.
    private static func headers(_ lines: ByteBuffer) throws -> HTTPHeaders {
        var block = lines
        block.writeStaticString("\r\n")
        var headers: [(String, String)] = []
        _ = try HTTP1Syntax.fields(of: block, from: 0, maximumCount: .max) { _, name, value in
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return HTTPHeaders(headers)
    }
}

extension ClientRequestHead {
    /// One field line, as the parser checks it: the facts `RequestValidation`, `RequestTarget` and the upstream
    /// encoder need, and whether the line is dropped on the way upstream.
    fileprivate func add(line: Range<Int>, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        // Most names are ruled out by their length alone.
        switch name.count {
        case 4 where name.equalsIgnoringASCIICase("host"):
            self.hostCount += 1
            if self.host == nil {
                // The value's offset in the block: the line's, plus how far into the line the value starts.
                let start = self.fields.lowerBound + line.lowerBound + (value.baseAddress! - name.baseAddress!)
                self.host = start..<(start + value.count)
            }
            self.dropped.append(line)  // the upstream gets its own name
            return
        case 14 where name.equalsIgnoringASCIICase("content-length"):
            self.framing.add(name: name, value: value)
            self.dropped.append(line)  // the encoder writes one canonical line
            return
        case 10 where name.equalsIgnoringASCIICase("connection"):
            let said = self.hopByHop.listConnection(value)
            if said.close { self.connectionClose = true }
            if said.keepAlive { self.connectionKeepAlive = true }
        default:
            self.framing.add(name: name, value: value)
        }
        if HeaderSanitizer.isHopByHop(name) { self.dropped.append(line) }
    }
}
