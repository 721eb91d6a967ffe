import Foundation

/// The allow-list document the proxy reads: the contract between the operator (writer) and the proxy (reader).
///
/// It is JSON, versioned by `apiVersion`/`kind`, and generated with a stable ordering so that an unchanged set of
/// hosts yields byte-identical output (no spurious ConfigMap writes, no spurious proxy reloads).
///
/// ```json
/// {"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[
/// {"host":"*.googleapis.com","timeouts":{"responseHeadersMillis":60000}},
/// {"host":"api.github.com"},
/// {"host":"partner.example.com","port":8443,"tls":{"caFile":"/etc/egress-proxy/tls/partner.ca.crt"}}
/// ]}
/// ```
/// Fields left out take their defaults: port 443, system trust roots, verification on, DNS resolution, no private
/// addresses, timeouts 5s connect / 30s response headers / 90s idle.
public struct AllowList: Codable, Sendable, Hashable {
    public static let apiVersion = "egress.dev/v1alpha1"
    public static let kind = "AllowList"

    public var apiVersion: String
    public var kind: String
    /// Sorted by `host` (exact names and wildcards alike); at most one entry per host.
    public var hosts: [Entry]

    public init(hosts: [Entry]) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.hosts = Self.sortedByHost(hosts)
    }

    /// The hosts' names, in order. By index: mapping over the entries would copy each whole entry to read its name.
    public var hostNames: [String] {
        var names: [String] = []
        names.reserveCapacity(hosts.count)
        for index in hosts.indices { names.append(hosts[index].host) }
        return names
    }

    /// Sorted by host, equal hosts in their given order. Sorts indices, not entries (moving whole entries was most
    /// of the cost with thousands of them), and returns a list that is already in order as it is.
    static func sortedByHost(_ entries: [Entry]) -> [Entry] {
        let inOrder = entries.indices.dropFirst().allSatisfy { entries[$0 - 1].host <= entries[$0].host }
        guard !inOrder else { return entries }
        let order = entries.indices.sorted { a, b in
            let (first, second) = (entries[a].host, entries[b].host)
            return first < second || (first == second && a < b)
        }
        return order.map { entries[$0] }
    }

    /// One allowed upstream. Everything the proxy needs to reach it is here: the proxy never takes the upstream
    /// host or port from a request.
    public struct Entry: Codable, Sendable, Hashable {
        /// A lowercase DNS name (`api.github.com`) or a wildcard (`*.example.com`, matching one or more labels in
        /// front of `example.com`, never `example.com` itself).
        public var host: String
        public var port: Int
        public var tls: TLS
        /// Fixed upstream IPs used instead of DNS resolution, in order of preference. Empty: resolve `host`.
        public var addresses: [String]
        /// Off by default: the proxy refuses upstream addresses that are loopback, private, link-local, CGNAT,
        /// multicast or unspecified (SSRF protection), unless this is set.
        public var allowPrivateAddresses: Bool
        public var timeouts: Timeouts

        public init(
            host: String,
            port: Int = 443,
            tls: TLS = TLS(),
            addresses: [String] = [],
            allowPrivateAddresses: Bool = false,
            timeouts: Timeouts = Timeouts()
        ) {
            self.host = host
            self.port = port
            self.tls = tls
            self.addresses = addresses
            self.allowPrivateAddresses = allowPrivateAddresses
            self.timeouts = timeouts
        }

        /// Only `host` is required, so a hand-written list for local use stays short.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                host: try container.decode(String.self, forKey: .host),
                port: try container.decodeIfPresent(Int.self, forKey: .port) ?? 443,
                tls: try container.decodeIfPresent(TLS.self, forKey: .tls) ?? TLS(),
                addresses: try container.decodeIfPresent([String].self, forKey: .addresses) ?? [],
                allowPrivateAddresses: try container.decodeIfPresent(Bool.self, forKey: .allowPrivateAddresses)
                    ?? false,
                timeouts: try container.decodeIfPresent(Timeouts.self, forKey: .timeouts) ?? Timeouts()
            )
        }
    }

    /// TLS origination settings. Files are PEM, at paths inside the proxy's container.
    public struct TLS: Codable, Sendable, Hashable {
        /// Trust roots replacing the system roots for this host.
        public var caFile: String?
        public var clientCertificateFile: String?
        public var clientKeyFile: String?
        /// SNI and the name the certificate is verified against; defaults to the upstream host.
        public var serverName: String?
        public var insecureSkipVerify: Bool

        public init(
            caFile: String? = nil,
            clientCertificateFile: String? = nil,
            clientKeyFile: String? = nil,
            serverName: String? = nil,
            insecureSkipVerify: Bool = false
        ) {
            self.caFile = caFile
            self.clientCertificateFile = clientCertificateFile
            self.clientKeyFile = clientKeyFile
            self.serverName = serverName
            self.insecureSkipVerify = insecureSkipVerify
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                caFile: try container.decodeIfPresent(String.self, forKey: .caFile),
                clientCertificateFile: try container.decodeIfPresent(String.self, forKey: .clientCertificateFile),
                clientKeyFile: try container.decodeIfPresent(String.self, forKey: .clientKeyFile),
                serverName: try container.decodeIfPresent(String.self, forKey: .serverName),
                insecureSkipVerify: try container.decodeIfPresent(Bool.self, forKey: .insecureSkipVerify) ?? false
            )
        }
    }

    public struct Timeouts: Codable, Sendable, Hashable {
        public static let defaultConnectMillis = 5_000
        public static let defaultResponseHeadersMillis = 30_000
        public static let defaultIdleMillis = 90_000

        /// TCP connect plus TLS handshake to the upstream.
        public var connectMillis: Int
        /// From the request being sent upstream to the response head arriving.
        public var responseHeadersMillis: Int
        /// How long a pooled upstream connection (and a quiet stream) may stay idle.
        public var idleMillis: Int

        public init(
            connectMillis: Int = Self.defaultConnectMillis,
            responseHeadersMillis: Int = Self.defaultResponseHeadersMillis,
            idleMillis: Int = Self.defaultIdleMillis
        ) {
            self.connectMillis = connectMillis
            self.responseHeadersMillis = responseHeadersMillis
            self.idleMillis = idleMillis
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                connectMillis: try container.decodeIfPresent(Int.self, forKey: .connectMillis)
                    ?? Self.defaultConnectMillis,
                responseHeadersMillis: try container.decodeIfPresent(Int.self, forKey: .responseHeadersMillis)
                    ?? Self.defaultResponseHeadersMillis,
                idleMillis: try container.decodeIfPresent(Int.self, forKey: .idleMillis) ?? Self.defaultIdleMillis
            )
        }
    }
}

