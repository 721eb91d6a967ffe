import Observability

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the proxy's access log goes: one JSON object per request per line, in the same shape as the
/// `JSONLogHandler` lines of the rest of the process (`time`, `level`, `logger`, `message`, then the fields in
/// key order).
///
/// The access log is on the hot path of every request, so it does not go through swift-log: building a metadata
/// dictionary, sorting its keys and rendering each value costs more CPU than relaying a small response.
/// `AccessLogFormatter` writes the line's bytes directly instead.
public struct AccessLog: Sendable {
    let label: String
    let sink: (@Sendable ([UInt8]) -> Void)?

    /// Lines are handed to `sink` as UTF-8 bytes, newline included.
    public init(label: String = "egress-proxy.access", sink: @escaping @Sendable ([UInt8]) -> Void) {
        self.label = label
        self.sink = sink
    }

    private init(disabledWithLabel label: String) {
        self.label = label
        self.sink = nil
    }

    /// The process's buffered standard output, shared with the JSON log handler.
    public static let standardOutput = AccessLog { JSONLogHandler.writeStandardOutput($0) }

    /// No access log (`--access-log=false`).
    public static let disabled = AccessLog(disabledWithLabel: "egress-proxy.access")
}

/// What one access log line says about a request.
struct AccessRecord {
    var client: String
    var method: String
    var host: String?
    var path: String?
    var status: UInt
    var bytesIn: Int
    var bytesOut: Int
    var durationNanoseconds: Int64
    var decision: String
    var reason: String?
    /// Only for allowed requests: whether a pooled upstream connection served it.
    var upstreamReused: Bool?
}

/// Formats access log lines into a reused byte buffer. One per event loop (not thread-safe, never shared): the
/// date-and-time prefix is rendered once per second, everything else is appended byte by byte.
final class AccessLogFormatter {
    private let log: AccessLog
    private var buffer: [UInt8] = []
    private var prefixSecond = -1
    /// `{"time":"2026-11-27T19:18:32.` for `prefixSecond`.
    private var prefix: [UInt8] = []

    init(_ log: AccessLog) {
        self.log = log
        self.buffer.reserveCapacity(512)
    }

    func write(_ record: AccessRecord) {
        guard let sink = self.log.sink else { return }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        if now.tv_sec != self.prefixSecond {
            self.prefixSecond = now.tv_sec
            self.prefix = JSONLineWriter.timePrefix(second: now.tv_sec)
        }
        // The line is built in a local value (moved out of and back into `buffer`, so its storage is reused): a
        // class property appended to byte by byte would pay a dynamic exclusivity check per byte.
        var line = JSONLineWriter()
        swap(&line.bytes, &self.buffer)
        line.bytes.removeAll(keepingCapacity: true)
        line.bytes.append(contentsOf: self.prefix)
        line.appendPadded(Int(now.tv_nsec / 1_000_000), width: 3)
        line.append("Z\",\"level\":\"info\",\"logger\":")
        line.appendQuoted(self.log.label)
        line.append(",\"message\":\"request\",\"bytes_in\":")
        line.appendInteger(record.bytesIn)
        line.append(",\"bytes_out\":")
        line.appendInteger(record.bytesOut)
        line.append(",\"client\":")
        line.appendQuoted(record.client)
        line.append(",\"decision\":")
        line.appendQuoted(record.decision)
        line.append(",\"duration_ms\":")
        line.appendMilliseconds(microseconds: Int(record.durationNanoseconds / 1000))
        if let host = record.host {
            line.append(",\"host\":")
            line.appendQuoted(host)
        }
        line.append(",\"method\":")
        line.appendQuoted(record.method)
        if let path = record.path {
            line.append(",\"path\":")
            line.appendQuoted(path)
        }
        if let reason = record.reason {
            line.append(",\"reason\":")
            line.appendQuoted(reason)
        }
        line.append(",\"status\":")
        line.appendInteger(Int(record.status))
        if let reused = record.upstreamReused {
            line.append(reused ? ",\"upstream_reused\":true" : ",\"upstream_reused\":false")
        }
        line.append("}\n")
        sink(line.bytes)
        swap(&line.bytes, &self.buffer)
    }
}

/// Appends JSON fragments to bytes.
struct JSONLineWriter {
    var bytes: [UInt8] = []

    /// `{"time":"2026-11-27T19:18:32.` (RFC 3339, UTC) for a second since the epoch.
    static func timePrefix(second: Int) -> [UInt8] {
        var t = time_t(second)
        var tm = tm()
        gmtime_r(&t, &tm)
        var line = JSONLineWriter()
        line.append("{\"time\":\"")
        line.appendPadded(Int(tm.tm_year) + 1900, width: 4)
        line.append("-")
        line.appendPadded(Int(tm.tm_mon) + 1, width: 2)
        line.append("-")
        line.appendPadded(Int(tm.tm_mday), width: 2)
        line.append("T")
        line.appendPadded(Int(tm.tm_hour), width: 2)
        line.append(":")
        line.appendPadded(Int(tm.tm_min), width: 2)
        line.append(":")
        line.appendPadded(Int(tm.tm_sec), width: 2)
        line.append(".")
        return line.bytes
    }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
    }

    mutating func appendInteger(_ value: Int) {
        if value < 0 {
            self.bytes.append(UInt8(ascii: "-"))
            self.appendPadded(-value, width: 1)
        } else {
            self.appendPadded(value, width: 1)
        }
    }

    /// Decimal digits of a non-negative value, left-padded with zeros to `width`.
    mutating func appendPadded(_ value: Int, width: Int) {
        var divisor = 1
        var digits = 1
        while divisor <= value / 10 {
            divisor *= 10
            digits += 1
        }
        for _ in digits..<max(digits, width) { self.bytes.append(UInt8(ascii: "0")) }
        var rest = value
        while divisor > 0 {
            self.bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    /// `1234` µs → `1.234`, `500` → `0.5`, `12000` → `12.0` (a JSON number in milliseconds).
    mutating func appendMilliseconds(microseconds: Int) {
        self.appendInteger(microseconds / 1000)
        self.bytes.append(UInt8(ascii: "."))
        var fraction = microseconds % 1000
        var width = 3
        while width > 1, fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        self.appendPadded(fraction, width: width)
    }

    /// A JSON string literal. Bytes of 0x80 and above pass through: the input is valid UTF-8 (a Swift String).
    mutating func appendQuoted(_ text: String) {
        self.bytes.append(UInt8(ascii: "\""))
        // The usual value (a host name, a method, a reason) needs no escaping: copy it in one go.
        if !text.utf8.contains(where: Self.needsEscape) {
            self.bytes.append(contentsOf: text.utf8)
            self.bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.append("\\\"")
            case UInt8(ascii: "\\"): self.append("\\\\")
            case UInt8(ascii: "\n"): self.append("\\n")
            case UInt8(ascii: "\r"): self.append("\\r")
            case UInt8(ascii: "\t"): self.append("\\t")
            case 0..<0x20, 0x7F:
                self.append("\\u00")
                self.bytes.append(Self.hexDigit(byte >> 4))
                self.bytes.append(Self.hexDigit(byte & 0xF))
            default:
                self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
