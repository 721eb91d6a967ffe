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

/// Standard output for log lines, written by one background thread, so no event loop ever blocks on a slow reader
/// of the process's output (a container runtime's pipe).
///
/// Lines collect in a buffer that the writer thread empties every `interval`, or as soon as it holds
/// `flushThreshold` bytes. If the output stops taking bytes, the buffer stops growing at `capacity`: further lines
/// are dropped and counted, and a warning line says how many once output resumes. Serving requests matters more
/// than a complete log, and memory stays bounded.
final class StandardOutputBuffer: @unchecked Sendable {
    static let shared = StandardOutputBuffer()

    let flushThreshold: Int
    let capacity: Int
    let interval: Double
    private let output: @Sendable ([UInt8]) -> Void
    /// Its value says whether a flush is due now; it also guards the three variables below.
    private let condition = ConditionLock(value: false)
    private var buffer: [UInt8] = []
    private var dropped = 0
    private var writerStarted = false
    private var writerStopped = false
    /// Serializes writes so lines from the writer thread and an explicit `flush()` never interleave.
    private let writeLock = NIOLock()

    init(
        flushThreshold: Int = 64 * 1024,
        capacity: Int = 16 << 20,
        interval: Double = 0.1,
        output: @escaping @Sendable ([UInt8]) -> Void = StandardOutputBuffer.writeToStandardOutput
    ) {
        self.flushThreshold = flushThreshold
        self.capacity = capacity
        self.interval = interval
        self.output = output
    }

    func append(_ line: String) { self.append(bytes: line.utf8) }

    func append(_ line: [UInt8]) { self.append(bytes: line) }

    private func append(bytes line: some Collection<UInt8>) {
        self.condition.lock()
        let startWriter = !self.writerStarted
        self.writerStarted = true
        var flushDue = false
        if self.buffer.count + line.count > self.capacity {
            self.dropped += 1
        } else {
            self.buffer.append(contentsOf: line)
            flushDue = self.buffer.count >= self.flushThreshold
        }
        if flushDue {
            self.condition.unlock(withValue: true)
        } else {
            self.condition.unlock()
        }
        if startWriter { self.startWriter() }
    }

    /// Writes out everything buffered now, on the calling thread (at exit, and by the writer thread).
    func flush() {
        self.writeLock.withLock {
            self.condition.lock()
            var pending: [UInt8] = []
            swap(&pending, &self.buffer)
            let dropped = self.dropped
            self.dropped = 0
            self.condition.unlock(withValue: false)
            if dropped > 0 {
                let warning =
                    "{\"time\":\"\(JSONLogHandler.timestamp())\",\"level\":\"warning\",\"logger\":\"egress.log\","
                    + "\"message\":\"standard output was not keeping up: log lines dropped\",\"dropped\":\(dropped)}\n"
                pending.append(contentsOf: warning.utf8)
            }
            if !pending.isEmpty { self.output(pending) }
        }
    }

    private func startWriter() {
        let thread = Thread { [self] in
            while true {
                // Wakes up when a flush is due or the interval passed, whichever comes first.
                if self.condition.lock(whenValue: true, timeoutSeconds: self.interval) { self.condition.unlock() }
                self.flush()
                self.condition.lock()
                let stopped = self.writerStopped
                self.condition.unlock()
                if stopped { return }
            }
        }
        thread.name = "log-writer"
        thread.start()
    }

    /// Ends the writer thread after its next flush (tests; the process-wide buffer lives as long as the process).
    func stopWriter() {
        self.condition.lock()
        self.writerStopped = true
        self.condition.unlock(withValue: true)
    }

    /// Blocking `write(2)` to file descriptor 1, retried until everything is written (or output is gone).
    static let writeToStandardOutput: @Sendable ([UInt8]) -> Void = { bytes in
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                if written < 0, errno == EINTR { continue }
                if written <= 0 { break }
                offset += written
            }
        }
    }
}
