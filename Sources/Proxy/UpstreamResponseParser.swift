import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why an upstream's response could not be parsed. The connection is closed and the client gets a 502.
struct UpstreamResponseError: Error, CustomStringConvertible {
    var description: String
}

/// A response head as the upstream sent it. The header lines stay bytes (validated, passed to the client as they
/// came): building a `String` for every name and value is what made parsing cost more than relaying.
struct UpstreamResponseHead {
    var version: HTTPVersion
    var code: Int
    /// The reason phrase, as sent (may be empty).
    var reason: ByteBuffer
    /// The header lines, each ending in CRLF, without the blank line.
    var fields: ByteBuffer
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    var keepAlive: Bool
    var hasContentLength: Bool
    /// The fixed hop-by-hop names plus what the `Connection` header lists besides `close` and `keep-alive`.
    var hopByHop = HeaderSanitizer.HopByHop()
    /// The lines of `fields` the client must not get, as found while parsing.
    var dropped = DroppedLines()

    /// 1xx, 204 and 304 responses never have a body.
    var mayHaveBody: Bool { HTTPResponseStatus(statusCode: self.code).mayHaveResponseBody }
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
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
    }

    private var state = State.head
    /// Where the search for the end of a head resumes (the bytes before it were searched already).
    private var searched = 0

    /// Consumes what it can of `buffer`, emitting each part as soon as it is complete. `nextMethod` gives the method
    /// of the request a final response answers (a response to `HEAD` has no body), nil if none is outstanding.
    mutating func parse(
        _ buffer: inout ByteBuffer,
        nextMethod: () -> HTTPMethod?,
        emit: (UpstreamResponsePart) -> Void
    ) throws {
        while buffer.readableBytes > 0 {
            switch self.state {
            case .head:
                guard let block = try self.readBlock(&buffer, trailers: false) else { return }
                guard let (head, framing) = try Self.head(block) else { continue }  // an interim 1xx response
                guard let method = nextMethod() else {
                    throw UpstreamResponseError(description: "a response arrived with no request outstanding")
                }
                let body = Self.bodyState(framing, head: head, answeringHEAD: method == .HEAD)
                emit(.head(head))
                if let body {
                    self.state = body
                } else {
                    emit(.end(trailers: nil))
                }
            case .fixed(let remaining):
                let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                emit(.body(slice))
                if remaining == slice.readableBytes {
                    self.state = .head
                    emit(.end(trailers: nil))
                } else {
                    self.state = .fixed(remaining: remaining - slice.readableBytes)
                }
            case .chunkSize:
                guard let size = try Self.readChunkSize(&buffer) else { return }
                self.state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                emit(.body(slice))
                let left = remaining - slice.readableBytes
                self.state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw UpstreamResponseError(description: "a chunk is not followed by CRLF")
                }
                self.state = .chunkSize
            case .trailers:
                guard let block = try self.readBlock(&buffer, trailers: true) else { return }
                let lines = try Self.fields(of: block, from: 0) { _, _, _ in }
                self.state = .head
                emit(.end(trailers: lines.readableBytes > 0 ? lines : nil))
            case .untilClose:
                emit(.body(buffer.readSlice(length: buffer.readableBytes)!))
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
            throw UpstreamResponseError(description: "the upstream closed the connection in the middle of a response")
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
        let lineEnd = block.withUnsafeReadableBytes { Self.lineEnd($0, from: 0) }
        guard let lineEnd, lineEnd >= 12 else { throw UpstreamResponseError(description: "invalid status line") }
        let (minor, code) = try block.withUnsafeReadableBytes {
            try Self.statusLine(UnsafeRawBufferPointer(rebasing: $0[..<lineEnd]))
        }
        if (100..<200).contains(code) {
            guard code != 101 else {
                throw UpstreamResponseError(description: "the upstream switched protocols unasked")
            }
            _ = try Self.fields(of: block, from: lineEnd + 2) { _, _, _ in }
            return nil
        }
        var summary = FieldSummary(mayHaveBody: HTTPResponseStatus(statusCode: code).mayHaveResponseBody)
        let fields = try Self.fields(of: block, from: lineEnd + 2) { line, name, value in
            try summary.add(line: line, name: name, value: value)
        }
        if !summary.hopByHop.isEmptyOfNamed { summary.dropped.giveUp() }
        if summary.chunked, summary.length != nil {
            throw UpstreamResponseError(description: "both Content-Length and Transfer-Encoding")
        }
        let reason = lineEnd > 13 ? block.getSlice(at: block.readerIndex + 13, length: lineEnd - 13)! : ByteBuffer()
        let head = UpstreamResponseHead(
            version: HTTPVersion(major: 1, minor: minor),
            code: code,
            reason: reason,
            fields: fields,
            keepAlive: !summary.close && (minor == 1 || summary.keepAlive),
            hasContentLength: summary.length != nil,
            hopByHop: summary.hopByHop,
            dropped: summary.dropped
        )
        let framing: Framing = summary.chunked ? .chunked : summary.length.map { .length($0) } ?? .unspecified
        return (head, framing)
    }

    /// `HTTP/1.x NNN reason` (the reason may be empty, and then its space may be missing).
    private static func statusLine(_ line: UnsafeRawBufferPointer) throws -> (minor: Int, code: Int) {
        let bad = UpstreamResponseError(description: "invalid status line")
        guard line.starts(with: "HTTP/1.".utf8), line[8] == UInt8(ascii: " ") else { throw bad }
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
            guard line[12] == UInt8(ascii: " "), line[13...].allSatisfy(Self.isValueByte) else { throw bad }
        }
        return (minor, code)
    }

    /// The field lines of `block` from `start` up to (not including) its blank line, each checked in one pass: a
    /// token name, a colon, a value of visible characters, spaces and tabs (no folding, no control bytes), CRLF.
    /// `visit` gets each line's range, its name and its value without surrounding spaces (offsets into the result).
    private static func fields(
        of block: ByteBuffer,
        from start: Int,
        _ visit: (Range<Int>, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws -> ByteBuffer {
        let end = try block.withUnsafeReadableBytes { bytes in
            var index = start
            var count = 0
            while index < bytes.count, bytes[index] != 0x0D {
                count += 1
                guard count <= Self.maximumHeaderCount else {
                    throw UpstreamResponseError(description: "too many header fields")
                }
                let lineStart = index
                while index < bytes.count, Self.isTokenByte(bytes[index]) { index += 1 }
                guard index > lineStart, index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                    throw Self.invalidLine(bytes, at: index)
                }
                let colon = index
                index += 1
                while index < bytes.count, Self.isValueByte(bytes[index]) { index += 1 }
                guard index + 1 < bytes.count, bytes[index] == 0x0D, bytes[index + 1] == 0x0A else {
                    throw Self.invalidLine(bytes, at: index)
                }
                var low = colon + 1
                var high = index
                while low < high, bytes[low] == UInt8(ascii: " ") || bytes[low] == UInt8(ascii: "\t") { low += 1 }
                while high > low, bytes[high - 1] == UInt8(ascii: " ") || bytes[high - 1] == UInt8(ascii: "\t") {
                    high -= 1
                }
                index += 2
                try visit(
                    (lineStart - start)..<(index - start),
                    UnsafeRawBufferPointer(rebasing: bytes[lineStart..<colon]),
                    UnsafeRawBufferPointer(rebasing: bytes[low..<high])
                )
            }
            // Only the blank line may be left.
            guard index + 2 == bytes.count, bytes[index] == 0x0D, bytes[index + 1] == 0x0A else {
                throw Self.invalidLine(bytes, at: index)
            }
            return index
        }
        return block.getSlice(at: block.readerIndex + start, length: end - start)!
    }

    private static func invalidLine(_ bytes: UnsafeRawBufferPointer, at index: Int) -> UpstreamResponseError {
        let bareLF = index < bytes.count && bytes[index] == 0x0A
        return UpstreamResponseError(description: bareLF ? "a line ends in LF without CR" : "invalid header field")
    }
    /// What the body after `head` is, or nil when there is none.
    private static func bodyState(_ framing: Framing, head: UpstreamResponseHead, answeringHEAD: Bool) -> State? {
        if answeringHEAD || !head.mayHaveBody { return nil }
        switch framing {
        case .chunked: return .chunkSize
        case .length(let length): return length == 0 ? nil : .fixed(remaining: length)
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
                    throw UpstreamResponseError(description: "unsupported Transfer-Encoding")
                }
                self.chunked = true
            case 14 where name.equalsIgnoringASCIICase("content-length"):
                guard let parsed = UpstreamResponseParser.decimal(value), self.length == nil || self.length == parsed
                else {
                    throw UpstreamResponseError(description: "invalid or conflicting Content-Length")
                }
                self.length = parsed
                // A response that cannot have a body is sent without Content-Length (as NIO's encoder does).
                if !self.mayHaveBody { self.dropped.append(line) }
                return
            case 10 where name.equalsIgnoringASCIICase("connection"):
                HeaderSanitizer.forEachToken(value) { token in
                    if token.equalsIgnoringASCIICase("close") {
                        self.close = true
                    } else if token.equalsIgnoringASCIICase("keep-alive") {
                        self.keepAlive = true
                    } else {
                        self.hopByHop.list(token)
                    }
                }
            default:
                break
            }
            if HeaderSanitizer.isHopByHop(name) { self.dropped.append(line) }
        }
    }
    /// Reads a head or trailer block up to and including its blank line (CRLF CRLF), or nil when it is not complete
    /// yet. A trailer section may be the blank line alone.
    private mutating func readBlock(_ buffer: inout ByteBuffer, trailers: Bool) throws -> ByteBuffer? {
        let searchFrom = self.searched
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            if trailers, bytes.count >= 2, bytes[0] == 0x0D, bytes[1] == 0x0A { return 2 }
            var index = max(0, searchFrom - 3)
            while let lf = Self.firstLF(bytes, from: index) {
                if lf >= 3, bytes[lf - 1] == 0x0D, bytes[lf - 2] == 0x0A, bytes[lf - 3] == 0x0D { return lf + 1 }
                index = lf + 1
            }
            return nil
        }
        if let end {
            self.searched = 0
            return buffer.readSlice(length: end)!
        }
        try Self.checkNoBareLF(buffer)
        self.searched = buffer.readableBytes
        guard buffer.readableBytes <= Self.maximumHeadBytes else {
            throw UpstreamResponseError(description: "the response head is larger than \(Self.maximumHeadBytes) bytes")
        }
        return nil
    }

    /// A chunk-size line (hex digits, then an optional extension, which is ignored), or nil when it is not complete.
    private static func readChunkSize(_ buffer: inout ByteBuffer) throws -> Int? {
        let end = buffer.withUnsafeReadableBytes { Self.lineEnd($0, from: 0) }
        guard let end else {
            try Self.checkNoBareLF(buffer)
            guard buffer.readableBytes <= 1024 else {
                throw UpstreamResponseError(description: "a chunk size line is too long")
            }
            return nil
        }
        let size = try buffer.withUnsafeReadableBytes { bytes in
            try Self.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
        }
        buffer.moveReaderIndex(forwardBy: end + 2)
        return size
    }

    private static func chunkSize(_ line: UnsafeRawBufferPointer) throws -> Int {
        let bad = UpstreamResponseError(description: "invalid chunk size")
        var size = 0
        var digits = 0
        for byte in line {
            let value: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
            case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                guard digits > 0, line.allSatisfy(Self.isValueByte) else { throw bad }
                return size
            default:
                throw bad
            }
            digits += 1
            guard digits <= 15 else { throw UpstreamResponseError(description: "chunk size too large") }
            size = size << 4 | value
        }
        guard digits > 0 else { throw bad }
        return size
    }

    /// The index of the CRLF that ends the line starting at `from`, or nil when the line is not complete or ends
    /// in a bare LF.
    private static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let lf = Self.firstLF(bytes, from: from), lf > 0, bytes[lf - 1] == 0x0D else { return nil }
        return lf - 1
    }

    /// The index of the first LF at or after `from` (libc's `memchr`, which compares many bytes at a time).
    private static func firstLF(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard from < bytes.count, let base = bytes.baseAddress,
            let found = memchr(base + from, 0x0A, bytes.count - from)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    private static func checkNoBareLF(_ buffer: ByteBuffer) throws {
        let bare = buffer.withUnsafeReadableBytes { bytes in
            bytes.indices.contains { bytes[$0] == 0x0A && ($0 == 0 || bytes[$0 - 1] != 0x0D) }
        }
        if bare { throw UpstreamResponseError(description: "a line ends in LF without CR") }
    }

    /// Up to 18 decimal digits, nothing else.
    private static func decimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// Visible characters, space, tab and obs-text: no CR, LF, NUL or other control bytes.
    static func isValueByte(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\t") || (byte >= 0x20 && byte != 0x7F)
    }

    /// RFC 9110 token characters (`!#$%&'*+-.^_`|~`, digits, letters), as a bit per byte value below 128: one shift
    /// and test per byte of every header name an upstream sends.
    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool {
        let below64: UInt64 = 0x03FF_6CFA_0000_0000
        let from64: UInt64 = 0x57FF_FFFF_C7FF_FFFE
        return byte < 64 ? (below64 >> byte) & 1 == 1 : byte < 128 && (from64 >> (byte &- 64)) & 1 == 1
    }
}
