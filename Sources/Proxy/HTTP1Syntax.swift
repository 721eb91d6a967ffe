import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why an HTTP/1.1 message could not be parsed. From an upstream: its connection is closed and the client gets a 502.
/// From a client: a 400 (431 when `tooLarge`), and the client connection is closed.
struct HTTPMessageError: Error, CustomStringConvertible {
    var description: String
    /// The head or its field count is over the limit, as opposed to malformed.
    var tooLarge = false
}

/// Method checks as tag tests. `==` on `HTTPMethod` resolves to the standard library's overload for
/// `RawRepresentable`, which builds both methods' names and compares the strings: it showed up on every request.
extension HTTPMethod {
    var isHEAD: Bool {
        if case .HEAD = self { return true }
        return false
    }

    /// The methods a client may send twice with the effect of once (RFC 9110, 9.2.2): the only requests the proxy
    /// sends again by itself when a reused upstream connection turns out closed. A `POST` the upstream may have
    /// processed before closing is never repeated: the client gets a 502 and decides.
    var isIdempotent: Bool {
        switch self {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        default: return false
        }
    }

    /// The methods whose requests servers expect to carry a body (`content-length: 0` is sent when they have none).
    var expectsBody: Bool {
        switch self {
        case .POST, .PUT, .PATCH: return true
        default: return false
        }
    }
}

/// The byte-level rules both of the proxy's HTTP/1.1 parsers follow (client requests, upstream responses; RFC 9112).
///
/// Strict on purpose, in both directions: a proxy and the server behind it must agree on where each message ends,
/// so anything that could leave that in doubt (a bare LF, obsolete line folding, a control byte in a field) is an
/// error, never a guess.
enum HTTP1Syntax {
    /// RFC 9110 token characters (`!#$%&'*+-.^_`|~`, digits, letters), as a bit per byte value below 128: one shift
    /// and test per byte of every header name.
    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool {
        let below64: UInt64 = 0x03FF_6CFA_0000_0000
        let from64: UInt64 = 0x57FF_FFFF_C7FF_FFFE
        return byte < 64 ? (below64 >> byte) & 1 == 1 : byte < 128 && (from64 >> (byte &- 64)) & 1 == 1
    }

    /// Whether `bytes` starts with `HTTP/1.`: one `memcmp`, where `starts(with: "HTTP/1.".utf8)` walked a
    /// `String.UTF8View` for about 300 instructions on every request and response line.
    static func startsWithHTTP1(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let prefix: StaticString = "HTTP/1."
        return bytes.count >= prefix.utf8CodeUnitCount
            && prefix.withUTF8Buffer { memcmp(bytes.baseAddress!, $0.baseAddress!, $0.count) == 0 }
    }

    /// Visible characters, space, tab and obs-text: no CR, LF, NUL or other control bytes.
    @inline(__always)
    static func isValueByte(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\t") || (byte >= 0x20 && byte != 0x7F)
    }

    /// The field lines of `block` from `start` up to (not including) its blank line, each checked in one pass: a
    /// token name, a colon, a value of visible characters, spaces and tabs (no folding, no control bytes), CRLF.
    /// `visit` gets each line's range, its name and its value without surrounding spaces (offsets into the result).
    static func fields(
        of block: ByteBuffer,
        from start: Int,
        maximumCount: Int,
        _ visit: (Range<Int>, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws -> ByteBuffer {
        let end = try block.withUnsafeReadableBytes { bytes in
            var index = start
            var count = 0
            while index < bytes.count, bytes[index] != 0x0D {
                count += 1
                guard count <= maximumCount else {
                    throw HTTPMessageError(description: "more than \(maximumCount) header fields", tooLarge: true)
                }
                let lineStart = index
                index = Self.tokenEnd(bytes, from: index)
                guard index > lineStart, index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                    throw Self.invalidLine(bytes, at: index)
                }
                let colon = index
                index += 1
                index = Self.valueEnd(bytes, from: index)
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

    /// The index of the first byte at or after `start` that is not a token byte. Eight bytes are taken at a time
    /// while they are letters and hyphens, which is what field names are made of; the first other byte (most often
    /// the colon) and whatever follows it are looked at one by one.
    static func tokenEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let low7: UInt64 = ones &* 0x7F
            while index + 8 <= bytes.count {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                // Per byte, no carry crosses into the next: `| 0x20` folds A-Z onto a-z, and adding 0x1F and 0x05
                // to the low seven bits sets the high bit from 0x61 and from 0x7B. Bytes from 0x80 never count.
                let folded = (word | ones &* 0x20) & low7
                let letters = (folded &+ ones &* 0x1F) & ~(folded &+ ones &* 0x05) & ~word
                // A byte equal to `-` is zero after the xor; the high bit of the sum is clear only for zero.
                let dash = word ^ (ones &* UInt64(UInt8(ascii: "-")))
                let dashes = ~(((dash & low7) &+ low7) | dash)
                let others = ~(letters | dashes) & ~low7
                guard others == 0 else {
                    index += others.trailingZeroBitCount >> 3
                    break
                }
                index += 8
            }
        }
        while index < bytes.count, Self.isTokenByte(bytes[index]) { index += 1 }
        return index
    }

    /// The index of the first byte at or after `start` that cannot be part of a field value (the CR that should
    /// end it), found eight bytes at a time: values are most of a head's bytes.
    static func valueEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highBits: UInt64 = 0x8080_8080_8080_8080
            while index + 8 <= bytes.count {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                // The high bit of each byte below 0x20 (bytes from 0x80, obs-text, never count), and of each DEL
                // (zero after xor with 0x7F). A borrow can also mark a byte above a marked one, never below: the
                // lowest mark is the first control byte.
                let delete = word ^ (ones &* 0x7F)
                let marks = ((word &- ones &* 0x20) & ~word | (delete &- ones) & ~delete) & highBits
                guard marks != 0 else {
                    index += 8
                    continue
                }
                index += marks.trailingZeroBitCount >> 3
                // A tab is the one control byte a value may hold.
                guard bytes[index] == UInt8(ascii: "\t") else { return index }
                index += 1
            }
        }
        while index < bytes.count, Self.isValueByte(bytes[index]) { index += 1 }
        return index
    }

