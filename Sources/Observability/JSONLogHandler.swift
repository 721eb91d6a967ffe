import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A swift-log handler writing one JSON object per line: `time`, `level`, `logger`, `message`, then the metadata
/// fields in key order. Used by both executables; the proxy's access log writes the same shape with
/// `JSONLineWriter` directly.
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
        var line = JSONLineWriter()
        line.appendTime(JSONLineWriter.now())
        line.append(",\"level\":")
        line.appendQuoted(event.level.rawValue)
        line.append(",\"logger\":")
        line.appendQuoted(self.label)
        line.append(",\"message\":")
        line.appendQuoted(Self.bounded("\(event.message)"))
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for key in merged.keys.sorted() {
            line.append(",")
            line.appendQuoted(key)
            line.append(":")
            Self.append(merged[key]!, to: &line)
        }
        line.append("}\n")
        self.sink(String(decoding: line.bytes, as: UTF8.self))
    }

    /// Lines are appended to a process-wide buffer that a background thread writes to standard output when it
    /// passes 64 KiB and at least every 100 ms (and `flushStandardOutput()` at exit): one `write` per request would
    /// cost more CPU than the proxying itself.
    public static let standardOutput: @Sendable (String) -> Void = { line in
        StandardOutputBuffer.shared.append(line)
    }

    /// Appends already formatted lines (UTF-8, newline-terminated) to the same buffer, for writers that format
    /// their own lines (the proxy's access log).
    public static func writeStandardOutput(_ bytes: UnsafeRawBufferPointer) {
        StandardOutputBuffer.shared.append(bytes)
    }

    /// Writes out buffered log lines now.
    public static func flushStandardOutput() {
        StandardOutputBuffer.shared.flush()
    }

    /// The most UTF-8 bytes of a message or value a line carries: an error that quotes what it refused (a 20 MB
    /// host in an allow-list) stays a readable line instead of filling, or overflowing, the output buffer.
    static let maximumFieldBytes = 8 * 1024

    static func bounded(_ text: String) -> String {
        let count = text.utf8.count
        guard count > Self.maximumFieldBytes else { return text }
        var end = text.utf8.index(text.utf8.startIndex, offsetBy: Self.maximumFieldBytes)
        while end.samePosition(in: text.unicodeScalars) == nil { end = text.utf8.index(before: end) }
        return "\(text[..<end])… (\(count - text.utf8.distance(from: text.startIndex, to: end)) more bytes)"
    }

    private static func append(_ value: Logger.MetadataValue, to line: inout JSONLineWriter) {
        switch value {
        case .string(let s):
            line.appendQuoted(Self.bounded(s))
        case .stringConvertible(let s):
            // Numbers and booleans given as values (not strings) are written as JSON numbers and booleans.
            if s is any BinaryInteger || s is Bool || (s as? Double)?.isFinite == true {
                line.bytes.append(contentsOf: s.description.utf8)
            } else {
                line.appendQuoted(Self.bounded(s.description))
            }
        case .array(let values):
            line.append("[")
            for (i, v) in values.enumerated() {
                if i > 0 { line.append(",") }
                Self.append(v, to: &line)
            }
            line.append("]")
        case .dictionary(let dict):
            line.append("{")
            for (i, key) in dict.keys.sorted().enumerated() {
                if i > 0 { line.append(",") }
                line.appendQuoted(key)
                line.append(":")
                Self.append(dict[key]!, to: &line)
            }
            line.append("}")
        }
    }
}

/// Standard output for log lines, written by one background thread, so no event loop ever blocks on a slow reader
/// of the process's output (a container runtime's pipe).
///
/// Lines collect in a buffer that the writer thread empties every `interval`, or as soon as it holds `flushThreshold`
/// bytes. After an interval with nothing to write, the thread sleeps until a line comes (an idle process does not
/// wake up ten times a second); while lines keep coming it wakes by itself, so the line that starts a batch does not
/// have to wake it: that signal cost the logging event loop a system call, and often its core, once per batch.
///
/// If the output stops taking bytes, the buffer stops growing at `capacity`: further lines are dropped and counted,
/// and a warning line says how many once output resumes. Serving requests matters more than a complete log, and
/// memory stays bounded.
final class StandardOutputBuffer: @unchecked Sendable {
    static let shared = StandardOutputBuffer()

