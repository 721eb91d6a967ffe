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
    public var hosts: [String] { allowList.hostNames }

    public init(
        egressHosts: [EgressHost],
        material: TLSMaterial,
        tlsMountPath: String = ProxySettings.defaultTLSMountPath,
        suffix: String = HostName.reservedSuffix
    ) {
        self.init(
            egressHosts: egressHosts,
            assessments: egressHosts.map {
                Self.assess(
                    $0.spec,
                    name: $0.metadata.name,
                    material: material,
                    tlsMountPath: tlsMountPath,
                    suffix: suffix
                )
            }
        )
    }

    /// With each EgressHost already assessed (`assessments[i]` for `egressHosts[i]`): an assessment depends only on
    /// its own object, so the operator reuses it while the spec and the material stay the same.
    ///
    /// `hostOrder`, if given, lists the indices of `egressHosts` sorted by host: the allow-list's entries then come
    /// out in order, and sorting them (most of a plan of thousands of hosts) is skipped. The plan is the same for
    /// any order; only its cost differs.
    public init(egressHosts: [EgressHost], assessments: [Assessment], hostOrder: [Int]? = nil) {
        precondition(egressHosts.count == assessments.count, "one assessment per EgressHost")
        precondition(hostOrder.map { $0.count == egressHosts.count } ?? true, "an order of every EgressHost")
        assert(hostOrder.map { Set($0) == Set(egressHosts.indices) } ?? true, "an order of every EgressHost once")
        // The oldest claim on a host wins, the name breaking ties; an object claims its host only if its spec is
        // valid and its TLS material resolves. Two passes find each host's winner without sorting the objects
        // (with thousands of them, the sort was the largest share of a plan).
        typealias Age = (created: String, name: String)
        func age(_ index: Int) -> Age {
            (egressHosts[index].metadata.creationTimestamp ?? "", egressHosts[index].metadata.name)
        }
        var winners: [String: Int] = [:]
        winners.reserveCapacity(egressHosts.count)
        for index in egressHosts.indices {
            guard case .claim = assessments[index].outcome else { continue }
            let host = egressHosts[index].spec.host
            if let winner = winners[host], age(winner) < age(index) { continue }
            winners[host] = index
        }
        // Nearly every claim wins its host: marking the winners spares looking each claim's host up again.
        var wins = [Bool](repeating: false, count: egressHosts.count)
        for winner in winners.values { wins[winner] = true }

        var verdicts: [String: HostVerdict] = [:]
        var entries: [AllowList.Entry] = []
        /// The object of each entry, and the allow-list's size as estimated entry by entry.
        var entryObjects: [Int] = []
        var listBytes = 0
        var secretData = SecretFiles()
        verdicts.reserveCapacity(egressHosts.count)
        entries.reserveCapacity(winners.count)
        for index in hostOrder ?? Array(egressHosts.indices) {
            let name = egressHosts[index].metadata.name
            switch assessments[index].outcome {
            case .invalid(let problems):
                verdicts[name] = HostVerdict(.invalidSpec(problems.joined(separator: "; ")))
            case .unresolved(let problem):
                // An older valid claim on the same host is reported before missing or unusable material, as it is
                // the first thing to fix.
                if let winner = winners[egressHosts[index].spec.host], age(winner) < age(index) {
                    verdicts[name] = HostVerdict(.hostConflict(owner: egressHosts[winner].metadata.name))
                } else {
                    switch problem.kind {
                    case .missing: verdicts[name] = HostVerdict(.missingMaterial(problem.description))
                    case .unusable: verdicts[name] = HostVerdict(.unusableMaterial(problem.description))
                    }
                }
            case .claim(var entry, let files, let insecure):
                if !wins[index], let winner = winners[entry.host] {
                    verdicts[name] = HostVerdict(.hostConflict(owner: egressHosts[winner].metadata.name))
                } else if secretData.add(files, for: &entry.tls) {
                    listBytes += entry.estimatedEncodedBytes
                    entries.append(entry)
                    entryObjects.append(index)
                    verdicts[name] = HostVerdict(.accepted(insecure: insecure))
                } else {
                    verdicts[name] = HostVerdict(.tlsMaterialTooLarge(limit: SecretFiles.maximumBytes))
                }
            }
        }
        if listBytes > Self.maximumAllowListBytes {
            // Over the ConfigMap's limit: the oldest objects keep their place (a new host never pushes out one that
            // is routed), the newest that do not fit are refused on their own status. A write of the whole list
            // would fail, and with it every change after it, removals included. (Sorted only in this rare case.)
            var kept = [Bool](repeating: false, count: entries.count)
            var bytes = 0
            for position in entries.indices.sorted(by: { age(entryObjects[$0]) < age(entryObjects[$1]) }) {
                let size = entries[position].estimatedEncodedBytes
                if bytes + size <= Self.maximumAllowListBytes {
                    bytes += size
                    kept[position] = true
                } else {
                    let name = egressHosts[entryObjects[position]].metadata.name
                    verdicts[name] = HostVerdict(.allowListTooLarge(limit: Self.maximumAllowListBytes))
                }
            }
            // The TLS files again, of the kept entries only: a refused host's CA bundle or client key must not
            // stay in the Secret (mounted into every proxy pod), nor take room there from the hosts kept.
            var keptEntries: [AllowList.Entry] = []
            secretData = SecretFiles()
            for position in entries.indices where kept[position] {
                guard case .claim(var entry, let files, _) = assessments[entryObjects[position]].outcome else {
                    continue
                }
                let fits = secretData.add(files, for: &entry.tls)
                assert(fits, "a subset of what fitted fits")
                keptEntries.append(entry)
            }
            entries = keptEntries
        }
        self.verdicts = verdicts
        self.allowList = AllowList(hosts: entries)
        self.tlsSecretData = secretData.data
    }

    /// The API server refuses a ConfigMap whose data exceeds 1 MiB; what is left is room for the object's keys.
    static let maximumAllowListBytes = 1_000_000

    /// The data of the proxy's TLS Secret as it is built. A file from the same source (ConfigMap or Secret and key)
    /// is stored once, under the key of the first object that names it: a corporate CA bundle named by fifty
    /// EgressHosts is one file, not fifty copies in an object the API server caps at 1 MiB. A claim whose new files
    /// would pass that cap is refused on its own status, rather than making the whole Secret (and every write
    /// after it) fail.
    struct SecretFiles {
        /// The API server refuses a Secret whose data exceeds 1 MiB; what is left is room for the object's keys.
        static let maximumBytes = 1_000_000
        private(set) var data: [String: String] = [:]
        /// By source, not content: hashing every copy of a large bundle on every pass would cost more than it saves.
        private var keyOfSource: [String: String] = [:]
        private var bytes = 0

        /// Adds `files` (key → file) and points `tls` at the keys they are stored under; false, with nothing
        /// added, if they do not fit.
        mutating func add(_ files: [String: TLSMaterial.File], for tls: inout AllowList.TLS) -> Bool {
            if files.isEmpty { return true }
            let new = files.filter { keyOfSource[$0.value.source] == nil }
            let added = new.reduce(0) { $0 + $1.key.utf8.count + $1.value.content.utf8.count }
            guard bytes + added <= Self.maximumBytes else { return false }
            bytes += added
            // In key order: when two of the object's own files share a source, the same one is kept on every pass.
            for (key, file) in new.sorted(by: { $0.key < $1.key }) where keyOfSource[file.source] == nil {
                data[key] = file.content
                keyOfSource[file.source] = key
            }
            for (key, file) in files {
                guard let stored = keyOfSource[file.source], stored != key else { continue }
                tls.caFile = tls.caFile.map { Self.renaming($0, key, to: stored) }
                tls.clientCertificateFile = tls.clientCertificateFile.map { Self.renaming($0, key, to: stored) }
                tls.clientKeyFile = tls.clientKeyFile.map { Self.renaming($0, key, to: stored) }
            }
            return true
        }

        /// `path` with its file name `key` replaced by `stored`; any other path as it is.
        private static func renaming(_ path: String, _ key: String, to stored: String) -> String {
            path.hasSuffix("/" + key) ? String(path.dropLast(key.utf8.count)) + stored : path
        }
    }

    /// What one EgressHost yields on its own, before claims on the same host are compared.
    public struct Assessment: Sendable, Hashable {
        enum Outcome: Sendable, Hashable {
            case invalid(problems: [String])
            case unresolved(TLSMaterial.Unresolved)
            case claim(entry: AllowList.Entry, files: [String: TLSMaterial.File], insecure: Bool)
        }
        let outcome: Outcome
    }

    /// A pure function of one object's spec and name and of the material: its problems, the material it lacks or
    /// cannot use, or the allow-list entry and TLS files it claims.
    public static func assess(
        _ spec: EgressHost.Spec,
        name: String,
        material: TLSMaterial,
        tlsMountPath: String = ProxySettings.defaultTLSMountPath,
        suffix: String = HostName.reservedSuffix
    ) -> Assessment {
        var problems = SpecValidation.problems(spec, suffix: suffix)
        if spec.tls?.caBundle != nil || spec.tls?.clientCertificate != nil,
            name.utf8.count + TLSMaterial.longestFileSuffix.utf8.count > TLSMaterial.maxKeyLength
        {
            problems.append(
                "metadata.name: must be at most \(TLSMaterial.maxKeyLength - TLSMaterial.longestFileSuffix.utf8.count) "
                    + "characters when spec.tls names a CA bundle or client certificate: the files are keyed by the "
                    + "name in the proxy's Secret"
            )
        }
        guard problems.isEmpty else { return Assessment(outcome: .invalid(problems: problems)) }
        switch material.resolve(spec.tls, for: name, mountPath: tlsMountPath) {
        case .failure(let problem):
            return Assessment(outcome: .unresolved(problem))
        case .success(let resolved):
            return Assessment(
                outcome: .claim(
                    entry: entry(spec, tls: resolved.tls),
                    files: resolved.files,
                    insecure: spec.tls?.insecureSkipVerify == true
                )
            )
        }
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
        /// Its CA bundle or client certificate is there but cannot be loaded (not PEM, or a key that does not belong
        /// to the certificate): the proxy could not connect with it.
        case unusableMaterial(String)
        /// Its CA bundle or client certificate would take the proxy's TLS Secret over its size limit.
        case tlsMaterialTooLarge(limit: Int)
        /// Its entry would take the proxy's allow-list ConfigMap over its size limit.
        case allowListTooLarge(limit: Int)
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
        case .unusableMaterial(let message): ("InvalidTLSMaterial", message)
        case .tlsMaterialTooLarge(let limit):
            (
                "TLSMaterialTooLarge",
                "its CA bundle or client certificate does not fit in the proxy's TLS Secret beside the other hosts' "
                    + "(at most \(limit) bytes in all); use a smaller bundle or share one between hosts"
            )
        case .allowListTooLarge(let limit):
            (
                "AllowListTooLarge",
                "it does not fit in the proxy's allow-list ConfigMap beside the older hosts (at most \(limit) bytes "
                    + "in all); remove hosts that are no longer needed, or use wildcard hosts"
            )
        }
    }
}

