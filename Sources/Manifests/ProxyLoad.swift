import Foundation

/// What one proxy process has loaded, as its admin port answers `GET /allowlist`: the contract between the proxy
/// (writer) and the operator (reader), like the allow-list document itself.
///
/// The kubelet copies a new allow-list into running proxy pods at its next sync of their volumes (typically within
/// a minute), so the ConfigMap holding a host does not mean a pod routes it yet. The operator asks the pods, and
/// reports an EgressHost `Ready` only once every ready proxy pod has it.
///
/// ```json
/// {"entries":{"*.googleapis.com":"5f0b…","api.github.com":"a1c2…","partner.example.com":"09d4…"},
///  "unusable":{"partner.example.com":"cannot load TLS material: …"}}
/// ```
public struct ProxyLoadReport: Codable, Sendable, Equatable {
    /// Every entry of the list in force: its host, and its `AllowList.Entry.fingerprint` (which version of it).
    public var entries: [String: String]
    /// Entries whose TLS material (CA bundle, client certificate) the process cannot load, by host: a Secret volume
    /// the kubelet has not updated yet, or broken material. Calls to them fail with a 502.
    public var unusable: [String: String]

    public init(entries: [String: String], unusable: [String: String] = [:]) {
        self.entries = entries
        self.unusable = unusable
    }

    /// The report of a list: each entry's fingerprint.
    public init(_ list: AllowList, unusable: [String: String] = [:]) {
        var entries: [String: String] = [:]
        entries.reserveCapacity(list.hosts.count)
        for index in list.hosts.indices { entries[list.hosts[index].host] = list.hosts[index].fingerprint }
        self.init(entries: entries, unusable: unusable)
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    public static func decode(_ bytes: some Collection<UInt8>) throws -> ProxyLoadReport {
        try JSONDecoder().decode(ProxyLoadReport.self, from: Data(bytes))
    }
}

/// What the ready proxy pods said they have loaded, as the operator last asked them: the input that lets the
/// planner tell `Programmed` (written to the allow-list and DNS) from `Ready` (the proxies route it).
public struct ProxyLoad: Sendable, Equatable {
    public enum Answer: Sendable, Equatable {
        /// The pod's report: the entries it has (host → fingerprint), and the ones among them it cannot use.
        case loaded(entries: [String: String], unusable: [String: String])
        /// Why the pod could not be asked (unreachable, timed out, not a report).
        case unanswered(String)
        /// The pod runs a proxy from before the report (its admin port has no `/allowlist`): nothing to wait for,
        /// as before it had one, or a pinned older proxy image would keep every new host from Ready.
        case noReport

        public init(_ report: ProxyLoadReport) {
            self = .loaded(entries: report.entries, unusable: report.unusable)
        }
    }

    public struct Pod: Sendable, Equatable {
        public var name: String
        public var answer: Answer

        public init(name: String, answer: Answer) {
            self.name = name
            self.answer = answer
        }
    }

    /// The ready proxy pods, by name.
    public var pods: [Pod]

    public init(pods: [Pod] = []) {
        self.pods = pods.sorted { $0.name < $1.name }
    }

    /// nil when every ready proxy pod routes `entry` as it is (the same fingerprint); otherwise, for the status
    /// message, which pods do not and why. No pod at all is a wait too: the Deployment may count a replica available
    /// before this operator has seen its pod, and a host is not routed by pods nobody asked.
    public func waiting(for entry: AllowList.Entry) -> String? {
        let (host, fingerprint) = (entry.host, entry.fingerprint)
        guard !pods.isEmpty else { return "waiting for the proxy pods to report what they have loaded" }
        var lacking: [String] = []
        for pod in pods {
            switch pod.answer {
            case .loaded(let entries, let unusable):
                switch entries[host] {
                case nil: lacking.append("\(pod.name) has not loaded it yet")
                case fingerprint?:
                    if let problem = unusable[host] { lacking.append("\(pod.name): \(problem)") }
                case _?: lacking.append("\(pod.name) has an earlier version of it")
                }
            case .unanswered(let reason):
                lacking.append("\(pod.name): \(reason)")
            case .noReport:
                continue
            }
        }
        guard !lacking.isEmpty else { return nil }
        let shown = lacking.prefix(3).joined(separator: "; ")
        let more = lacking.count > 3 ? "; and \(lacking.count - 3) more" : ""
        return "waiting for the proxy pods to load the new allow-list: \(shown)\(more)"
    }
}
