import JSONScanning
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
    let sink: (@Sendable (UnsafeRawBufferPointer) -> Void)?

    /// Lines are handed to `sink` as UTF-8 bytes, newline included, valid only during the call.
    public init(label: String = "egress-proxy.access", sink: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
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

/// Formats access log lines into memory it keeps. One per event loop (not thread-safe, never shared): the
/// date-and-time prefix is rendered once per second, the text that never changes once, and the rest is written
/// straight into memory sized for the line before it starts. Appending to an array byte run by byte run cost more
/// in bookkeeping than in bytes.
final class AccessLogFormatter {
    private let log: AccessLog
    private var memory: UnsafeMutableRawBufferPointer
    private var prefixSecond = -1
    /// `{"time":"2026-11-27T19:18:32.` for `prefixSecond`.
    private var prefix: [UInt8] = []
    /// `,"level":"info","logger":"egress-proxy.access","message":"request","bytes_in":`, the same on every line.
    private let fixed: [UInt8]
    /// More than the keys, four integers, the milliseconds of the time and the quotes around the strings take.
    private static let boundBesidesStrings = 384
    private var client = RenderedField(key: ",\"client\":")
    private var decision = RenderedField(key: ",\"decision\":")
    private var host = RenderedField(key: ",\"host\":")
    private var method = RenderedField(key: ",\"method\":")

    init(_ log: AccessLog) {
        self.log = log
        var fixed: [UInt8] = []
        fixed.append(",\"level\":\"info\",\"logger\":")
        fixed.appendQuoted(log.label)
        fixed.append(",\"message\":\"request\",\"bytes_in\":")
        self.fixed = fixed
        self.memory = .allocate(byteCount: 1024, alignment: 1)
    }

    deinit { self.memory.deallocate() }

    var isEnabled: Bool { self.log.sink != nil }

    func write(_ record: AccessRecord) {
        guard let sink = self.log.sink else { return }
        let now = JSONLineWriter.now()
        if now.tv_sec != self.prefixSecond {
            self.prefixSecond = now.tv_sec
            self.prefix = JSONLineWriter.timePrefix(second: now.tv_sec)
        }
        var strings = record.client.utf8.count + record.method.utf8.count + record.decision.utf8.count
        strings += (record.host?.utf8.count ?? 0) + (record.path?.utf8.count ?? 0) + (record.reason?.utf8.count ?? 0)
        let bound =
            self.prefix.count + self.fixed.count + Self.boundBesidesStrings + JSONQuoting.maximumQuotedCount(strings)
        if bound > self.memory.count {
            self.memory.deallocate()
            self.memory = .allocate(byteCount: max(bound, 2 * self.memory.count), alignment: 1)
        }
        var line = RawWriter(self.memory)
        self.prefix.withUnsafeBufferPointer { line.append(contentsOf: $0) }
        line.appendDecimal(Int(now.tv_nsec / 1_000_000), width: 3)
        line.append("Z\"")
        self.fixed.withUnsafeBufferPointer { line.append(contentsOf: $0) }
        line.appendInteger(record.bytesIn)
        line.append(",\"bytes_out\":")
        line.appendInteger(record.bytesOut)
        self.client.write(record.client, into: &line)
        self.decision.write(record.decision, into: &line)
        line.append(",\"duration_ms\":")
        line.appendMilliseconds(microseconds: Int(record.durationNanoseconds / 1000))
        if let host = record.host { self.host.write(host, into: &line) }
        self.method.write(record.method, into: &line)
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
        sink(UnsafeRawBufferPointer(rebasing: self.memory[..<line.written]))
    }
}

/// `,"key":"value"` as rendered for the last value written: most lines repeat the line before's client, decision,
/// host and method, and comparing a string (the same storage, or a short one held inline) costs less than quoting
/// it again.
private struct RenderedField {
    let key: StaticString
    private var value: String?
    private var rendered: [UInt8] = []

    init(key: StaticString) { self.key = key }

    mutating func write(_ value: String, into line: inout RawWriter) {
        if value != self.value {
            var rendered: [UInt8] = []
            rendered.append(self.key)
            rendered.appendQuoted(value)
            self.rendered = rendered
            self.value = value
        }
        self.rendered.withUnsafeBytes { line.write($0) }
    }
}
