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

    var isEnabled: Bool { self.log.sink != nil }

    func write(_ record: AccessRecord) {
        guard let sink = self.log.sink else { return }
        let now = JSONLineWriter.now()
        if now.tv_sec != self.prefixSecond {
            self.prefixSecond = now.tv_sec
            self.prefix = JSONLineWriter.timePrefix(second: now.tv_sec)
        }
        // The line is built in a local value (moved out of and back into `buffer`, so its storage is reused): a
        // class property appended to byte by byte would pay a dynamic exclusivity check per byte.
        var line = JSONLineWriter()
        swap(&line.bytes, &self.buffer)
        line.bytes.removeAll(keepingCapacity: true)
        line.appendTime(now, prefix: self.prefix)
        line.append(",\"level\":\"info\",\"logger\":")
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
