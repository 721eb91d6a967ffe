/// Realistic `EgressHost` examples, rendered into `config/samples` and validated against the CRD schema in tests.
public enum Samples {
    public static let all: [(file: String, host: EgressHost)] = [
        ("github-api.yaml", EgressHost(name: "github-api", spec: .init(host: "api.github.com"))),
        (
            "googleapis-wildcard.yaml",
            EgressHost(
                name: "googleapis",
                spec: .init(host: "*.googleapis.com", timeouts: .init(responseHeaders: "60s"))
            )
        ),
        (
            "partner-custom-ca.yaml",
            EgressHost(
                name: "partner-payments",
                spec: .init(
                    host: "payments.partner.example.com",
                    port: 8443,
                    tls: .init(
                        caBundle: .init(kind: .configMap, name: "partner-ca", key: "ca.crt"),
                        clientCertificate: .init(name: "partner-client-cert")
                    ),
                    timeouts: .init(connect: "2s", responseHeaders: "10s", idle: "5m")
                )
            )
        ),
        (
            "stripe-fixed-addresses.yaml",
            EgressHost(
                name: "stripe-api",
                spec: .init(host: "api.stripe.com", addresses: ["198.51.100.10", "198.51.100.11"])
            )
        ),
    ]

    /// A sample as users write it: no status, no empty fields.
    public static func manifest(_ host: EgressHost) -> JSON {
        let spec = (try? JSON(encoding: host.spec)) ?? [:]
        return Kube.object(
            host.apiVersion,
            host.kind,
            metadata: Kube.metadata(name: host.metadata.name),
            [("spec", spec)]
        )
    }
}