extension AllowList {
    /// The canonical serialization: sorted keys, pretty printed, trailing newline.
    ///
    /// One host per line, and fields at their default left out: a ConfigMap holds at most 1 MiB, so a plain host
    /// costs about 30 bytes instead of 300 (tens of thousands of hosts fit), and a change is a one-line diff.
    public func encoded() -> String { encoding(reusing: nil).text }

    /// A list's text together with the line of each of its entries, so that the text of a list that differs in a
    /// few entries reuses the lines of the others (`encoding(reusing:)`).
    public struct Encoding: Sendable {
        public let list: AllowList
        let lines: [String]
        public let text: String
    }

    /// `encoded()`, encoding only the entries between the longest start and end that `previous`'s list shares with
    /// this one. A change to a list of thousands of hosts adds, removes or changes one or two, and encoding every
    /// entry (each through a JSON tree) was a visible share of the time from a change to its write.
    public func encoding(reusing previous: Encoding?) -> Encoding {
        let lines = hosts.map({ $0.compactJSON.serialized }, reusing: previous.map { ($0.list.hosts, $0.lines) })
        var text = String(
            JSON.object([("apiVersion", .string(apiVersion)), ("kind", .string(kind))]).serialized.dropLast()
        )
        if lines.isEmpty {
            text += #","hosts":[]}"# + "\n"
        } else {
            text += #","hosts":["# + "\n" + lines.joined(separator: ",\n") + "\n]}\n"
        }
        return Encoding(list: self, lines: lines, text: text)
    }

