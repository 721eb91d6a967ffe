import JSONScanning

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Builds one JSON log line as UTF-8 bytes: the proxy's access log and `JSONLogHandler` share it, so every line the
/// processes write has the same time format and string escaping.
public struct JSONLineWriter {
    public var bytes: [UInt8] = []

    public init() {}

    /// Starts a line with `{"time":"2026-11-27T19:18:32.123Z"` for `now` (UTC). `prefix` may be a cached
    /// `timePrefix(second:)` of the same second, which saves the calendar arithmetic on hot paths.
    public mutating func appendTime(_ now: timespec, prefix: [UInt8]? = nil) {
        self.bytes.append(contentsOf: prefix ?? Self.timePrefix(second: now.tv_sec))
        self.appendPadded(Int(now.tv_nsec / 1_000_000), width: 3)
        self.append("Z\"")
    }

    public static func now() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }

    /// `{"time":"2026-11-27T19:18:32.` (RFC 3339, UTC) for a second since the epoch.
    public static func timePrefix(second: Int) -> [UInt8] {
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

    public mutating func append(_ text: StaticString) {
        self.bytes.append(text)
    }

    public mutating func appendInteger(_ value: Int) {
        self.bytes.appendInteger(value)
    }

    /// Decimal digits of a non-negative value, left-padded with zeros to `width`.
    public mutating func appendPadded(_ value: Int, width: Int) {
        self.bytes.appendDecimal(value, width: width)
    }

    public mutating func appendMilliseconds(microseconds: Int) {
        self.bytes.appendMilliseconds(microseconds: microseconds)
    }

    /// A JSON string literal (`JSONQuoting`'s escaping, shared with the Kubernetes client's request bodies).
    public mutating func appendQuoted(_ text: String) {
        self.bytes.appendQuoted(text)
    }
}
