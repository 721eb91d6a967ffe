import JSONScanning
import NIOCore
import NIOHTTP1

/// Writes the responses the proxy sends its clients in HTTP/1.1 wire format, straight into a byte buffer.
///
/// It replaces NIO's `HTTPResponseEncoder` on the client side: that encoder needs a sanitized copy of the upstream's
/// headers (rebuilt without the hop-by-hop ones) and costs a handler hop and a separate write per part. Here the
/// hop-by-hop headers are skipped while the head is written, and a small response (head, body, end) leaves as one
/// buffer. Framing follows NIO's encoder: no `Content-Length` on a response that cannot have a body; the upstream's
/// `Content-Length` when there is one; otherwise chunked for an HTTP/1.1 client and close-delimited for HTTP/1.0;
/// and no body bytes at all for a response to `HEAD`.
struct ClientResponseEncoder {
    /// Body parts are framed as chunks.
    private(set) var chunked = false
    /// The response answers a `HEAD` request: framing headers are kept, body bytes are not sent.
    private(set) var suppressBody = false

    /// The upstream's head for the client: its header lines copied as they came, minus the hop-by-hop ones.
    mutating func writeHead(
        _ head: UpstreamResponseHead,
        version: HTTPVersion,
        close: Bool,
        answeringHEAD: Bool,
        into buffer: inout ByteBuffer
    ) {
        let mayHaveBody = head.mayHaveBody
        self.suppressBody = answeringHEAD
        var chunked = false
        let bound = 128 + head.reason.readableBytes + head.fields.readableBytes
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { memory in
            var out = RawWriter(memory)
            out.write(version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            out.writeCode(head.code)
            head.reason.withUnsafeReadableBytes { out.write($0) }
            out.write("\r\n")
            head.fields.withUnsafeReadableBytes { fields in
                out.writeFields(fields, dropping: head.dropped) { name in
                    // Content-Length is written below, as one line.
                    head.hopByHop.drops(name) || HeaderSanitizer.isContentLength(name)
                }
            }
            if mayHaveBody, let length = head.contentLength {
                out.write("content-length: ")
                out.appendDecimal(length)
                out.write("\r\n")
            }
            if close {
                out.write("connection: close\r\n")
            } else if version.minor == 0 {
                out.write("connection: keep-alive\r\n")
            }
            if mayHaveBody, !head.hasContentLength, version.minor >= 1 {
                out.write("transfer-encoding: chunked\r\n")
                chunked = !answeringHEAD
            }
            out.write("\r\n")
            return out.written
        }
        self.chunked = chunked
    }

    /// A response of the proxy's own (a refusal, `100 Continue`): the given headers only, no hop-by-hop filtering.
    static func writeOwnHead(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.maximumHeadLength(head)) { memory in
            var out = RawWriter(memory)
            out.write(head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            out.writeStatus(head.status)
            for (name, value) in head.headers { out.writeHeader(name, value) }
            out.write("\r\n")
            return out.written
        }
    }

    /// An upper bound of the head's length: its status line and headers, plus the framing headers that may be added.
    private static func maximumHeadLength(_ head: HTTPResponseHead) -> Int {
        var length = 128 + head.status.reasonPhrase.utf8.count
        for (name, value) in head.headers { length += name.utf8.count + value.utf8.count + 4 }
        return length
    }

    /// What goes in front of a body part of `length` bytes (nothing unless chunked).
    func writeBodyPrefix(length: Int, into buffer: inout ByteBuffer) {
        if self.chunked { ChunkedFraming.writePrefix(length: length, into: &buffer) }
    }

    /// What goes after a body part of `length` bytes.
    func writeBodySuffix(length: Int, into buffer: inout ByteBuffer) {
        if self.chunked { ChunkedFraming.writeSuffix(length: length, into: &buffer) }
    }

    /// The end of the body: the last chunk and the upstream's trailer lines when chunked, nothing otherwise.
    func writeEnd(trailers: ByteBuffer?, into buffer: inout ByteBuffer) {
        guard self.chunked else { return }
        buffer.writeStaticString("0\r\n")
        if let trailers { buffer.writeImmutableBuffer(trailers) }
        buffer.writeStaticString("\r\n")
    }
}

/// Writes requests to an upstream in HTTP/1.1 wire format, sanitized on the way: hop-by-hop headers dropped, `Host`
/// set to the upstream, HTTP/1.1 whatever the client spoke.
///
/// The body is framed the way the client framed it (after `RequestValidation` accepted that framing): chunked stays
/// chunked, `Content-Length` stays, and a `POST`/`PUT`/`PATCH` without a body says `content-length: 0` (servers may
/// answer 411 otherwise). Framing by the client's own headers, never by the method, is what keeps a chunked body of
/// a `GET` or `DELETE` from reaching the upstream unframed, where its bytes would read as a second request.
struct UpstreamRequestEncoder {
    /// The `Host` value: the upstream name, with the port unless it is 443.
    let host: String
    private(set) var chunked = false