    private static func invalidLine(_ bytes: UnsafeRawBufferPointer, at index: Int) -> HTTPMessageError {
        let bareLF = index < bytes.count && bytes[index] == 0x0A
        return HTTPMessageError(description: bareLF ? "a line ends in LF without CR" : "invalid header field")
    }

    /// The index of the CRLF that ends the line starting at `from`, or nil when the line is not complete or ends
    /// in a bare LF.
    static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let lf = Self.firstLF(bytes, from: from), lf > 0, bytes[lf - 1] == 0x0D else { return nil }
        return lf - 1
    }

    /// The index of the first LF at or after `from` (libc's `memchr`, which compares many bytes at a time).
    static func firstLF(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard from < bytes.count, let base = bytes.baseAddress,
            let found = memchr(base + from, 0x0A, bytes.count - from)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// Throws if a line feed at or after `start` lacks its carriage return. An incomplete head is checked again as
    /// more of it arrives: only from where the last check stopped, so a head trickled in byte by byte costs linear
    /// time, not quadratic.
    static func checkNoBareLF(_ buffer: ByteBuffer, from start: Int = 0) throws {
        let bare = buffer.withUnsafeReadableBytes { bytes in
            var index = start
            while let lf = HTTP1Syntax.firstLF(bytes, from: index) {
                if lf == 0 || bytes[lf - 1] != 0x0D { return true }
                index = lf + 1
            }
            return false
        }
        if bare { throw HTTPMessageError(description: "a line ends in LF without CR") }
    }

    /// Up to 18 decimal digits, nothing else.
    static func decimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}

/// Cuts a head or a trailer section off the front of the input: everything up to and including its blank line.
struct HTTP1BlockReader {
    /// Where the search for the blank line resumes (the bytes before it were searched already).
    private var searched = 0

    /// The block, or nil when it is not complete yet (then the bytes so far must stay under `maximumBytes`). A
    /// trailer section may be the blank line alone.
    mutating func read(_ buffer: inout ByteBuffer, trailers: Bool, maximumBytes: Int) throws -> ByteBuffer? {
        let searchFrom = self.searched
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            if trailers, bytes.count >= 2, bytes[0] == 0x0D, bytes[1] == 0x0A { return 2 }
            var index = max(0, searchFrom - 3)
            while let lf = HTTP1Syntax.firstLF(bytes, from: index) {
                if lf >= 3, bytes[lf - 1] == 0x0D, bytes[lf - 2] == 0x0A, bytes[lf - 3] == 0x0D { return lf + 1 }
                index = lf + 1
            }
            return nil
        }
        if let end {
            guard end <= maximumBytes else { throw Self.tooLarge(maximumBytes) }
            self.searched = 0
            return buffer.readSlice(length: end)!
        }
        try HTTP1Syntax.checkNoBareLF(buffer, from: searchFrom)
        self.searched = buffer.readableBytes
        guard buffer.readableBytes <= maximumBytes else { throw Self.tooLarge(maximumBytes) }
        return nil
    }

    private static func tooLarge(_ maximumBytes: Int) -> HTTPMessageError {
        HTTPMessageError(description: "the head is larger than \(maximumBytes) bytes", tooLarge: true)
    }
}

