import Logging
import Manifests
import Metrics
import NIOCore
import NIOPosix
import Observability
import Prometheus
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wires the services of a proxy process. The executable parses arguments and calls `run`; tests construct the
/// pieces directly with their own registry and loggers.
public enum ProxyRuntime {
    public struct Options: Sendable {
        public var proxy = ProxyConfiguration()
        public var adminHost = "0.0.0.0"
        public var adminPort = 9090
        /// Hosts allowed on the command line (`--allow`), each with defaults (port 443, system trust).
        public var allowHosts: [String] = []
        /// An allow-list document, watched for changes.
        public var allowListPath: String?
        public var reloadInterval: Duration = .seconds(1)
        /// Event loop threads; nil uses NIO's shared group (one per core).
        public var eventLoops: Int?
        /// One JSON line per request on standard output.
        public var accessLog = true

        public init() {}
    }

    /// Process-wide bootstrap: JSON logs on standard output and the Prometheus factory as the global metrics
    /// backend (for libraries that use the global one). Call once, from `main`, never from library code or tests.
    public static func bootstrapProcess(registry: PrometheusCollectorRegistry) {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// The whole process: a fresh registry, the process bootstrap, then `run`.
    public static func runProcess(_ options: Options) async throws {
        let registry = PrometheusCollectorRegistry()
        Self.bootstrapProcess(registry: registry)
        try await Self.run(options, registry: registry)
    }

    /// The proxy's own admin pages: `/allowlist`, what this process routes (the operator's readiness check).
    public static func adminPages(_ store: AllowListStore) -> [String: AdminServer.Page] {
        ["/allowlist": { store.loadReport().map { ("application/json", $0.encoded()) } }]
    }

    /// Raises the open-file limit to its hard limit, as Go's runtime and nginx's `worker_rlimit_nofile` do: each
    /// client connection takes a descriptor and its upstream connection another, and a soft limit of 1,024 (a
    /// common default) would end in `accept` failures far below `--max-connections`. Says so when even the hard
    /// limit is short of what the connection limit needs.
    static func raiseOpenFileLimit(for maxClientConnections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let needed = rlim_t(2 * maxClientConnections + 256)
        if limit.rlim_cur < needed {
            logger.warning(
                "the open-file limit is below what --max-connections needs (two descriptors per connection)",
                metadata: ["limit": "\(limit.rlim_cur)", "needed": "\(needed)"]
            )
        }
    }

    public static func run(_ options: Options, registry: PrometheusCollectorRegistry) async throws {
        let logger = Logger(label: "egress-proxy")
        Self.raiseOpenFileLimit(for: options.proxy.maxClientConnections, logger: logger)
        let metrics = ProxyMetrics(factory: PrometheusMetricsFactory(registry: registry))
        let store = AllowListStore(metrics: metrics)

        var services: [any Service] = []
        if let path = options.allowListPath {
            services.append(
                AllowListWatcher(path: path, interval: options.reloadInterval, store: store, logger: logger)
            )
        } else {
            var entries: [AllowList.Entry] = []
            for host in options.allowHosts {
                if let problem = HostName.validate(host).first {
                    throw ProxyError.configuration("--allow \(host): \(problem)")
                }
                entries.append(AllowList.Entry(host: host))
            }
            store.install(AllowList(hosts: entries))
        }
        let group: any EventLoopGroup
        let ownGroup: MultiThreadedEventLoopGroup?
        if let threads = options.eventLoops {
            ownGroup = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
            group = ownGroup!
        } else {
            ownGroup = nil
            group = MultiThreadedEventLoopGroup.singleton
        }
        let admin = try await AdminServer.bind(
            host: options.adminHost,
            port: options.adminPort,
            registry: registry,
            readiness: { store.notReadyReason },
            pages: Self.adminPages(store),
            group: group
        )
        let proxy = try await ProxyServer.bind(
            configuration: options.proxy,
            store: store,
            metrics: metrics,
            group: group,
            logger: logger,
            accessLog: options.accessLog ? .standardOutput : .disabled
        )
        logger.info(
            "egress-proxy listening",
            metadata: [
                "proxy": "\(proxy.localAddress)", "admin": "\(admin.localAddress)",
                "suffix": "\(options.proxy.suffix)",
            ]
        )
        // Shutdown runs in reverse order: the proxy drains first, then the admin port (probes keep answering,
        // /readyz failing, while draining), then the watcher.
        services.append(admin)
        services.append(proxy)
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        defer { JSONLogHandler.flushStandardOutput() }
        do {
            try await serviceGroup.run()
        } catch {
            try? await ownGroup?.shutdownGracefully()
            throw error
        }
        try? await ownGroup?.shutdownGracefully()
    }
}
