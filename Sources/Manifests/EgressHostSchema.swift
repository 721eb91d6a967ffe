/// The OpenAPI schema of each `EgressHost` type, declared beside the Swift type it describes. The CRD is built
/// from these; `SchemaTests` checks that every coding key has a property and every property a coding key.
extension EgressHost {
    static var schema: JSON {
        OpenAPI.object(
            "An external host that applications in the cluster may call in plaintext at "
                + "http://HOST.egress.local; the egress proxy originates verified TLS to it.",
            required: ["spec"],
            [
                "apiVersion": OpenAPI.string("APIVersion of this object."),
                "kind": OpenAPI.string("Kind of this object."),
                "metadata": ["type": "object"],
                "spec": Spec.schema,
                "status": Status.schema,
            ]
        )
    }
}

extension EgressHost.Spec {
    static var schema: JSON {
        OpenAPI.object(
            "The allowed host and how the proxy reaches it.",
            required: ["host"],
            [
                "host": OpenAPI.string(
                    "The external host: a lowercase DNS name such as api.github.com, or a wildcard *.example.com "
                        + "matching one or more labels in front of example.com (not example.com itself). "
                        + "No scheme, port, path or IP address. At most 240 characters, so that HOST.egress.local is "
                        + "a DNS name.",
                    maxLength: HostName.maxLength(under: HostName.reservedSuffix),
                    allOf: HostName.rules.filter { !$0.negated }.map { ["pattern": .string($0.pattern)] },
                    not: HostName.rules.first { $0.negated }.map { ["pattern": .string($0.pattern)] }
                ),
                "port": OpenAPI.integer(
                    "The upstream's TLS port.",
                    minimum: 1,
                    maximum: 65535,
                    defaultValue: Self.defaultPort,
                    format: "int32"
                ),
                "tls": EgressHost.TLS.schema,
                "addresses": OpenAPI.array(
                    "Fixed upstream IP addresses used instead of resolving host (not with a wildcard host).",
                    items: OpenAPI.string("An IPv4 or IPv6 address.", pattern: IPAddress.pattern, maxLength: 45),
                    maxItems: SpecValidation.maxAddresses,
                    listType: "atomic"
                ),
                "allowPrivateAddresses": OpenAPI.boolean(
                    "Allow upstream addresses in loopback, private, link-local, CGNAT, multicast or unspecified "
                        + "ranges. Off by default to prevent SSRF into the cluster's own network.",
                    defaultValue: false
                ),
                "timeouts": EgressHost.Timeouts.schema,
            ]
        )
    }
}

extension EgressHost.TLS {
    static var schema: JSON {
        OpenAPI.object(
            "TLS origination settings. Certificates are always verified unless insecureSkipVerify is true.",
            [
                "caBundle": EgressHost.CABundleReference.schema,
                "clientCertificate": EgressHost.SecretReference.schema,
                "serverName": OpenAPI.string(
                    "Server name for SNI and certificate verification when it differs from host.",
                    pattern: #"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"#,
                    maxLength: HostName.maxLength
                ),
                "insecureSkipVerify": OpenAPI.boolean(
                    "Do not verify the upstream's certificate or name. Reported as a warning; for testing only.",
                    defaultValue: false
                ),
            ]
        )
    }
}

private let objectNamePattern = #"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"#

extension EgressHost.CABundleReference {
    static var schema: JSON {
        OpenAPI.object(
            "PEM trust roots that replace the system roots for this host, from a ConfigMap or Secret in the "
                + "operator's namespace.",
            required: ["kind", "name"],
            [
                "kind": OpenAPI.string("ConfigMap or Secret.", enumValues: Kind.allCases.map(\.rawValue)),
                "name": OpenAPI.string("Name of the ConfigMap or Secret.", pattern: objectNamePattern, maxLength: 253),
                "key": OpenAPI.string(
                    "Key holding the PEM bundle.",
                    pattern: #"^[-._a-zA-Z0-9]+$"#,
                    maxLength: 253,
                    defaultValue: Self.defaultKey
                ),
            ]
        )
    }
}

extension EgressHost.SecretReference {
    static var schema: JSON {
        OpenAPI.object(
            "A kubernetes.io/tls Secret in the operator's namespace whose certificate the proxy presents to the "
                + "upstream (mutual TLS).",
            required: ["name"],
            ["name": OpenAPI.string("Name of the Secret.", pattern: objectNamePattern, maxLength: 253)]
        )
    }
}

extension EgressHost.Timeouts {
    static var schema: JSON {
        OpenAPI.object(
            "Upstream timeouts as durations (500ms, 5s, 1m30s).",
            defaultValue: [:],
            [
                "connect": OpenAPI.string(
                    "TCP connect plus TLS handshake.",
                    pattern: GoDuration.pattern,
                    maxLength: 32,
                    defaultValue: Self.defaultConnect
                ),
                "responseHeaders": OpenAPI.string(
                    "Until the upstream's response headers arrive.",
                    pattern: GoDuration.pattern,
                    maxLength: 32,
                    defaultValue: Self.defaultResponseHeaders
                ),
                "idle": OpenAPI.string(
                    "How long an idle pooled connection or a quiet stream is kept.",
                    pattern: GoDuration.pattern,
                    maxLength: 32,
                    defaultValue: Self.defaultIdle
                ),
            ]
        )
    }
}

extension EgressHost.Status {
    static var schema: JSON {
        OpenAPI.object(
            "What the operator did with this host.",
            [
                "observedGeneration": OpenAPI.integer(
                    "The metadata.generation the status describes.",
                    format: "int64"
                ),
                "conditions": OpenAPI.array(
                    "Accepted, Programmed and Ready, each with a reason and a message.",
                    items: Condition.schema,
                    maxItems: 16,
                    listType: "map",
                    listMapKeys: ["type"]
                ),
                "internalURL": OpenAPI.string("The URL applications call, e.g. http://api.github.com.egress.local."),
            ]
        )
    }
}

extension Condition {
    static var schema: JSON {
        OpenAPI.object(
            "A condition in the metav1.Condition shape.",
            required: ["type", "status", "reason", "message", "lastTransitionTime"],
            [
                "type": OpenAPI.string("Accepted, Programmed, Ready or InsecureSkipVerify.", maxLength: 316),
                "status": OpenAPI.string("True, False or Unknown.", enumValues: ["True", "False", "Unknown"]),
                "reason": OpenAPI.string("A CamelCase reason.", maxLength: 1024),
                "message": OpenAPI.string("A human-readable message.", maxLength: 32768),
                "lastTransitionTime": OpenAPI.string("When the status last changed.", format: "date-time"),
                "observedGeneration": OpenAPI.integer("The generation this condition describes.", format: "int64"),
            ]
        )
    }
}
