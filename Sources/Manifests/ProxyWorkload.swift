/// The proxy's workload, which the operator owns and applies: ServiceAccount, Deployment, Service,
/// PodDisruptionBudget, NetworkPolicy and, with autoscaling, a HorizontalPodAutoscaler. Every object carries
/// `ownedLabels`, which is how the operator finds what it owns (and deletes what is no longer desired) without
/// touching anything else.
public enum ProxyWorkload {
    public static let managedByLabels = ["app.kubernetes.io/managed-by": "egress-operator"]
    public static let installationLabel = "egress.dev/installation"

    /// Managed by egress-operator, and by *this* installation (named by its namespace): an operator deletes only
    /// objects with both, so two installations in one cluster never remove each other's lockdown policies.
    public static func ownedLabels(_ settings: OperatorSettings) -> [String: String] {
        managedByLabels.merging([installationLabel: settings.namespace]) { $1 }
    }

    /// The label selector matching `ownedLabels`.
    public static func ownedSelector(_ settings: OperatorSettings) -> String {
        ownedLabels(settings).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ",")
    }

    /// The label selector of the proxy's pods.
    public static func podSelector(_ settings: OperatorSettings) -> String {
        settings.proxy.labels.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ",")
    }

    /// - Parameter currentReplicas: the live Deployment's `spec.replicas`, if it exists (see `replicas`).
    public static func objects(_ settings: OperatorSettings, currentReplicas: Int? = nil) -> [JSON] {
        [
            serviceAccount(settings), deployment(settings, currentReplicas: currentReplicas), service(settings),
            podDisruptionBudget(settings), networkPolicy(settings),
        ] + (settings.proxy.autoscaling.map { [horizontalPodAutoscaler(settings, $0)] } ?? [])
    }

    /// The Deployment's `spec.replicas`: the setting, or with autoscaling what the autoscaler last chose, within
    /// its bounds. The operator keeps applying the field even then: server-side apply resets a field its only
    /// owner stops applying (to one replica here), and the autoscaler owns it only once it has changed it. Applying
    /// the current value never undoes a scaling, and takes the field back from nobody.
    public static func replicas(_ proxy: ProxySettings, currentReplicas: Int?) -> Int {
        guard let autoscaling = proxy.autoscaling else { return proxy.replicas }
        let (fewest, most) = (proxy.replicas, max(autoscaling.maxReplicas, proxy.replicas))
        return min(max(currentReplicas ?? fewest, fewest), most)
    }

    static func labels(_ settings: OperatorSettings) -> [String: String] {
        settings.proxy.labels.merging(ownedLabels(settings)) { $1 }
    }

    static func metadata(_ settings: OperatorSettings, name: String? = nil) -> JSON {
        Kube.metadata(
            name: name ?? settings.proxy.name,
            namespace: settings.namespace,
            labels: labels(settings)
        )
    }

    static func serviceAccount(_ settings: OperatorSettings) -> JSON {
        // The proxy never talks to the API server: no token in its pods.
        Kube.object("v1", "ServiceAccount", metadata: metadata(settings), [("automountServiceAccountToken", false)])
    }

    /// The flags the proxy runs with; the allow-list and TLS material arrive as mounted files it hot-reloads.
    public static func arguments(_ proxy: ProxySettings) -> [String] {
        [
            "--port=\(proxy.port)",
            "--admin-port=\(proxy.adminPort)",
            "--suffix=\(proxy.suffix)",
            "--allowlist=\(ProxySettings.allowListMountPath)/\(ProxySettings.allowListKey)",
            "--max-connections=\(proxy.maxClientConnections)",
            // Within the pod's 30 s termination grace: 5 s still accepting while the endpoint is removed, then up
            // to 20 s for in-flight requests.
            "--shutdown-delay=5",
            "--shutdown-grace=20",
        ] + (proxy.logPaths ? ["--log-paths"] : []) + (proxy.accessLog ? [] : ["--no-access-log"])
    }

    static func deployment(_ settings: OperatorSettings, currentReplicas: Int? = nil) -> JSON {
        let proxy = settings.proxy
        let container: JSON = [
            "name": "proxy",
            "image": .string(proxy.image),
            "imagePullPolicy": .string(proxy.imagePullPolicy),
            "args": JSON(arguments(proxy)),
            "ports": [
                ["name": "http", "containerPort": .int(proxy.port), "protocol": "TCP"],
                ["name": "admin", "containerPort": .int(proxy.adminPort), "protocol": "TCP"],
            ],
            "readinessProbe": Kube.httpProbe(path: "/readyz", port: "admin", period: 5),
            "livenessProbe": Kube.httpProbe(path: "/healthz", port: "admin", period: 10),
            "resources": [
                "requests": ["cpu": .string(proxy.cpuRequest), "memory": .string(proxy.memoryRequest)],
                "limits": ["memory": .string(proxy.memoryLimit)],
            ],
            "securityContext": Kube.containerSecurityContext,
            "volumeMounts": [
                ["name": "allowlist", "mountPath": .string(ProxySettings.allowListMountPath), "readOnly": true],
                ["name": "tls", "mountPath": .string(proxy.tlsMountPath), "readOnly": true],
            ],
        ]
        return Kube.object(
            "apps/v1",
            "Deployment",
            metadata: metadata(settings),
            [
                (
                    "spec",
                    [
                        "replicas": .int(replicas(proxy, currentReplicas: currentReplicas)),
                        "selector": ["matchLabels": JSON(proxy.labels)],
                        // Egress must not dip during a rollout.
                        "strategy": ["type": "RollingUpdate", "rollingUpdate": ["maxUnavailable": 0, "maxSurge": 1]],
                        "template": [
                            "metadata": JSON.object([
                                ("labels", JSON(proxy.labels)),
                                ("annotations", proxy.podAnnotations.isEmpty ? .null : JSON(proxy.podAnnotations)),
                            ]).compacted,
                            "spec": [
                                "serviceAccountName": .string(proxy.name),
                                "automountServiceAccountToken": false,
                                "securityContext": Kube.podSecurityContext,
                                "terminationGracePeriodSeconds": 30,
                                "topologySpreadConstraints": Kube.topologySpread(labels: proxy.labels),
                                "containers": [container],
                                "volumes": [
                                    [
                                        "name": "allowlist",
                                        "configMap": ["name": .string(proxy.allowListConfigMapName)],
                                    ],
                                    [
                                        "name": "tls",
                                        "secret": ["secretName": .string(proxy.tlsSecretName), "optional": true],
                                    ],
                                ],
                            ],
                        ],
                    ]
                )
            ]
        )
    }

    static func service(_ settings: OperatorSettings) -> JSON {
        let proxy = settings.proxy
        return Kube.object(
            "v1",
            "Service",
            metadata: metadata(settings),
            [
                (
                    "spec",
                    [
                        "type": "ClusterIP",
                        "selector": JSON(proxy.labels),
                        "ports": [
                            [
                                "name": "http",
                                "port": .int(proxy.servicePort),
                                "targetPort": "http",
                                "protocol": "TCP",
                                "appProtocol": "http",
                            ],
                            ["name": "admin", "port": .int(proxy.adminPort), "targetPort": "admin", "protocol": "TCP"],
                        ],
                    ]
                )
            ]
        )
    }

    static func podDisruptionBudget(_ settings: OperatorSettings) -> JSON {
        Kube.object(
            "policy/v1",
            "PodDisruptionBudget",
            metadata: metadata(settings),
            [("spec", ["maxUnavailable": 1, "selector": ["matchLabels": JSON(settings.proxy.labels)]])]
        )
    }

    /// CPU-based, as Istio's egress gateway: `autoscaling/v1`, served by every Kubernetes release the operator
    /// supports. It needs the cluster's resource metrics (metrics-server); without them it still keeps the
    /// Deployment within its bounds.
    static func horizontalPodAutoscaler(_ settings: OperatorSettings, _ autoscaling: ProxySettings.Autoscaling) -> JSON
    {
        Kube.object(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            metadata: metadata(settings),
            [
                (
                    "spec",
                    [
                        "scaleTargetRef": [
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": .string(settings.proxy.name),
                        ],
                        "minReplicas": .int(settings.proxy.replicas),
                        "maxReplicas": .int(autoscaling.maxReplicas),
                        "targetCPUUtilizationPercentage": .int(autoscaling.targetCPUUtilizationPercentage),
                    ]
                )
            ]
        )
    }

    /// Linkerd's proxy admin port (probes, metrics) must stay reachable on meshed pods.
    static let linkerdAdminPort = 4191
    /// Linkerd's inbound port: a meshed client's proxy connects to it instead of the target port (Linkerd's
    /// "Network Policy" page), so a policy that leaves it out blocks every meshed call.
    static let linkerdInboundPort = 4143

    /// Whether the proxy pods are meshed by Linkerd (its annotations are set on them).
    static func meshedByLinkerd(_ proxy: ProxySettings) -> Bool {
        proxy.podAnnotations.keys.contains(where: { $0.hasPrefix("linkerd.io/") })
    }

    /// The ports clients reach the proxy pods on: the proxy's, and Linkerd's inbound port when meshed.
    static func clientPorts(_ proxy: ProxySettings) -> JSON {
        var ports: [JSON] = [["protocol": "TCP", "port": .int(proxy.port)]]
        if meshedByLinkerd(proxy) { ports.append(["protocol": "TCP", "port": .int(linkerdInboundPort)]) }
        return .array(ports)
    }

    /// Admits the clients it should and nothing else: pods of the selected namespaces on the proxy port, and on
    /// Linkerd's inbound port when meshed (no ipBlock, so nothing outside the cluster), scrapes on the admin port,
    /// and Linkerd's admin port when meshed.
    static func networkPolicy(_ settings: OperatorSettings) -> JSON {
        let proxy = settings.proxy
        let clients: JSON = [
            "namespaceSelector": proxy.clientNamespaceLabels.isEmpty
                ? [:] : ["matchLabels": JSON(proxy.clientNamespaceLabels)]
        ]
        var adminPorts: [JSON] = [["protocol": "TCP", "port": .int(proxy.adminPort)]]
        if meshedByLinkerd(proxy) { adminPorts.append(["protocol": "TCP", "port": .int(linkerdAdminPort)]) }
        return Kube.object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            metadata: metadata(settings),
            [
                (
                    "spec",
                    [
                        "podSelector": ["matchLabels": JSON(proxy.labels)],
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            ["from": [clients], "ports": clientPorts(proxy)],
                            ["from": [["namespaceSelector": [:]]], "ports": .array(adminPorts)],
                        ],
                    ]
                )
            ]
        )
    }

    /// For a namespace that opted into lockdown: its pods may reach DNS, in-cluster addresses and the egress
    /// proxy, and nothing else, so the proxy's allow-list is the only way out.
    public static func lockdownPolicy(namespace: String, _ settings: OperatorSettings) -> JSON {
        Kube.object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            metadata: Kube.metadata(
                name: settings.lockdown.policyName,
                namespace: namespace,
                labels: ownedLabels(settings).merging(["app.kubernetes.io/part-of": "egress-operator"]) { $1 }
            ),
            [
                (
                    "spec",
                    [
                        "podSelector": [:],
                        "policyTypes": ["Egress"],
                        "egress": [
                            [
                                "to": [
                                    [
                                        "namespaceSelector": [
                                            "matchLabels": [
                                                "kubernetes.io/metadata.name": .string(settings.coreDNS.namespace)
                                            ]
                                        ],
                                        "podSelector": ["matchLabels": ["k8s-app": "kube-dns"]],
                                    ]
                                ],
                                "ports": [["protocol": "UDP", "port": 53], ["protocol": "TCP", "port": 53]],
                            ],
                            [
                                "to": [
                                    [
                                        "namespaceSelector": [
                                            "matchLabels": ["kubernetes.io/metadata.name": .string(settings.namespace)]
                                        ],
                                        "podSelector": ["matchLabels": JSON(settings.proxy.labels)],
                                    ]
                                ],
                                "ports": clientPorts(settings.proxy),
                            ],
                            ["to": .array(settings.lockdown.clusterCIDRs.map { ["ipBlock": ["cidr": .string($0)]] })],
                        ],
                    ]
                )
            ]
        )
    }
}