    init(host: String, port: Int) {
        self.host = port == 443 ? host : "\(host):\(port)"
    }

    /// The client's request line (its target replaced when it was absolute-form) and field lines, as they came,
    /// minus the ones the parser noted to drop.
    mutating func writeHead(_ head: ClientRequestHead, into buffer: inout ByteBuffer) {
        let chunked = head.framing.transferEncoding  // validated: exactly `chunked`, and no Content-Length with it
        let targetCount = head.upstreamTarget?.utf8.count ?? head.target.count
        let bound = 96 + head.target.lowerBound + targetCount + self.host.utf8.count + head.fields.count
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { memory in
            var out = RawWriter(memory)
            head.block.withUnsafeReadableBytes { block in
                if let upstreamTarget = head.upstreamTarget {
                    out.write(UnsafeRawBufferPointer(rebasing: block[..<head.target.lowerBound]))
                    out.write(upstreamTarget)
                } else {
                    out.write(UnsafeRawBufferPointer(rebasing: block[..<head.target.upperBound]))
                }
                out.write(" HTTP/1.1\r\nhost: ")
                out.write(self.host)
                out.write("\r\n")
                out.writeFields(UnsafeRawBufferPointer(rebasing: block[head.fields]), dropping: head.dropped) { name in
                    head.hopByHop.drops(name) || (name.count == 4 && name.equalsIgnoringASCIICase("host"))
                        || HeaderSanitizer.isContentLength(name)
                }
            }
            if chunked {
                out.write("transfer-encoding: chunked\r\n")
            } else if case .value(let length) = head.framing.contentLength {
                // One canonical line for the length the proxy frames the body by: the client's duplicates or list
                // (`5, 5`), which servers read in different ways, never reach the upstream (RFC 9112, 6.3).
                out.write("content-length: ")
                out.appendDecimal(length)
                out.write("\r\n")
            } else if head.method.expectsBody {
                out.write("content-length: 0\r\n")
            }
            out.write("\r\n")
            return out.written
        }
        self.chunked = chunked
    }

    func writeBodyPrefix(length: Int, into buffer: inout ByteBuffer) {
        if self.chunked { ChunkedFraming.writePrefix(length: length, into: &buffer) }
    }

    func writeBodySuffix(length: Int, into buffer: inout ByteBuffer) {
        if self.chunked { ChunkedFraming.writeSuffix(length: length, into: &buffer) }
    }

    func writeEnd(trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        if self.chunked { ChunkedFraming.writeLast(trailers: trailers, into: &buffer) }
    }
}

/// Chunked transfer coding (RFC 9112 §7.1). Empty parts are not framed: an empty chunk would end the body.
enum ChunkedFraming {
    static func writePrefix(length: Int, into buffer: inout ByteBuffer) {
        guard length > 0 else { return }
        let digits: StaticString = "0123456789abcdef"
        var shift = (Int.bitWidth - length.leadingZeroBitCount + 3) / 4 * 4
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 18) { memory in
            var out = RawWriter(memory)
            digits.withUTF8Buffer { digits in
                while shift > 0 {
                    shift -= 4
                    out.writeByte(digits[(length >> shift) & 0xF])
                }
            }
            out.write("\r\n")
            return out.written
        }
    }

    static func writeSuffix(length: Int, into buffer: inout ByteBuffer) {
        guard length > 0 else { return }
        buffer.writeStaticString("\r\n")
    }

