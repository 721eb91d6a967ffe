import ArgumentParser
import Foundation
import Manifests
import Proxy

/// `egress-proxy`: parse arguments, bootstrap process-wide logging/metrics, run the services. Everything else is in
/// the `Proxy` library.
@main
struct EgressProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "egress-proxy",
        abstract: "HTTP egress proxy: NAME.egress.local → verified TLS to NAME, for allow-listed names only.",
        version: "0.1.0"
    )

    @Option(name: .customLong("allow"), help: "Allow this host (repeatable; port 443, system trust roots).")
    var allow: [String] = []

    @Option(name: .customLong("allowlist"), help: "Allow-list document (JSON), watched and hot-reloaded.")
    var allowList: String?

    @Option(help: "Proxy listen address.") var host = "0.0.0.0"
    @Option(help: "Proxy listen port.") var port = 8080
    @Option(help: "Admin (/metrics, /healthz, /readyz) listen port.") var adminPort = 9090
    @Option(help: "Admin listen address.") var adminHost = "0.0.0.0"
    @Option(help: "Routing suffix: NAME.<suffix> goes to NAME.") var suffix = "egress.local"
    @Option(help: "Maximum bytes of a request head (request line and headers); larger heads get a 431.")
    var maxHeaderBytes = 32 * 1024
    @Option(help: "Maximum number of request headers.") var maxHeaderCount = 100
    @Option(help: "Maximum concurrent client connections.") var maxConnections = 10_000
    @Option(help: "Maximum upstream connections per host and event loop.") var maxUpstreamConnections = 256
    @Option(help: "Seconds a client has to send a complete request head.") var requestHeadTimeout = 10
    @Option(help: "Seconds a client connection may be idle.") var clientIdleTimeout = 60
    @Option(help: "Seconds to keep accepting connections after SIGTERM, with /readyz failing (endpoint removal).")
    var shutdownDelay = 0
    @Option(help: "Seconds in-flight requests get on SIGTERM, after the delay.") var shutdownGrace = 25
    @Option(help: "Seconds between allow-list file checks.") var reloadInterval = 1
    @Option(help: "Event loop threads (default: one per core).") var eventLoops: Int?
    @Flag(help: "Include request paths in access logs.") var logPaths = false
    @Flag(inversion: .prefixedNo, help: "Write one JSON access log line per request to standard output.")
    var accessLog = true
    @Flag(help: "Load and index --allowlist, print its size and how long that took, and exit (no listening).")
    var check = false

    func validate() throws {
        if self.allow.isEmpty == (self.allowList == nil) {
            throw ValidationError("give either --allowlist FILE or one or more --allow HOST")
        }
        if self.check && self.allowList == nil { throw ValidationError("--check checks an --allowlist FILE") }
        // Values that would wrap around (a port of 70000 is 4464), spin (a reload interval of 0) or refuse every
        // request (a limit of 0) are refused here, not discovered in production.
        let ranges: [(flag: String, value: Int, range: ClosedRange<Int>)] = [
            ("port", self.port, 0...65535),
            ("admin-port", self.adminPort, 0...65535),
            ("max-header-bytes", self.maxHeaderBytes, 256...(1 << 24)),
            ("max-header-count", self.maxHeaderCount, 1...10_000),
            ("max-connections", self.maxConnections, 1...1_000_000),
            ("max-upstream-connections", self.maxUpstreamConnections, 1...1_000_000),
            ("request-head-timeout", self.requestHeadTimeout, 1...3600),
            ("client-idle-timeout", self.clientIdleTimeout, 1...86400),
            ("shutdown-delay", self.shutdownDelay, 0...3600),
            ("shutdown-grace", self.shutdownGrace, 0...3600),
            ("reload-interval", self.reloadInterval, 1...3600),
            ("event-loops", self.eventLoops ?? 1, 1...1024),
        ]
        for (flag, value, range) in ranges where !range.contains(value) {
            throw ValidationError("--\(flag) must be in \(range.lowerBound)...\(range.upperBound), not \(value)")
        }
    }

    func run() async throws {
        if self.check, let path = self.allowList {
            try Self.check(path)
            return
        }
        var options = ProxyRuntime.Options()
        options.proxy.host = self.host
        options.proxy.port = self.port
        options.proxy.suffix = self.suffix
        options.proxy.maxHeaderBytes = self.maxHeaderBytes
        options.proxy.maxHeaderCount = self.maxHeaderCount
        options.proxy.maxClientConnections = self.maxConnections
        options.proxy.maxUpstreamConnectionsPerHost = self.maxUpstreamConnections
        options.proxy.requestHeadTimeout = .seconds(Int64(self.requestHeadTimeout))
        options.proxy.clientIdleTimeout = .seconds(Int64(self.clientIdleTimeout))
        options.proxy.shutdownDelay = .seconds(Int64(self.shutdownDelay))
        options.proxy.shutdownGracePeriod = .seconds(Int64(self.shutdownGrace))
        options.proxy.logPaths = self.logPaths
        options.adminHost = self.adminHost
        options.adminPort = self.adminPort
        options.allowHosts = self.allow
        options.allowListPath = self.allowList
        options.reloadInterval = .seconds(self.reloadInterval)
        options.eventLoops = self.eventLoops
        options.accessLog = self.accessLog
        try await ProxyRuntime.runProcess(options)
    }

    /// What a reload costs: reading, decoding and validating the document, and building the router.
    static func check(_ path: String) throws {
        let clock = ContinuousClock()
        let start = clock.now
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        let read = clock.now
        let list = try AllowList.decode(bytes)
        let decoded = clock.now
        let router = Router(list)
        let indexed = clock.now
        func ms(_ duration: Swift.Duration) -> String {
            String(
                format: "%.1f ms",
                Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1e3
            )
        }
        print(
            "\(router.count) hosts, \(bytes.count) bytes: read \(ms(start.duration(to: read))), "
                + "decode+validate \(ms(read.duration(to: decoded))), index \(ms(decoded.duration(to: indexed))), "
                + "total \(ms(start.duration(to: indexed)))"
        )
    }
}
