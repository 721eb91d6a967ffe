/// Small helpers for building Kubernetes objects as ordered `JSON`.
public enum Kube {
    public static func metadata(
        name: String,
        namespace: String? = nil,
        labels: [String: String] = [:],
        annotations: [String: String] = [:]
    ) -> JSON {
        JSON.object([
            ("name", .string(name)),
            ("namespace", JSON(namespace)),
            ("labels", labels.isEmpty ? .null : JSON(labels)),
            ("annotations", annotations.isEmpty ? .null : JSON(annotations)),
        ]).compacted
    }

    public static func object(_ apiVersion: String, _ kind: String, metadata: JSON, _ body: [(String, JSON)]) -> JSON {
        .object([("apiVersion", .string(apiVersion)), ("kind", .string(kind)), ("metadata", metadata)] + body)
    }

    /// The restricted Pod Security Standard, for every container we ship.
    static let containerSecurityContext: JSON = [
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": ["drop": ["ALL"]],
        "seccompProfile": ["type": "RuntimeDefault"],
    ]

    static let podSecurityContext: JSON = [
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": ["type": "RuntimeDefault"],
    ]

    static func httpProbe(path: String, port: String, period: Int = 10, failureThreshold: Int = 3) -> JSON {
        [
            "httpGet": ["path": .string(path), "port": .string(port)],
            "periodSeconds": .int(period),
            "failureThreshold": .int(failureThreshold),
        ]
    }

    /// Spread over zones and nodes, preferring but not requiring it (a one-node dev cluster still schedules).
    static func topologySpread(labels: [String: String]) -> JSON {
        .array(
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"].map { key in
                [
                    "maxSkew": 1,
                    "topologyKey": .string(key),
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": ["matchLabels": JSON(labels)],
                ]
            }
        )
    }

    static let downwardEnvironment: JSON = [
        ["name": "POD_NAMESPACE", "valueFrom": ["fieldRef": ["fieldPath": "metadata.namespace"]]],
        ["name": "POD_NAME", "valueFrom": ["fieldRef": ["fieldPath": "metadata.name"]]],
    ]
}