/// The contents of the ConfigMaps and Secrets (in the operator's namespace) that EgressHosts may reference.
public struct TLSMaterial: Sendable, Hashable {
    /// ConfigMap name → data.
    public var configMaps: [String: [String: String]]
    /// Secret name → decoded data.
    public var secrets: [String: [String: String]]

    /// Why a value is not a PEM certificate bundle the proxy can load, by source (`ConfigMap/NAME/KEY`,
    /// `Secret/NAME/KEY`); values not listed are usable. The operator fills this (and the next) by loading each
    /// value with the proxy's TLS library: the plan itself parses no PEM.
    public var unusableCertificates: [String: String]
    /// Why a Secret's `tls.crt` and `tls.key` are not a client certificate chain and its private key, by Secret name.
    public var unusableClientCertificates: [String: String]

    public init(
        configMaps: [String: [String: String]] = [:],
        secrets: [String: [String: String]] = [:],
        unusableCertificates: [String: String] = [:],
        unusableClientCertificates: [String: String] = [:]
    ) {
        self.configMaps = configMaps
        self.secrets = secrets
        self.unusableCertificates = unusableCertificates
        self.unusableClientCertificates = unusableClientCertificates
    }

    /// A Secret's keys are at most 253 characters, and the longest a file adds to the object's name is this.
    static let maxKeyLength = 253
    static let longestFileSuffix = ".tls.crt"

