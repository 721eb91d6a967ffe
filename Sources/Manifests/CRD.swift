/// The `EgressHost` CustomResourceDefinition, generated from the Swift types.
public enum CRD {
    public static var name: String { "\(EgressHost.plural).\(EgressHost.group)" }

    public static func egressHost() -> JSON {
        Kube.object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            metadata: Kube.metadata(name: name, labels: ["app.kubernetes.io/part-of": "egress-operator"]),
            [
                (
                    "spec",
                    [
                        "group": .string(EgressHost.group),
                        "names": [
                            "kind": .string(EgressHost.kind),
                            "listKind": .string(EgressHost.kind + "List"),
                            "plural": .string(EgressHost.plural),
                            "singular": .string(EgressHost.singular),
                            "shortNames": [.string(EgressHost.shortName)],
                            "categories": ["egress"],
                        ],
                        "scope": "Cluster",
                        "versions": [
                            [
                                "name": .string(EgressHost.version),
                                "served": true,
                                "storage": true,
                                "subresources": ["status": [:]],
                                "additionalPrinterColumns": printerColumns,
                                "schema": ["openAPIV3Schema": EgressHost.schema],
                            ]
                        ],
                    ]
                )
            ]
        )
    }

    static let printerColumns: JSON = [
        ["name": "Host", "type": "string", "jsonPath": ".spec.host"],
        ["name": "Port", "type": "integer", "jsonPath": ".spec.port"],
        ["name": "Ready", "type": "string", "jsonPath": #".status.conditions[?(@.type=="Ready")].status"#],
        // The first False condition's reason: the cause (`InvalidTLSMaterial`, not `NotAccepted`), and empty when
        // the host is Ready (the server prints the first match of a column's path).
        [
            "name": "Reason", "type": "string", "jsonPath": #".status.conditions[?(@.status=="False")].reason"#,
            "description": "Why the EgressHost is not Ready: the reason of its first condition that is False.",
        ],
        ["name": "URL", "type": "string", "jsonPath": ".status.internalURL", "priority": 1],
        ["name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"],
    ]
}
