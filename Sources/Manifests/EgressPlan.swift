/// The pure planner: from every `EgressHost` and the TLS material they reference to what the proxy should allow,
/// what its TLS Secret should hold, which names DNS should route, and a verdict per object for its status.
///
/// It reads no clock and no cluster: the operator hands it the informers' caches and applies the result.
public struct EgressPlan: Sendable, Hashable {
    public var verdicts: [String: HostVerdict]
    public var allowList: AllowList
    /// Data of the proxy's TLS Secret: `<egresshost>.ca.crt`, `<egresshost>.tls.crt`, `<egresshost>.tls.key`.
    public var tlsSecretData: [String: String]
    /// The hosts of accepted objects, sorted: what the proxy allows and (once it has them) DNS routes.
    public var hosts: [String] { allowList.hosts.map(\.host) }

    public init(
        egressHosts: [EgressHost],
        material: TLSMaterial,
        tlsMountPath: String = ProxySettings.defaultTLSMountPath
    ) {
        // The oldest claim on a host wins, the name breaking ties; an object claims its host only if its spec is
        // valid and its TLS material resolves. Two passes find each host's winner without sorting the objects
        // (with thousands of them, the sort was the largest share of a plan).
        typealias Age = (created: String, name: String)
        func age(_ index: Int) -> Age {
            (egressHosts[index].metadata.creationTimestamp ?? "", egressHosts[index].metadata.name)
        }
        var problems: [[String]] = []
        var resolutions: [Result<TLSMaterial.Resolved, TLSMaterial.Missing>?] = []
        problems.reserveCapacity(egressHosts.count)
        resolutions.reserveCapacity(egressHosts.count)
        var winners: [String: Int] = [:]
        winners.reserveCapacity(egressHosts.count)
        for index in egressHosts.indices {
            let spec = egressHosts[index].spec
            let found = SpecValidation.problems(spec)
            problems.append(found)
            guard found.isEmpty else {
                resolutions.append(nil)
                continue
            }
            let resolution = material.resolve(spec.tls, for: egressHosts[index].metadata.name, mountPath: tlsMountPath)
            resolutions.append(resolution)
            guard case .success = resolution else { continue }
            if let winner = winners[spec.host], age(winner) < age(index) { continue }
            winners[spec.host] = index
        }

        var verdicts: [String: HostVerdict] = [:]
        var entries: [AllowList.Entry] = []
        var secretData: [String: String] = [:]
        verdicts.reserveCapacity(egressHosts.count)
        entries.reserveCapacity(winners.count)
        for index in egressHosts.indices {
            let name = egressHosts[index].metadata.name
            let spec = egressHosts[index].spec
            if !problems[index].isEmpty {
                verdicts[name] = HostVerdict(.invalidSpec(problems[index].joined(separator: "; ")))
            } else if let winner = winners[spec.host], winner != index, age(winner) < age(index) {
                verdicts[name] = HostVerdict(.hostConflict(owner: egressHosts[winner].metadata.name))
            } else if case .failure(let missing) = resolutions[index] {
                verdicts[name] = HostVerdict(.missingMaterial(missing.description))
            } else if case .success(let resolved) = resolutions[index] {
                secretData.merge(resolved.files) { $1 }
                entries.append(Self.entry(spec, tls: resolved.tls))
                verdicts[name] = HostVerdict(.accepted(insecure: spec.tls?.insecureSkipVerify == true))
            }
        }
        self.verdicts = verdicts
        self.allowList = AllowList(hosts: entries)
        self.tlsSecretData = secretData
    }