    /// Why an EgressHost's TLS material cannot be used: not there, or not loadable.
    struct Unresolved: Error, Sendable, Hashable, CustomStringConvertible {
        enum Kind: Sendable, Hashable { case missing, unusable }
        let kind: Kind
        let description: String

        static func missing(_ description: String) -> Self { Self(kind: .missing, description: description) }
        static func unusable(_ description: String) -> Self { Self(kind: .unusable, description: description) }
    }

    /// A file for the proxy's TLS Secret and where it comes from (`ConfigMap/NAME/KEY`, `Secret/NAME/KEY`).
    public struct File: Sendable, Hashable {
        var source: String
        var content: String
    }

    struct Resolved {
        var tls: AllowList.TLS
        var files: [String: File]
    }

    func resolve(_ tls: EgressHost.TLS?, for name: String, mountPath: String) -> Result<Resolved, Unresolved> {
        var result = Resolved(
            tls: AllowList.TLS(serverName: tls?.serverName, insecureSkipVerify: tls?.insecureSkipVerify ?? false),
            files: [:]
        )
        if let bundle = tls?.caBundle {
            guard let data = bundle.kind == .configMap ? configMaps[bundle.name] : secrets[bundle.name] else {
                return .failure(.missing("\(bundle.kind.rawValue) \(bundle.name) not found"))
            }
            guard let pem = data[bundle.effectiveKey], !pem.isEmpty else {
                return .failure(.missing("\(bundle.kind.rawValue) \(bundle.name) has no key \(bundle.effectiveKey)"))
            }
            let source = "\(bundle.kind.rawValue)/\(bundle.name)/\(bundle.effectiveKey)"
            if let problem = unusableCertificates[source] {
                return .failure(
                    .unusable("\(bundle.kind.rawValue) \(bundle.name) key \(bundle.effectiveKey): \(problem)")
                )
            }
            let file = "\(name).ca.crt"
            result.files[file] = File(source: source, content: pem)
            result.tls.caFile = "\(mountPath)/\(file)"
        }
        if let reference = tls?.clientCertificate {
            guard let data = secrets[reference.name] else {
                return .failure(.missing("Secret \(reference.name) not found"))
            }
            guard let certificate = data["tls.crt"], let key = data["tls.key"], !certificate.isEmpty, !key.isEmpty
            else {
                return .failure(.missing("Secret \(reference.name) needs tls.crt and tls.key"))
            }
            if let problem = unusableClientCertificates[reference.name] {
                return .failure(.unusable("Secret \(reference.name): \(problem)"))
            }
            result.files["\(name).tls.crt"] = File(source: "Secret/\(reference.name)/tls.crt", content: certificate)
            result.files["\(name).tls.key"] = File(source: "Secret/\(reference.name)/tls.key", content: key)
            result.tls.clientCertificateFile = "\(mountPath)/\(name).tls.crt"
            result.tls.clientKeyFile = "\(mountPath)/\(name).tls.key"
        }
        return .success(result)
    }
}
