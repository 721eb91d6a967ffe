import ArgumentParser
import Foundation
import KubeAPI
import Logging
import Manifests
import Metrics
import Observability
import Operator
import Prometheus
import ServiceLifecycle

/// `egress-operator run`: the controller, its admin server, graceful shutdown on SIGTERM.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the operator against the cluster of the current kubeconfig (or in-cluster)."
    )

    @Option(help: "Path to a kubeconfig; default: $KUBECONFIG, then in-cluster, then ~/.kube/config.")
    var kubeconfig: String?

    /// In the cluster the pod's own namespace (the downward API's `POD_NAMESPACE`), so that a kustomize overlay that
    /// moves the operator moves what it manages too.
    @Option(
        help: """
            The operator's namespace: the proxy workload, its allow-list and TLS material live here. \
            Default: $POD_NAMESPACE, else \(OperatorSettings().namespace).
            """
    )
    var namespace = ProcessInfo.processInfo.environment["POD_NAMESPACE"] ?? OperatorSettings().namespace

    @Flag(inversion: .prefixedNo, help: "Elect one leader among replicas with a coordination.k8s.io Lease.")
    var leaderElect = true

    @Option(help: "Lease duration in seconds (a dead leader is replaced within it).")
    var leaseDurationSeconds = 15

    @Option(help: "This replica's identity; default: $POD_NAME, else host name and PID.")
    var identity: String?

    @Option(help: "Admin port: /metrics, /healthz, /readyz.")
    var adminPort = OperatorSettings().adminPort

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    @Option(help: "Log format: json or text.")
    var logFormat = "json"

    @Option(help: "CoreDNS mode: corefile, custom or auto.")
    var corednsMode = CoreDNSSettings.Mode.auto.rawValue

    @Option(help: "CoreDNS's namespace.")
    var corednsNamespace = CoreDNSSettings().namespace

    @Flag(
        inversion: .prefixedNo,
        help:
            "Report an EgressHost Ready only once every ready proxy pod has loaded it (GET /allowlist on its admin port)."
    )
    var confirmProxyLoad = true

    @Option(help: "DNS rules: per-host, or suffix (one rule for the whole suffix, for very large host sets).")
    var dnsRules = OperatorOptions.DNSRules.perHost.rawValue

    @Option(help: "The egress proxy image.")
    var proxyImage = ProxySettings().image

    @Option(help: "Proxy replicas; with --proxy-max-replicas, the fewest the autoscaler may scale to.")
    var proxyReplicas = ProxySettings().replicas

    @Option(help: "Scale the proxy on CPU (a HorizontalPodAutoscaler) up to this many replicas; 0: fixed replicas.")
    var proxyMaxReplicas = 0

    @Option(
        name: .customLong("proxy-target-cpu-utilization"),
        help: "The autoscaler's target: average proxy CPU use, in percent of the proxy's CPU request."
    )
    var proxyTargetCPUUtilization = ProxySettings.Autoscaling(maxReplicas: 0).targetCPUUtilizationPercentage

    @Option(help: "The suffix applications append to host names.")
    var suffix = ProxySettings().suffix

    @Option(help: "Mesh injection annotation for proxy pods (KEY=VALUE, repeatable; `none` for none).")
    var proxyPodAnnotation: [String] = ["linkerd.io/inject=enabled"]

    @Option(
        name: .customLong("proxy-tls-mount-path"),
        help: "Where proxy pods mount the TLS Secret; allow-list file paths point under it."
    )
    var proxyTLSMountPath = ProxySettings.defaultTLSMountPath

    @Flag(
        help: "Give namespaces labelled egress.dev/lockdown=true a NetworkPolicy that allows egress only via the proxy."
    )
    var lockdown = false

    @Option(help: "Proxy container port.")
    var proxyPort = ProxySettings().port

    @Option(help: "Proxy CPU request.")
    var proxyCPURequest = ProxySettings().cpuRequest

    @Option(help: "Proxy memory request.")
    var proxyMemoryRequest = ProxySettings().memoryRequest

    @Option(help: "Proxy memory limit.")
    var proxyMemoryLimit = ProxySettings().memoryLimit

    @Option(help: "Maximum concurrent client connections per proxy pod.")
    var proxyMaxConnections = ProxySettings().maxClientConnections

    @Flag(inversion: .prefixedNo, help: "Proxy pods write one JSON access log line per request.")
    var proxyAccessLog = ProxySettings().accessLog

    @Flag(help: "Proxy access log lines include request paths (paths can carry secrets).")
    var proxyLogPaths = ProxySettings().logPaths

    @Option(
        help:
            "Only namespaces with this label (KEY=VALUE, repeatable) may call the proxy; default: every namespace."
    )
    var proxyClientNamespaceLabel: [String] = []

    @Option(help: "In-cluster CIDR that lockdown keeps reachable (repeatable); default: the RFC 1918 ranges.")
    var lockdownClusterCIDR: [String] = []

    @Option(help: "The cluster's DNS domain (the proxy Service's FQDN ends in it).")
    var clusterDomain = ProxySettings().clusterDomain

    @Option(help: "CoreDNS's ConfigMap (holding the Corefile).")
    var corednsConfigmap = CoreDNSSettings().configMapName

    @Option(help: "The ConfigMap CoreDNS imports *.override files from (k3s, AKS).")
    var corednsCustomConfigmap = CoreDNSSettings().customConfigMapName

    @Option(help: "Seconds between full passes without events.")
    var resyncSeconds = 300

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "egress-operator")

        var settings = OperatorSettings()
        settings.namespace = namespace
        settings.adminPort = adminPort
        settings.logLevel = logLevel
        guard let mode = CoreDNSSettings.Mode(rawValue: corednsMode) else {
            throw ValidationError("--coredns-mode must be one of corefile, custom, auto")
        }
        settings.coreDNS.mode = mode
        settings.coreDNS.namespace = corednsNamespace
        settings.proxy.image = proxyImage
        guard proxyReplicas >= 1 else { throw ValidationError("--proxy-replicas must be at least 1") }
        settings.proxy.replicas = proxyReplicas
        if proxyMaxReplicas != 0 {
            guard proxyMaxReplicas >= proxyReplicas else {
                throw ValidationError("--proxy-max-replicas must be 0 (off) or at least --proxy-replicas")
            }
            guard proxyTargetCPUUtilization >= 1 else {
                throw ValidationError("--proxy-target-cpu-utilization must be at least 1")
            }
            settings.proxy.autoscaling = ProxySettings.Autoscaling(
                maxReplicas: proxyMaxReplicas,
                targetCPUUtilizationPercentage: proxyTargetCPUUtilization
            )
        }
        settings.proxy.suffix = suffix
        settings.proxy.podAnnotations = try Self.keyValuePairs(proxyPodAnnotation, flag: "proxy-pod-annotation")
        settings.proxy.tlsMountPath = proxyTLSMountPath
        settings.proxy.port = proxyPort
        // In the API server's canonical form (what it stores and the cache shows), and the request within the
        // limit: the API server would refuse the Deployment on every pass.
        let cpuRequest = try Self.quantity(proxyCPURequest, flag: "proxy-cpu-request")
        let memoryRequest = try Self.quantity(proxyMemoryRequest, flag: "proxy-memory-request")
        let memoryLimit = try Self.quantity(proxyMemoryLimit, flag: "proxy-memory-limit")
        guard memoryRequest <= memoryLimit else {
            throw ValidationError(
                "--proxy-memory-request \(proxyMemoryRequest) must not exceed --proxy-memory-limit \(proxyMemoryLimit)"
            )
        }
        settings.proxy.cpuRequest = cpuRequest.description
        settings.proxy.memoryRequest = memoryRequest.description
        settings.proxy.memoryLimit = memoryLimit.description
        settings.proxy.maxClientConnections = proxyMaxConnections
        settings.proxy.accessLog = proxyAccessLog
        settings.proxy.logPaths = proxyLogPaths
        settings.proxy.clientNamespaceLabels = try Self.keyValuePairs(
            proxyClientNamespaceLabel,
            flag: "proxy-client-namespace-label"
        )
        settings.proxy.clusterDomain = clusterDomain
        settings.coreDNS.configMapName = corednsConfigmap
        settings.coreDNS.customConfigMapName = corednsCustomConfigmap
        if !lockdownClusterCIDR.isEmpty { settings.lockdown.clusterCIDRs = lockdownClusterCIDR }
        settings.lockdown.enabled = lockdown
        guard let rules = OperatorOptions.DNSRules(rawValue: dnsRules) else {
            throw ValidationError("--dns-rules must be per-host or suffix")
        }

        let environment = ProcessInfo.processInfo.environment
        var options = OperatorOptions(
            settings: settings,
            identity: identity ?? environment["POD_NAME"] ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        )
        options.leaderElection = leaderElect
        options.leaseDuration = .seconds(leaseDurationSeconds)
        options.renewDeadline = .milliseconds(leaseDurationSeconds * 2_000 / 3)
        options.retryPeriod = .milliseconds(max(200, leaseDurationSeconds * 1_000 / 7))
        options.resyncPeriod = .seconds(resyncSeconds)
        options.dnsRules = rules
        options.confirmProxyLoad = confirmProxyLoad
        // The suffix and the proxy Service's name go into CoreDNS's configuration: refused now, with the reason,
        // rather than on every pass.
        do {
            _ = try options.corefileEditor()
        } catch {
            throw ValidationError("\(error)")
        }

        let config = try kubeconfig.map { try KubeConfig.load(kubeconfigPaths: [$0]) } ?? KubeConfig.fromEnvironment()
        let client = try KubeClient(config: config, logger: logger)
        do {
            try await self.run(client: client, config: config, options: options, registry: registry, logger: logger)
        } catch {
            // The client's connections are shut down whatever ended the run (a port in use, a failed service).
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func run(
        client: KubeClient,
        config: KubeConfig,
        options: OperatorOptions,
        registry: PrometheusCollectorRegistry,
        logger: Logger
    ) async throws {
        let service = OperatorService(client: client, options: options, logger: logger)
        let admin = try await AdminServer.bind(
            host: options.adminHost,
            port: adminPort,
            registry: registry,
            readiness: { service.notReadyReason }
        )
        logger.info(
            "starting",
            metadata: [
                "identity": "\(options.identity)", "namespace": "\(namespace)", "admin": "\(admin.localAddress)",
                "server": "\(config.server)",
            ]
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: admin), .init(service: service)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    static func quantity(_ text: String, flag: String) throws -> Quantity {
        guard let quantity = Quantity(text) else {
            throw ValidationError("--\(flag): \"\(text)\" is not a quantity such as 100m, 0.5, 128Mi or 1Gi")
        }
        return quantity
    }

    static func keyValuePairs(_ values: [String], flag: String) throws -> [String: String] {
        do {
            return try OperatorSettings.keyValuePairs(values)
        } catch {
            throw ValidationError("--\(flag): \(error)")
        }
    }
}
