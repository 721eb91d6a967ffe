/// The operator's permissions, least privilege: each rule names the code that needs it.
public enum RBAC {
    struct Rule {
        let apiGroups: [String]
        let resources: [String]
        let verbs: [String]
        var resourceNames: [String] = []
        /// Why the operator needs it; keep in step with the code named here.
        let reason: String

        var json: JSON {
            JSON.object([
                ("apiGroups", JSON(apiGroups)),
                ("resources", JSON(resources)),
                ("resourceNames", resourceNames.isEmpty ? .null : JSON(resourceNames)),
                ("verbs", JSON(verbs)),
            ]).compacted
        }
    }

    static let read = ["get", "list", "watch"]
    static let own = ["get", "list", "watch", "create", "patch", "update", "delete"]

    /// Cluster-wide: the cluster-scoped EgressHosts, their Events, and the optional lockdown policies.
    static let clusterRules: [Rule] = [
        Rule(apiGroups: [EgressHost.group], resources: [EgressHost.plural], verbs: read, reason: "EgressHost informer"),
        Rule(
            apiGroups: [EgressHost.group],
            resources: ["\(EgressHost.plural)/status"],
            verbs: ["get", "patch", "update"],
            reason: "status conditions, written with server-side apply"
        ),
        Rule(
            apiGroups: [""],
            resources: ["events"],
            verbs: ["create", "patch"],
            reason: "Events on EgressHosts (cluster-scoped objects' Events live in `default`)"
        ),
        Rule(
            apiGroups: [""],
            resources: ["namespaces"],
            verbs: read,
            reason: "namespaces that opt into lockdown by label"
        ),
        Rule(
            apiGroups: ["networking.k8s.io"],
            resources: ["networkpolicies"],
            verbs: own,
            reason: "the lockdown NetworkPolicy in opted-in namespaces and the proxy's own NetworkPolicy"
        ),
    ]

    /// In the operator's namespace: the proxy workload, its allow-list and TLS material, leader election.
    static let namespaceRules: [Rule] = [
        Rule(
            apiGroups: [""],
            resources: ["configmaps", "secrets"],
            verbs: own,
            reason: "allow-list ConfigMap, TLS Secret, and the CA bundles / client certificates EgressHosts name"
        ),
        Rule(
            apiGroups: [""],
            resources: ["services", "serviceaccounts"],
            verbs: own,
            reason: "the proxy Service and ServiceAccount"
        ),
        Rule(apiGroups: ["apps"], resources: ["deployments"], verbs: own, reason: "the proxy Deployment"),
        Rule(
            apiGroups: [""],
            resources: ["pods"],
            verbs: read,
            reason: "the proxy pods, asked what they have loaded before a host is reported Ready"
        ),
        Rule(
            apiGroups: ["policy"],
            resources: ["poddisruptionbudgets"],
            verbs: own,
            reason: "the proxy PodDisruptionBudget"
        ),
        Rule(
            apiGroups: ["autoscaling"],
            resources: ["horizontalpodautoscalers"],
            verbs: own,
            reason: "the proxy HorizontalPodAutoscaler (with autoscaling)"
        ),
        Rule(
            apiGroups: ["coordination.k8s.io"],
            resources: ["leases"],
            verbs: ["get", "list", "watch", "create", "update", "patch"],
            reason: "leader election"
        ),
    ]

    /// In CoreDNS's namespace: read ConfigMaps, write only the two CoreDNS ones. `create` cannot be limited by
    /// name in RBAC; it is needed for a `coredns-custom` ConfigMap that does not exist yet.
    static func coreDNSRules(_ settings: CoreDNSSettings) -> [Rule] {
        [
            Rule(
                apiGroups: [""],
                resources: ["configmaps"],
                verbs: read + ["patch", "update"],
                resourceNames: [settings.configMapName, settings.customConfigMapName],
                reason: "the Corefile and coredns-custom alone (watched by name), never the namespace's other "
                    + "ConfigMaps; the managed Corefile block or the coredns-custom override"
            ),
            Rule(
                apiGroups: [""],
                resources: ["configmaps"],
                verbs: ["create"],
                reason: "coredns-custom, when the cluster has none"
            ),
        ]
    }

    public static func objects(_ settings: OperatorSettings) -> [JSON] {
        let name = settings.name
        let labels = ["app.kubernetes.io/part-of": "egress-operator"]
        let subject: JSON = [
            ["kind": "ServiceAccount", "name": .string(name), "namespace": .string(settings.namespace)]
        ]
        func role(_ kind: String, _ roleName: String, namespace: String?, _ rules: [Rule]) -> JSON {
            Kube.object(
                "rbac.authorization.k8s.io/v1",
                kind,
                metadata: Kube.metadata(name: roleName, namespace: namespace, labels: labels),
                [("rules", .array(rules.map(\.json)))]
            )
        }
        func binding(_ kind: String, _ roleKind: String, _ roleName: String, namespace: String?) -> JSON {
            Kube.object(
                "rbac.authorization.k8s.io/v1",
                kind,
                metadata: Kube.metadata(name: roleName, namespace: namespace, labels: labels),
                [
                    (
                        "roleRef",
                        ["apiGroup": "rbac.authorization.k8s.io", "kind": .string(roleKind), "name": .string(roleName)]
                    ),
                    ("subjects", subject),
                ]
            )
        }
        let coreDNSRole = "\(name)-coredns"
        return [
            role("ClusterRole", name, namespace: nil, clusterRules),
            binding("ClusterRoleBinding", "ClusterRole", name, namespace: nil),
            role("Role", name, namespace: settings.namespace, namespaceRules),
            binding("RoleBinding", "Role", name, namespace: settings.namespace),
            role("Role", coreDNSRole, namespace: settings.coreDNS.namespace, coreDNSRules(settings.coreDNS)),
            binding("RoleBinding", "Role", coreDNSRole, namespace: settings.coreDNS.namespace),
        ]
    }
}