    /// Decodes and validates a document; the error says what is wrong so the proxy can log it and keep the last
    /// good list.
    public static func decode(_ data: some Collection<UInt8>) throws -> AllowList {
        let bytes = Array(data)
        var list = AllowList(hosts: [])
        // Every entry is an object, so the number of "{" bounds the number of entries (as does the size of the
        // smallest entry, {"host":"a.bc"}): reserving that saves growing, and copying, a 100,000-entry array.
        let objects = bytes.reduce(0) { $0 + ($1 == UInt8(ascii: "{") ? 1 : 0) }
        list.hosts.reserveCapacity(min(objects, bytes.count / 15))
        var entryError: AllowListError?
        // Entries are read as the reader reaches them; the first bad one is reported after the document-level
        // checks below, as if the whole document had been read first.
        let document = try JSONReader.parse(bytes, streaming: "hosts") { index, item in
            guard entryError == nil else { return }
            do throws(AllowListError) {
                list.hosts.append(try Entry(item, index: index))
            } catch {
                entryError = error
            }
        }
        let apiVersion = document["apiVersion"]?.stringValue ?? "?"
        let kind = document["kind"]?.stringValue ?? "?"
        guard apiVersion == Self.apiVersion, kind == Self.kind else {
            throw AllowListError("unsupported allow-list document \(apiVersion)/\(kind)")
        }
        guard case .array? = document["hosts"] else { throw AllowListError("hosts must be an array") }
        if let entryError { throw entryError }
        var seen = HostTable(capacity: list.hosts.count)
        for index in list.hosts.indices {
            let host = list.hosts[index].host
            let port = list.hosts[index].port
            if let problem = HostName.validate(host).first {
                throw AllowListError("host \"\(host)\": \(problem)")
            }
            guard (1...65535).contains(port) else {
                throw AllowListError("host \"\(host)\": port \(port) is out of range")
            }
            // A timeout of zero or less would fail every connection to the host, or close each at once. (One
            // comparison in the usual case: this runs for every entry of a 100,000-host list.)
            let timeouts = list.hosts[index].timeouts
            if min(timeouts.connectMillis, timeouts.responseHeadersMillis, timeouts.idleMillis) < 1 {
                let (name, millis) =
                    timeouts.connectMillis < 1
                    ? ("connectMillis", timeouts.connectMillis)
                    : timeouts.responseHeadersMillis < 1
                        ? ("responseHeadersMillis", timeouts.responseHeadersMillis)
                        : ("idleMillis", timeouts.idleMillis)
                throw AllowListError("host \"\(host)\": timeouts.\(name) must be at least 1, not \(millis)")
            }
            // What the proxy could never use (each request to the host would fail): refused with the rest.
            let entry = list.hosts[index]
            if !entry.addresses.isEmpty {
                if host.hasPrefix("*.") {
                    throw AllowListError("host \"\(host)\": addresses cannot be combined with a wildcard host")
                }
                if let bad = entry.addresses.first(where: { !IPAddress.isValid($0) }) {
                    throw AllowListError("host \"\(host)\": address \"\(bad)\" is not an IPv4 or IPv6 address")
                }
            }
            if let serverName = entry.tls.serverName, !SpecValidation.isDNSName(serverName) {
                throw AllowListError("host \"\(host)\": tls.serverName \"\(serverName)\" is not a DNS name")
            }
            guard seen.insert(host[...], index: index, keyAt: { list.hosts[$0].host[...] }) == nil else {
                throw AllowListError("host \"\(host)\" is listed twice")
            }
        }
        return list
    }
}

extension AllowList.Entry {
    /// Reads one entry of a document; only `host` is required, unknown fields are ignored (newer writers).
    init(_ json: JSON, index: Int) throws(AllowListError) {
        guard case .object(let members) = json else { throw AllowListError("hosts[\(index)] must be an object") }
        let reader = FieldReader(members: members, index: index)
        let tls = try reader.object("tls")
        let timeouts = try reader.object("timeouts")
        let defaults = AllowList.Timeouts()
        guard let host = try reader.string("host") else { throw AllowListError("\(reader.path).host is required") }
        self.init(
            host: host,
            port: try reader.int("port") ?? 443,
            tls: AllowList.TLS(
                caFile: try tls.string("caFile"),
                clientCertificateFile: try tls.string("clientCertificateFile"),
                clientKeyFile: try tls.string("clientKeyFile"),
                serverName: try tls.string("serverName"),
                insecureSkipVerify: try tls.bool("insecureSkipVerify") ?? false
            ),
            addresses: try reader.strings("addresses") ?? [],
            allowPrivateAddresses: try reader.bool("allowPrivateAddresses") ?? false,
            timeouts: AllowList.Timeouts(
                connectMillis: try timeouts.int("connectMillis") ?? defaults.connectMillis,
                responseHeadersMillis: try timeouts.int("responseHeadersMillis") ?? defaults.responseHeadersMillis,
                idleMillis: try timeouts.int("idleMillis") ?? defaults.idleMillis
            )
        )
    }

