import Manifests

/// Where an allowed request goes: the allow-list entry that matched and the concrete upstream name.
///
/// For an exact entry `upstreamHost` is the entry's host; for a wildcard entry it is the requested name, which the
/// wildcard constrains. The port, addresses and TLS settings always come from the entry, never from the request.
public struct Route: Sendable, Hashable {
    public var entry: AllowList.Entry
    public var upstreamHost: String
    /// The metrics label: the entry's host (`*.example.com` for a wildcard), so cardinality is bounded by the list.
    public var label: String { self.entry.host }
}

/// The compiled allow-list: O(1) exact lookup, and O(labels) wildcard lookup by walking the name's suffixes from
/// the most specific (longest) to the least.
///
/// Built once per loaded list (off the event loops) and then only read, so it is freely shared between threads.
public final class Router: Sendable {
    /// Keyed by `Substring` so a lookup of a slice of the request's host allocates nothing.
    private let exact: [Substring: AllowList.Entry]
    /// Keyed by the wildcard's base: `*.example.com` is stored under `example.com`.
    private let wildcards: [Substring: AllowList.Entry]
    public let list: AllowList

    public var count: Int { self.list.hosts.count }

    public init(_ list: AllowList) {
        var exact: [Substring: AllowList.Entry] = [:]
        var wildcards: [Substring: AllowList.Entry] = [:]
        exact.reserveCapacity(list.hosts.count)
        for entry in list.hosts {
            if let base = HostName.wildcardBase(entry.host) {
                wildcards[base[...]] = entry
            } else {
                exact[entry.host[...]] = entry
            }
        }
        self.exact = exact
        self.wildcards = wildcards
        self.list = list
    }

    /// The route for a normalized (lowercase, no trailing dot) upstream name, or nil when it is not allowed.
    public func route(for name: Substring) -> Route? {
        if let entry = self.exact[name] {
            return Route(entry: entry, upstreamHost: String(name))
        }
        guard !self.wildcards.isEmpty else { return nil }
        // Suffix walk: for a.b.example.com try b.example.com, then example.com, then com. A wildcard never matches
        // its own base, so the name itself is not tried.
        var rest = name[...]
        while let dot = rest.utf8.firstIndex(of: UInt8(ascii: ".")) {
            rest = rest[rest.utf8.index(after: dot)...]
            if let entry = self.wildcards[rest] {
                return Route(entry: entry, upstreamHost: String(name))
            }
        }
        return nil
    }

    public func route(for name: String) -> Route? { self.route(for: name[...]) }
}
