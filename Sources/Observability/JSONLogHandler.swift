import Foundation
import Logging
import Manifests
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A swift-log handler writing one JSON object per line: `time`, `level`, `logger`, `message`, then the metadata
/// fields. Used by both executables, and for the proxy's access log (one line per request).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public let label: String
    private let sink: @Sendable (String) -> Void

    /// Lines go to `sink`; the default writes to standard output.
    public init(label: String, sink: @escaping @Sendable (String) -> Void = JSONLogHandler.standardOutput) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"time\":\""
        line += Self.timestamp()
        line += "\",\"level\":\""
        line += event.level.rawValue
        line += "\",\"logger\":"
        Self.appendString(self.label, to: &line)
        line += ",\"message\":"
        Self.appendString("\(event.message)", to: &line)
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for key in merged.keys.sorted() {
            line += ","
            Self.appendString(key, to: &line)
            line += ":"
            Self.append(merged[key]!, to: &line)
        }
        line += "}\n"
        self.sink(line)
    }

    /// Lines are appended to a process-wide buffer that is written to standard output when it passes 64 KiB and
    /// at least every 100 ms (and by `flushStandardOutput()` at exit): one `write` per request would cost more CPU
    /// than the proxying itself.
    public static let standardOutput: @Sendable (String) -> Void = { line in
        StandardOutputBuffer.shared.append(line)
    }

    /// Appends already formatted lines (UTF-8, newline-terminated) to the same buffer, for writers that format
    /// their own lines (the proxy's access log).
    public static func writeStandardOutput(_ bytes: [UInt8]) {
        StandardOutputBuffer.shared.append(bytes)
    }

    /// Writes out buffered log lines now.
    public static func flushStandardOutput() {
        StandardOutputBuffer.shared.flush()
    }

    private static func append(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let s):
            Self.appendString(s, to: &line)
        case .stringConvertible(let s):
            // Numbers and booleans given as values (not strings) are written as JSON numbers and booleans.
            if s is any BinaryInteger || s is Bool || (s as? Double)?.isFinite == true {
                line += s.description
            } else {
                Self.appendString(s.description, to: &line)
            }
        case .array(let values):
            line += "["
            for (i, v) in values.enumerated() {
                if i > 0 { line += "," }
                Self.append(v, to: &line)
            }
            line += "]"
        case .dictionary(let dict):
            line += "{"
            for (i, key) in dict.keys.sorted().enumerated() {
                if i > 0 { line += "," }
                Self.appendString(key, to: &line)
                line += ":"
                Self.append(dict[key]!, to: &line)
            }
            line += "}"
        }
    }

    static func appendString(_ s: String, to line: inout String) {
        JSON.writeQuoted(s, to: &line)
    }

    /// RFC 3339 UTC with milliseconds, without Foundation's formatter.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}

final class StandardOutputBuffer: Sendable {
    static let shared = StandardOutputBuffer()

    private struct State {
        var bytes: [UInt8] = []
        var flusherStarted = false
    }
    private let state = NIOLockedValueBox(State())
    /// Serializes writes so lines from concurrent flushes never interleave.
    private let writeLock = NIOLock()

    func append(_ line: String) { self.append(bytes: line.utf8) }

    func append(_ line: [UInt8]) { self.append(bytes: line) }

    private func append(bytes line: some Sequence<UInt8>) {
        let (full, startFlusher): ([UInt8]?, Bool) = self.state.withLockedValue { state in
            state.bytes.append(contentsOf: line)
            let start = !state.flusherStarted
            state.flusherStarted = true
            guard state.bytes.count >= 64 * 1024 else { return (nil, start) }
            defer { state.bytes.removeAll(keepingCapacity: true) }
            return (state.bytes, start)
        }
        if startFlusher { self.startFlusher() }
        if let full { self.write(full) }
    }

    func flush() {
        let pending: [UInt8] = self.state.withLockedValue { state in
            defer { state.bytes.removeAll(keepingCapacity: true) }
            return state.bytes
        }
        if !pending.isEmpty { self.write(pending) }
    }

    private func startFlusher() {
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.1)
                self.flush()
            }
        }
        thread.name = "log-flusher"
        thread.start()
    }

    private func write(_ bytes: [UInt8]) {
        self.writeLock.withLock {
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
    }
}