    /// At least the bytes of this entry's line in `encoded()` (its `compactJSON` and the separator after it),
    /// counted without serializing it: every value is a DNS name, IP address, file path or number, none of which
    /// JSON escapes. The fields present are those `compactJSON` writes; numbers are counted at their widest.
    var estimatedEncodedBytes: Int {
        var bytes = 14 + self.host.utf8.count  // {"host":"…"},\n
        if self.port != 443 { bytes += 14 }  // ,"port":65535
        var tlsBytes = 0
        for value in [self.tls.caFile, self.tls.clientCertificateFile, self.tls.clientKeyFile, self.tls.serverName] {
            if let value { tlsBytes += 28 + value.utf8.count }  // ,"clientCertificateFile":"…"
        }
        if self.tls.insecureSkipVerify { tlsBytes += 26 }  // ,"insecureSkipVerify":true
        if tlsBytes > 0 { bytes += 9 + tlsBytes }  // ,"tls":{}
        if !self.addresses.isEmpty {
            bytes += 15 + self.addresses.reduce(0) { $0 + 3 + $1.utf8.count }  // ,"addresses":["…",…]
        }
        if self.allowPrivateAddresses { bytes += 29 }  // ,"allowPrivateAddresses":true
        let defaults = AllowList.Timeouts()
        let changed = [
            self.timeouts.connectMillis != defaults.connectMillis,
            self.timeouts.responseHeadersMillis != defaults.responseHeadersMillis,
            self.timeouts.idleMillis != defaults.idleMillis,
        ].count { $0 }
        if changed > 0 { bytes += 14 + 45 * changed }  // ,"timeouts":{} and "responseHeadersMillis":-9…9, each
        return bytes
    }

    /// Only what differs from the defaults the reader fills in.
    var compactJSON: JSON {
        let defaults = AllowList.Timeouts()
        let timeouts = JSON.object([
            ("connectMillis", timeouts.connectMillis == defaults.connectMillis ? .null : .int(timeouts.connectMillis)),
            (
                "responseHeadersMillis",
                timeouts.responseHeadersMillis == defaults.responseHeadersMillis
                    ? .null : .int(timeouts.responseHeadersMillis)
            ),
            ("idleMillis", timeouts.idleMillis == defaults.idleMillis ? .null : .int(timeouts.idleMillis)),
        ]).compacted
        let tls = JSON.object([
            ("caFile", JSON(self.tls.caFile)),
            ("clientCertificateFile", JSON(self.tls.clientCertificateFile)),
            ("clientKeyFile", JSON(self.tls.clientKeyFile)),
            ("serverName", JSON(self.tls.serverName)),
            ("insecureSkipVerify", self.tls.insecureSkipVerify ? true : nil),
        ]).compacted
        return JSON.object([
            ("host", .string(host)),
            ("port", port == 443 ? .null : .int(port)),
            ("tls", tls == [:] ? .null : tls),
            ("addresses", addresses.isEmpty ? .null : JSON(addresses)),
            ("allowPrivateAddresses", allowPrivateAddresses ? true : nil),
            ("timeouts", timeouts == [:] ? .null : timeouts),
        ]).compacted
    }
}

/// Typed access to an object's fields, with errors that name the field.
private struct FieldReader {
    /// The object's members (unpacked once, not for each field).
    let members: [(key: String, value: JSON)]
    /// Where the object is: `hosts[index]`, or its member `key`.
    let index: Int
    var key: String? = nil

    /// `hosts[3]` or `hosts[3].tls`: spelled out only for an error, not for each of 100,000 entries.
    var path: String { "hosts[\(index)]" + (key.map { ".\($0)" } ?? "") }

    private func field<T>(_ key: String, _ type: String, _ extract: (JSON) -> T?) throws(AllowListError) -> T? {
        // The first member named `key` counts, as with `JSON[key]`.
        guard let value = members.first(where: { $0.key == key })?.value else { return nil }
        if case .null = value { return nil }
        guard let result = extract(value) else { throw AllowListError("\(path).\(key) must be \(type)") }
        return result
    }

    func string(_ key: String) throws(AllowListError) -> String? { try field(key, "a string") { $0.stringValue } }

    func int(_ key: String) throws(AllowListError) -> Int? {
        try field(key, "an integer") { if case .int(let value) = $0 { value } else { nil } }
    }

    func bool(_ key: String) throws(AllowListError) -> Bool? {
        try field(key, "true or false") { if case .bool(let value) = $0 { value } else { nil } }
    }

    func strings(_ key: String) throws(AllowListError) -> [String]? {
        try field(key, "a list of strings") { value -> [String]? in
            guard case .array(let values) = value else { return nil }
            let strings = values.compactMap(\.stringValue)
            return strings.count == values.count ? strings : nil
        }
    }

    /// A nested object's reader (empty when absent).
    func object(_ key: String) throws(AllowListError) -> FieldReader {
        let nested = try field(key, "an object") { value -> [(key: String, value: JSON)]? in
            if case .object(let members) = value { members } else { nil }
        }
        return FieldReader(members: nested ?? [], index: index, key: key)
    }
}

public struct AllowListError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension AllowList.Entry {
    /// Tells two versions of an entry apart (the operator compares it with what each proxy pod reports it
    /// routes): FNV-1a over the entry's canonical line, as 16 hex digits. Fields at their default are left out of
    /// that line, so a proxy from before a new field agrees on every entry that does not use it, and disagrees, as it
    /// should, on one that does.
    public var fingerprint: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in compactJSON.serialized.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
