import Manifests
import Synchronization

/// Where an allowed request goes: the allow-list entry that matched and the concrete upstream name.
///
/// For an exact entry `upstreamHost` is the entry's host; for a wildcard entry it is the requested name, which the
/// wildcard constrains. The port, addresses and TLS settings always come from the entry, never from the request.
public struct Route: Sendable, Hashable {
    /// Where the entry is, not a copy of it: an entry is a dozen strings, and copying them twice per request was a
    /// measurable part of it. `RouteTargets` makes the one copy a pooled connection needs, once per entry and loop.
    let router: Router
    let index: Int
    public var upstreamHost: String
    public var entry: AllowList.Entry { self.router.list.hosts[self.index] }
    /// The metrics label: the entry's host (`*.example.com` for a wildcard), so cardinality is bounded by the list.
    public var label: String { self.router.list.hosts[self.index].host }

    public static func == (lhs: Route, rhs: Route) -> Bool {
        lhs.upstreamHost == rhs.upstreamHost && lhs.entry == rhs.entry
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.upstreamHost)
        hasher.combine(self.entry)
    }
}

/// The compiled allow-list: O(1) exact lookup, and O(labels) wildcard lookup by walking the name's suffixes from
/// the most specific (longest) to the least.
///
/// Built once per loaded list (off the event loops) and then only read, so it is freely shared between threads.
public final class Router: Sendable {
    /// Exact hosts.
    private let exact: HostTable
    /// Wildcards, by their base: `*.example.com` is found under `example.com`.
    private let wildcards: HostTable
    private let hasWildcards: Bool
    public let list: AllowList
    /// Tells this router apart from every other one of the process without holding it: a connection remembers its
    /// last routing by it, and an idle connection must not keep a replaced list (perhaps 100,000 entries) alive.
    let id = Router.ids.add(1, ordering: .relaxed).newValue
    private static let ids = Atomic<UInt64>(0)

    public var count: Int { self.list.hosts.count }

    public init(_ list: AllowList) {
        let wildcardCount = list.hosts.count { Self.isWildcard($0.host) }
        var exact = HostTable(capacity: list.hosts.count - wildcardCount)
        var wildcards = HostTable(capacity: wildcardCount)
        for index in list.hosts.indices {
            if Self.isWildcard(list.hosts[index].host) {
                wildcards.insert(Self.wildcardBase(list, index), index: index) { Self.wildcardBase(list, $0) }
            } else {
                exact.insert(list.hosts[index].host[...], index: index) { list.hosts[$0].host[...] }
            }
        }
        self.exact = exact
        self.wildcards = wildcards
        self.hasWildcards = wildcardCount > 0
        self.list = list
    }

    private static func isWildcard(_ host: String) -> Bool { host.utf8.starts(with: "*.".utf8) }

    /// `example.com` for `*.example.com`, sharing the host's storage.
    private static func wildcardBase(_ list: AllowList, _ index: Int) -> Substring {
        Substring(list.hosts[index].host.utf8.dropFirst(2))
    }

    /// The route for a normalized (lowercase, no trailing dot) upstream name, or nil when it is not allowed.
    public func route(for name: Substring) -> Route? {
        if let index = self.exact.find(name, keyAt: { self.list.hosts[$0].host[...] }) {
            // The entry's host is the name (no copy of it needed).
            return Route(router: self, index: index, upstreamHost: self.list.hosts[index].host)
        }
        guard self.hasWildcards else { return nil }
        // Suffix walk: for a.b.example.com try b.example.com, then example.com, then com. A wildcard never matches
        // its own base, so the name itself is not tried.
        var rest = name[...]
        while let dot = rest.utf8.firstIndex(of: UInt8(ascii: ".")) {
            rest = rest[rest.utf8.index(after: dot)...]
            if let index = self.wildcards.find(rest, keyAt: { Self.wildcardBase(self.list, $0) }) {
                return Route(router: self, index: index, upstreamHost: String(name))
            }
        }
        return nil
    }

    public func route(for name: String) -> Route? { self.route(for: name[...]) }
}

/// One allow-list entry behind a reference: what a pool key holds, so copying a key costs one retain and comparing
/// two keys of the same list one pointer.
final class RouteTarget: Sendable, Hashable {
    let entry: AllowList.Entry
    /// `entry.host.hashValue`, for the pool keys of an exact entry (see `UpstreamKey`).
    let hostHash: Int

    init(_ entry: AllowList.Entry) {
        self.entry = entry
        self.hostHash = entry.host.hashValue
    }

    /// The same object, or an equal entry: after a reload, connections pooled for an entry that did not change stay
    /// usable.
    static func == (lhs: RouteTarget, rhs: RouteTarget) -> Bool { lhs === rhs || lhs.entry == rhs.entry }

    func hash(into hasher: inout Hasher) { hasher.combine(self.entry) }
}

/// The targets of the current router's entries, made on first use, for one event loop (never shared, so no lock).
/// Made lazily rather than when the router is built: boxing 100,000 entries up front doubled the time to build it.
struct RouteTargets {
    /// Held, not just identified: a new router at a freed one's address must not find its targets.
    private var router: Router?
    private var targets: [Int: RouteTarget] = [:]

    mutating func target(for route: Route) -> RouteTarget {
        if self.router !== route.router {
            self.router = route.router
            self.targets.removeAll()
        }
        if let target = self.targets[route.index] { return target }
        let target = RouteTarget(route.entry)
        self.targets[route.index] = target
        return target
    }
}
