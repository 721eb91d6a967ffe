/// The operator's own workload: Namespace, ServiceAccount, Deployment and metrics Service.
public enum OperatorWorkload {
    public static func objects(_ settings: OperatorSettings) -> [JSON] {
        [namespace(settings), serviceAccount(settings), deployment(settings), metricsService(settings)]
    }

    static func namespace(_ settings: OperatorSettings) -> JSON {
        Kube.object(
            "v1",
            "Namespace",
            metadata: Kube.metadata(
                name: settings.namespace,
                labels: [
                    "app.kubernetes.io/part-of": "egress-operator",
                    "pod-security.kubernetes.io/enforce": "restricted",
                ]
            ),
            []
        )
    }

    static func serviceAccount(_ settings: OperatorSettings) -> JSON {
        Kube.object(
            "v1",
            "ServiceAccount",
            metadata: Kube.metadata(name: settings.name, namespace: settings.namespace, labels: settings.labels),
            []
        )
    }

    static func deployment(_ settings: OperatorSettings) -> JSON {
        let container: JSON = [
            "name": "operator",
            "image": .string(settings.image),
            "imagePullPolicy": .string(settings.imagePullPolicy),
            "args": JSON(arguments(settings)),
            "env": Kube.downwardEnvironment,
            "ports": [["name": "admin", "containerPort": .int(settings.adminPort), "protocol": "TCP"]],
            "readinessProbe": Kube.httpProbe(path: "/readyz", port: "admin", period: 5),
            "livenessProbe": Kube.httpProbe(path: "/healthz", port: "admin", period: 10),
            "resources": [
                "requests": ["cpu": "50m", "memory": "64Mi"],
                "limits": ["memory": "256Mi"],
            ],
            "securityContext": Kube.containerSecurityContext,
        ]
        return Kube.object(
            "apps/v1",
            "Deployment",
            metadata: Kube.metadata(name: settings.name, namespace: settings.namespace, labels: settings.labels),
            [
                (
                    "spec",
                    [
                        "replicas": .int(settings.replicas),
                        "selector": ["matchLabels": JSON(settings.labels)],
                        "template": [
                            "metadata": ["labels": JSON(settings.labels)],
                            "spec": [
                                "serviceAccountName": .string(settings.name),
                                "securityContext": Kube.podSecurityContext,
                                "terminationGracePeriodSeconds": 30,
                                "topologySpreadConstraints": Kube.topologySpread(labels: settings.labels),
                                "containers": [container],
                            ],
                        ],
                    ]
                )
            ]
        )
    }

    /// The flags the operator's Deployment passes; the chart passes the same ones, and `--namespace` (here the
    /// pod's namespace, `POD_NAMESPACE`, says it: a kustomize overlay may move it).
    public static func arguments(_ settings: OperatorSettings) -> [String] {
        [
            "run",
            "--leader-elect",
            "--admin-port=\(settings.adminPort)",
            "--log-level=\(settings.logLevel)",
            "--coredns-mode=\(settings.coreDNS.mode.rawValue)",
            "--proxy-image=\(settings.proxy.image)",
        ]
    }

    static func metricsService(_ settings: OperatorSettings) -> JSON {
        Kube.object(
            "v1",
            "Service",
            metadata: Kube.metadata(
                name: "\(settings.name)-metrics",
                namespace: settings.namespace,
                labels: settings.labels
            ),
            [
                (
                    "spec",
                    [
                        "selector": JSON(settings.labels),
                        "ports": [["name": "admin", "port": .int(settings.adminPort), "targetPort": "admin"]],
                    ]
                )
            ]
        )
    }
}
