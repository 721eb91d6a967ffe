import NIOCore
import NIOHTTP1

/// Parses the requests of one client connection (HTTP/1.1, RFC 9112) into NIO's request parts, in `ProxyHandler`
/// itself rather than in a decoder handler in front of it: every part that crossed that hop was boxed in `NIOAny`
/// and cast back, and the decoder's machinery around llhttp cost more than the parse.
///
/// Strict, as `HTTP1Syntax` describes: a request line of exactly `method SP target SP HTTP/1.x` (the target
/// visible ASCII), token field names, no folding, no bare LF, no control bytes. The body is framed as
/// `RequestValidation` decides from the head, the same decision `ProxyHandler` acts on, so the parser and the proxy
/// never disagree on where a request ends. A head whose framing is refused with a close (Content-Length with
/// Transfer-Encoding, differing lengths, an unknown coding) is handed on for its refusal and nothing after it is
/// read; one refused without a close (`CONNECT`) has no body and the next request follows. `ProxyHandler` validates
/// the head again rather than receiving the result with it: carrying a `Result` with every head through the part
/// queues measured about 400 instructions per request more than the second call.
struct ClientRequestParser {
    private enum State {
        case head
        case body(HTTP1BodyReader)
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

    /// Consumes what it can of `buffer`, emitting each part as soon as it is complete; what is left is the start
    /// of a head or chunk-size line. Throws `HTTPMessageError` for a request that breaks the syntax.
    mutating func parse(_ buffer: inout ByteBuffer, emit: (HTTPServerRequestPart) -> Void) throws {
        while buffer.readableBytes > 0 {
            switch self.state {
            case .head:
                // Empty lines before a request line are ignored (RFC 9112 §2.2).
                while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                    buffer.moveReaderIndex(forwardBy: 2)
                }
                let maximum = self.maximumHeadBytes
                guard buffer.readableBytes > 0,
                    let block = try self.heads.read(&buffer, trailers: false, maximumBytes: maximum)
                else { return }
                let head = try Self.head(block, maximumHeaderCount: self.maximumHeaderCount)
                emit(.head(head))
                switch RequestValidation.validate(head) {
                case .success(.none):
                    emit(.end(nil))
                case .success(.contentLength(let length)):
                    self.state = HTTP1BodyReader(length: length).map { .body($0) } ?? .head
                case .success(.chunked):
                    self.state = .body(HTTP1BodyReader(chunkedWithMaximumTrailerBytes: maximum))
                case .failure(let refusal):
                    emit(.end(nil))
                    if refusal.closeConnection { self.state = .stopped }
                }
            case .body(var reader):
                switch try reader.read(&buffer, body: { emit(.body($0)) }) {
                case .needMore:
                    self.state = .body(reader)
                    return
                case .ended(let trailers):
                    self.state = .head
                    emit(.end(try trailers.map(Self.headers)))
                }
            case .stopped:
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            }
        }
    }

    /// The request line and fields of a complete head block.
    private static func head(_ block: ByteBuffer, maximumHeaderCount: Int) throws -> HTTPRequestHead {
        let (method, target, minor, fieldsStart) = try block.withUnsafeReadableBytes { bytes in
            guard let lineEnd = HTTP1Syntax.lineEnd(bytes, from: 0) else {
                throw HTTPMessageError(description: "invalid request line")
            }
            let (method, target, minor) = try Self.requestLine(UnsafeRawBufferPointer(rebasing: bytes[..<lineEnd]))
            return (method, target, minor, lineEnd + 2)
        }
        var headers: [(String, String)] = []
        _ = try HTTP1Syntax.fields(of: block, from: fieldsStart, maximumCount: maximumHeaderCount) { _, name, value in
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return HTTPRequestHead(
            version: HTTPVersion(major: 1, minor: minor),
            method: method,
            uri: target,
            headers: HTTPHeaders(headers)
        )
    }

    /// `method SP request-target SP HTTP/1.D`, single spaces, nothing else.
    private static func requestLine(
        _ line: UnsafeRawBufferPointer
    ) throws -> (method: HTTPMethod, target: String, minor: Int) {
        let bad = HTTPMessageError(description: "invalid request line")
        var index = 0
        while index < line.count, HTTP1Syntax.isTokenByte(line[index]) { index += 1 }
        guard index > 0, index < line.count, line[index] == UInt8(ascii: " ") else { throw bad }
        let method = HTTPMethod(
            rawValue: String(decoding: UnsafeRawBufferPointer(rebasing: line[..<index]), as: UTF8.self)
        )
        let targetStart = index + 1
        index = targetStart
        while index < line.count, line[index] > 0x20, line[index] < 0x7F { index += 1 }
        guard index > targetStart, line.count - index == 9, line[index] == UInt8(ascii: " ") else { throw bad }
        let target = String(decoding: UnsafeRawBufferPointer(rebasing: line[targetStart..<index]), as: UTF8.self)
        let version = UnsafeRawBufferPointer(rebasing: line[(index + 1)...])
        // Only HTTP/1.x is HTTP/1 (an HTTP/2 preface is malformed here); which 1.x is `RequestValidation`'s call.
        guard HTTP1Syntax.startsWithHTTP1(version), let digit = version.last, digit >= UInt8(ascii: "0"),
            digit <= UInt8(ascii: "9")
        else { throw bad }
        return (method, target, Int(digit - UInt8(ascii: "0")))
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