/// A message body framed by Content-Length or by chunked encoding. Its bytes are handed out as slices of what was
/// read (no copy); chunk sizes, extensions and trailers are checked as strictly as heads.
struct HTTP1BodyReader {
    private enum State {
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
    }

    /// What `next` found.
    enum Piece {
        /// Bytes of the body (a slice of the input, not a copy).
        case body(ByteBuffer)
        /// The body is complete; the trailer lines (each ending in CRLF) of a chunked body, if it had any.
        case ended(trailers: ByteBuffer?)
        /// Nothing more until more input arrives.
        case needMore
    }

    private var state: State
    private var trailerBlock = HTTP1BlockReader()
    private let maximumTrailerBytes: Int
    /// The head's hop-by-hop fields: the ones its `Connection` header names are dropped from the trailers too (RFC
    /// 9110, 7.6.1: "header or trailer fields").
    private let hopByHop: HeaderSanitizer.HopByHop

    /// A body of `length` bytes; nil when that is none. Only a chunked body has trailers.
    init?(length: Int) {
        guard length > 0 else { return nil }
        self.state = .fixed(remaining: length)
        self.maximumTrailerBytes = 0
        self.hopByHop = HeaderSanitizer.HopByHop()
    }

    /// A chunked body of a message whose head has the given hop-by-hop fields.
    init(chunkedWithMaximumTrailerBytes maximumTrailerBytes: Int, hopByHop: HeaderSanitizer.HopByHop) {
        self.state = .chunkSize
        self.maximumTrailerBytes = maximumTrailerBytes
        self.hopByHop = hopByHop
    }

    /// The next piece of the body from `buffer`: called until it needs more input or the body has ended.
    mutating func next(_ buffer: inout ByteBuffer) throws -> Piece {
        while true {
            switch self.state {
            case .fixed(let remaining):
                if remaining == 0 { return .ended(trailers: nil) }
                guard buffer.readableBytes > 0 else { return .needMore }
                let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                self.state = .fixed(remaining: remaining - slice.readableBytes)
                return .body(slice)
            case .chunkSize:
                guard let size = try Self.readChunkSize(&buffer) else { return .needMore }
                self.state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return .needMore }
                let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                let left = remaining - slice.readableBytes
                self.state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                return .body(slice)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return .needMore }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw HTTPMessageError(description: "a chunk is not followed by CRLF")
                }
                self.state = .chunkSize
            case .trailers:
                let maximum = self.maximumTrailerBytes
                guard let block = try self.trailerBlock.read(&buffer, trailers: true, maximumBytes: maximum) else {
                    return .needMore
                }
                var forbidden: [Range<Int>] = []
                let hopByHop = self.hopByHop
                var lines = try HTTP1Syntax.fields(of: block, from: 0, maximumCount: 1024) { line, name, _ in
                    if HeaderSanitizer.isForbiddenInTrailers(name) || hopByHop.drops(name) { forbidden.append(line) }
                }
                if !forbidden.isEmpty { lines = Self.removing(forbidden, from: lines) }
                return .ended(trailers: lines.readableBytes > 0 ? lines : nil)
            }
        }
    }

    /// `lines` without the given line ranges (ascending, relative to its reader index).
    private static func removing(_ ranges: [Range<Int>], from lines: ByteBuffer) -> ByteBuffer {
        var kept = ByteBuffer()
        var start = 0
        for range in ranges {
            kept.writeImmutableBuffer(lines.getSlice(at: lines.readerIndex + start, length: range.lowerBound - start)!)
            start = range.upperBound
        }
        kept.writeImmutableBuffer(lines.getSlice(at: lines.readerIndex + start, length: lines.readableBytes - start)!)
        return kept
    }

    /// A chunk-size line (hex digits, then an optional extension, which is ignored), or nil when it is not complete.
    private static func readChunkSize(_ buffer: inout ByteBuffer) throws -> Int? {
        let end = buffer.withUnsafeReadableBytes { HTTP1Syntax.lineEnd($0, from: 0) }
        guard let end else {
            try HTTP1Syntax.checkNoBareLF(buffer)
            guard buffer.readableBytes <= 1024 else {
                throw HTTPMessageError(description: "a chunk size line is too long")
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
        let bad = HTTPMessageError(description: "invalid chunk size")
        var size = 0
        var digits = 0
        for byte in line {
            let value: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
            case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                guard digits > 0, line.allSatisfy(HTTP1Syntax.isValueByte) else { throw bad }
                return size
            default:
                throw bad
            }
            digits += 1
            guard digits <= 15 else { throw HTTPMessageError(description: "chunk size too large") }
            size = size << 4 | value
        }
        guard digits > 0 else { throw bad }
        return size
    }
}