    static func entry(_ spec: EgressHost.Spec, tls: AllowList.TLS) -> AllowList.Entry {
        let timeouts = spec.timeouts
        return AllowList.Entry(
            host: spec.host,
            port: spec.effectivePort,
            tls: tls,
            addresses: spec.addresses ?? [],
            allowPrivateAddresses: spec.allowPrivateAddresses ?? false,
            timeouts: AllowList.Timeouts(
                connectMillis: timeouts?.connect.flatMap(GoDuration.milliseconds)
                    ?? AllowList.Timeouts.defaultConnectMillis,
                responseHeadersMillis: timeouts?.responseHeaders.flatMap(GoDuration.milliseconds)
                    ?? AllowList.Timeouts.defaultResponseHeadersMillis,
                idleMillis: timeouts?.idle.flatMap(GoDuration.milliseconds) ?? AllowList.Timeouts.defaultIdleMillis
            )
        )
    }
}

/// What the planner decided for one `EgressHost`; the operator turns it into status conditions and Events.
public struct HostVerdict: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        case accepted(insecure: Bool)
        case invalidSpec(String)
        /// Another, older object already claims the same host.
        case hostConflict(owner: String)
        case missingMaterial(String)
    }
    public let outcome: Outcome
    public init(_ outcome: Outcome) { self.outcome = outcome }

    public var isAccepted: Bool {
        if case .accepted = outcome { true } else { false }
    }

    /// The `Accepted` condition's reason and message.
    public var acceptedReason: (reason: String, message: String) {
        switch outcome {
        case .accepted(let insecure):
            (
                "Accepted",
                insecure ? "accepted; upstream certificates are NOT verified (insecureSkipVerify)" : "accepted"
            )
        case .invalidSpec(let message): ("InvalidSpec", message)
        case .hostConflict(let owner): ("HostConflict", "EgressHost \(owner) already claims this host")
        case .missingMaterial(let message): ("MissingSecret", message)
        }
    }
}

/// The contents of the ConfigMaps and Secrets (in the operator's namespace) that EgressHosts may reference.
public struct TLSMaterial: Sendable, Hashable {
    /// ConfigMap name → data.
    public var configMaps: [String: [String: String]]
    /// Secret name → decoded data.
    public var secrets: [String: [String: String]]

    public init(configMaps: [String: [String: String]] = [:], secrets: [String: [String: String]] = [:]) {
        self.configMaps = configMaps
        self.secrets = secrets
    }

    struct Missing: Error, CustomStringConvertible {
        let description: String
    }

    struct Resolved {
        var tls: AllowList.TLS
        var files: [String: String]
    }

    func resolve(_ tls: EgressHost.TLS?, for name: String, mountPath: String) -> Result<Resolved, Missing> {
        var result = Resolved(
            tls: AllowList.TLS(serverName: tls?.serverName, insecureSkipVerify: tls?.insecureSkipVerify ?? false),
            files: [:]
        )
        if let bundle = tls?.caBundle {
            let source = bundle.kind == .configMap ? configMaps[bundle.name] : secrets[bundle.name]
            guard let data = source else {
                return .failure(Missing(description: "\(bundle.kind.rawValue) \(bundle.name) not found"))
            }
            guard let pem = data[bundle.effectiveKey], !pem.isEmpty else {
                return .failure(
                    Missing(description: "\(bundle.kind.rawValue) \(bundle.name) has no key \(bundle.effectiveKey)")
                )
            }
            let file = "\(name).ca.crt"
            result.files[file] = pem
            result.tls.caFile = "\(mountPath)/\(file)"
        }
        if let reference = tls?.clientCertificate {
            guard let data = secrets[reference.name] else {
                return .failure(Missing(description: "Secret \(reference.name) not found"))
            }
            guard let certificate = data["tls.crt"], let key = data["tls.key"], !certificate.isEmpty, !key.isEmpty
            else {
                return .failure(Missing(description: "Secret \(reference.name) needs tls.crt and tls.key"))
            }
            result.files["\(name).tls.crt"] = certificate
            result.files["\(name).tls.key"] = key
            result.tls.clientCertificateFile = "\(mountPath)/\(name).tls.crt"
            result.tls.clientKeyFile = "\(mountPath)/\(name).tls.key"
        }
        return .success(result)
    }
}
