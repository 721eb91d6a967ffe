import KubeAPI
import Logging
import Manifests

/// The informers the operator reconciles from: everything it reads, kept current by list + watch.
struct Caches: Sendable {
    let egressHosts: Informer
    /// ConfigMaps and Secrets in the operator's namespace: the allow-list, and the TLS material EgressHosts name.
    let configMaps: Informer
    let secrets: Informer
    /// CoreDNS's two ConfigMaps (`coredns`, `coredns-custom`), each watched by name: the operator may read these
    /// two in CoreDNS's namespace and nothing else there (RBAC `resourceNames`, which a list or watch meets with a
    /// `metadata.name` field selector).
    let corefileConfigMap: Informer
    let customConfigMap: Informer
    /// Owned objects (by the managed-by label) in the operator's namespace, per kind.
    let owned: [Resource: Informer]
    /// Owned NetworkPolicies in every namespace: the proxy's and the lockdown ones.
    let networkPolicies: Informer
    /// Namespaces that opted into lockdown (only when lockdown is enabled).
    let lockdownNamespaces: Informer?
    /// The proxy's pods, asked what they have loaded (only when `Ready` waits for them).
    let proxyPods: Informer?

    static let egressHostResource = Resource(
        group: EgressHost.group,
        version: EgressHost.version,
        name: EgressHost.plural,
        kind: EgressHost.kind,
        namespaced: false
    )

    static let ownedKinds: [Resource] = [
        .serviceAccounts, .deployments, .services, .podDisruptionBudgets, .horizontalPodAutoscalers,
    ]

    init(
        client: KubeClient,
        settings: OperatorSettings,
        servesPDB: Bool,
        watchesProxyPods: Bool,
        logger: Logger
    ) {
        let managedBy = ProxyWorkload.ownedSelector(settings)
        func informer(_ resource: Resource, _ namespace: String?, _ selector: String? = nil) -> Informer {
            Informer(client: client, resource: resource, namespace: namespace, labelSelector: selector, logger: logger)
        }
        egressHosts = informer(Self.egressHostResource, nil)
        configMaps = informer(.configMaps, settings.namespace)
        secrets = informer(.secrets, settings.namespace)
        // The Corefile is replaced whole (PUT): its cached copy must keep everything the object holds.
        func coreDNSInformer(_ name: String) -> Informer {
            Informer(
                client: client,
                resource: .configMaps,
                namespace: settings.coreDNS.namespace,
                fieldSelector: "metadata.name=\(name)",
                keepsLastApplied: true,
                logger: logger
            )
        }
        corefileConfigMap = coreDNSInformer(settings.coreDNS.configMapName)
        customConfigMap = coreDNSInformer(settings.coreDNS.customConfigMapName)
        var owned: [Resource: Informer] = [:]
        for kind in Self.ownedKinds where kind != .podDisruptionBudgets || servesPDB {
            owned[kind] = informer(kind, settings.namespace, managedBy)
        }
        self.owned = owned
        networkPolicies = informer(.networkPolicies, nil, managedBy)
        lockdownNamespaces =
            settings.lockdown.enabled
            ? informer(.namespaces, nil, "\(LockdownSettings.namespaceLabel)=true") : nil
        proxyPods = watchesProxyPods ? informer(.pods, settings.namespace, ProxyWorkload.podSelector(settings)) : nil
    }

    var all: [Informer] {
        [egressHosts, configMaps, secrets, corefileConfigMap, customConfigMap, networkPolicies]
            + owned.keys.sorted { $0.name < $1.name }
            .compactMap { owned[$0] } + [lockdownNamespaces, proxyPods].compactMap { $0 }
    }

    var synced: Bool { all.allSatisfy(\.hasSynced) }
}