    /// The last chunk and the trailers.
    static func writeLast(trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        guard let trailers, !trailers.isEmpty else {
            buffer.writeStaticString("0\r\n\r\n")
            return
        }
        var length = 8
        for (name, value) in trailers { length += name.utf8.count + value.utf8.count + 4 }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { memory in
            var out = RawWriter(memory)
            out.write("0\r\n")
            for (name, value) in trailers { out.writeHeader(name, value) }
            out.write("\r\n")
            return out.written
        }
    }
}

/// The buffer a handler wrote last, kept so its next message is written into the same memory: by then NIO has sent
/// it and let it go, so clearing it keeps its storage, and a request allocates no buffer on either connection. Only
/// small ones are kept (at most 2 KiB per connection); one NIO still holds is not written into (`clear` copies).
struct SpareBuffer {
    private var buffer: ByteBuffer?

    mutating func keep(_ buffer: ByteBuffer) {
        self.buffer = buffer.capacity <= 2048 ? buffer : nil
    }

    /// The kept buffer, emptied, or a new one from `allocator` (asked for only then: reaching a channel's allocator
    /// retains and releases the channel).
    mutating func take(_ allocator: @autoclosure () -> ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = self.buffer else { return allocator().buffer(capacity: 512) }
        self.buffer = nil
        buffer.clear()
        return buffer
    }
}

/// Writes into memory sized in advance by its user (a wire-format head, an access log line): one `ByteBuffer`
/// operation for a whole head instead of a bounds and uniqueness check for every piece of it. Writing past the
/// memory is a bug in that bound, and stops the process rather than corrupt memory.
struct RawWriter: JSONOutput {
    private let memory: UnsafeMutableRawBufferPointer
    private(set) var written = 0

    init(_ memory: UnsafeMutableRawBufferPointer) {
        self.memory = memory
    }

    /// Inlined: a literal's length is then a constant, and its copy a few moves instead of a call to `memcpy`.
    @inline(__always)
    mutating func write(_ text: StaticString) {
        self.write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func write(_ text: String) {
        text.withContiguousUTF8 { self.write(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        precondition(self.written + bytes.count <= self.memory.count, "written past the bound computed for it")
        if let source = bytes.baseAddress, let target = self.memory.baseAddress {
            (target + self.written).copyMemory(from: source, byteCount: bytes.count)
        }
        self.written += bytes.count
    }

    mutating func writeByte(_ byte: UInt8) {
        precondition(self.written < self.memory.count, "written past the bound computed for it")
        self.memory[self.written] = byte
        self.written += 1
    }

    mutating func append(_ byte: UInt8) { self.writeByte(byte) }

    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) { self.write(UnsafeRawBufferPointer(bytes)) }

    mutating func writeStatus(_ status: HTTPResponseStatus) {
        self.writeCode(Int(status.code))
        self.write(status.reasonPhrase)
        self.write("\r\n")
    }

    /// Three digits and a space.
    mutating func writeCode(_ code: Int) {
        self.writeByte(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: code / 100 % 10))
        self.writeByte(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: code / 10 % 10))
        self.writeByte(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: code % 10))
        self.writeByte(UInt8(ascii: " "))
    }

    /// Field lines (each ending in CRLF) as they came, minus some: when the parser noted every line to drop, what
    /// lies between them is copied; otherwise each line is checked with `drops` (given its name).
    mutating func writeFields(
        _ fields: UnsafeRawBufferPointer,
        dropping dropped: DroppedLines,
        otherwise drops: (UnsafeRawBufferPointer) -> Bool
    ) {
        if dropped.isComplete {
            var start = 0
            for index in 0..<dropped.count {
                let line = dropped[index]
                self.write(UnsafeRawBufferPointer(rebasing: fields[start..<line.lowerBound]))
                start = line.upperBound
            }
            self.write(UnsafeRawBufferPointer(rebasing: fields[start...]))
            return
        }
        var start = 0
        while start < fields.count {
            let lf = fields[start...].firstIndex(of: 0x0A)!
            let line = UnsafeRawBufferPointer(rebasing: fields[start...lf])
            start = lf + 1
            if !drops(UnsafeRawBufferPointer(rebasing: line[..<line.firstIndex(of: UInt8(ascii: ":"))!])) {
                self.write(line)
            }
        }
    }

    mutating func writeHeader(_ name: String, _ value: String) {
        self.write(name)
        self.write(": ")
        self.write(value)
        self.write("\r\n")
    }
}