    let flushThreshold: Int
    let capacity: Int
    let interval: Double
    private let output: @Sendable ([UInt8]) -> Void
    /// Guards the variables below; signalled when a line arrives while the writer sleeps with nothing to write, when
    /// the buffer reaches `flushThreshold`, and when the writer is stopped.
    private let condition = NSCondition()
    private var buffer: [UInt8] = []
    private var dropped = 0
    private var writerStarted = false
    private var writerStopped = false
    /// The writer's last interval brought nothing to write: it sleeps until signalled, not to the end of an interval.
    private var writerIdle = true
    private var signals = 0
    /// Serializes writes so lines from the writer thread and an explicit `flush()` never interleave.
    private let writeLock = NIOLock()
    /// The buffer written last, emptied with its memory kept (guarded by `writeLock`). Each flush swaps it in, so
    /// `buffer` does not grow again from nothing, reallocating as it goes, after every flush.
    private var spare: [UInt8] = []

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

    /// Taken as typed bytes: `Array.append(contentsOf:)` copies those with one `memcpy`, but a raw buffer byte by byte.
    func append(_ line: UnsafeRawBufferPointer) { line.withMemoryRebound(to: UInt8.self) { self.append(bytes: $0) } }

    private func append(bytes line: some Collection<UInt8>) {
        self.condition.lock()
        let startWriter = !self.writerStarted
        self.writerStarted = true
        if self.buffer.count + line.count > self.capacity {
            self.dropped += 1
            self.signalWriter()  // a line too long for an empty buffer still gets its warning written
        } else {
            let wasEmpty = self.buffer.isEmpty
            self.buffer.append(contentsOf: line)
            // A writer gathering a batch wakes at the end of its interval by itself.
            if wasEmpty && self.writerIdle || self.buffer.count >= self.flushThreshold { self.signalWriter() }
        }
        self.condition.unlock()
        if startWriter { self.startWriter() }
    }

    /// Writes out everything buffered now, on the calling thread (at exit, and by the writer thread).
    func flush() {
        self.writeLock.withLock {
            self.condition.lock()
            swap(&self.spare, &self.buffer)
            let dropped = self.dropped
            self.dropped = 0
            self.condition.unlock()
            if dropped > 0 {
                var warning = JSONLineWriter()
                warning.appendTime(JSONLineWriter.now())
                warning.append(",\"level\":\"warning\",\"logger\":\"egress.log\",")
                warning.append("\"message\":\"standard output was not keeping up: log lines dropped\",\"dropped\":")
                warning.appendInteger(dropped)
                warning.append("}\n")
                self.spare.append(contentsOf: warning.bytes)
            }
            if !self.spare.isEmpty { self.output(self.spare) }
            // What a stalled output left behind (up to `capacity`) is let go.
            if self.spare.capacity > 4 * self.flushThreshold {
                self.spare = []
            } else {
                self.spare.removeAll(keepingCapacity: true)
            }
        }
    }

    /// How many times `append` has signalled the writer (tests: a busy writer must not be woken once per batch).
    var signalsSent: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.signals
    }

    /// With the condition's lock held.
    private func signalWriter() {
        self.signals += 1
        self.condition.signal()
    }

    private func startWriter() {
        let thread = Thread { [self] in
            while true {
                self.condition.lock()
                if self.writerIdle {
                    while self.buffer.isEmpty, self.dropped == 0, !self.writerStopped { self.condition.wait() }
                    self.writerIdle = false
                }
                // Gives the batch `interval` to gather unless the buffer fills to the threshold first.
                let deadline = Date(timeIntervalSinceNow: self.interval)
                while self.buffer.count < self.flushThreshold, !self.writerStopped,
                    self.condition.wait(until: deadline)
                {}
                self.writerIdle = self.buffer.isEmpty && self.dropped == 0
                let stopped = self.writerStopped
                self.condition.unlock()
                self.flush()
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
        self.condition.signal()
        self.condition.unlock()
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
