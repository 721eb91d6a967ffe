import NIOCore

/// Keep-alive upstream connections for one event loop, keyed by (upstream host, allow-list entry).
///
/// There is one pool per event loop and client connections only use the pool of their own loop, so the pool needs
/// no locks and a request never hops threads. Idle connections are evicted by the idle timeout of their
/// upstream handler (the entry's idle timeout) or when the upstream closes them. At most `maxPerKey` connections
/// (idle + busy) exist per key; further requests wait for a released connection until their connect deadline.
final class UpstreamPool {
    typealias Callback = (Result<UpstreamConnection, ProxyError>, _ reused: Bool) -> Void

    private struct Waiter {
        var id: Int
        var callback: Callback
        var timeout: Scheduled<Void>?
    }

    let eventLoop: EventLoop
    let maxPerKey: Int
    private var idle: [UpstreamKey: [UpstreamConnection]] = [:]
    private var open: [UpstreamKey: Int] = [:]
    private var waiters: [UpstreamKey: [Waiter]] = [:]
    private var nextWaiterID = 0
    private(set) var opened = 0

    init(eventLoop: EventLoop, maxPerKey: Int) {
        self.eventLoop = eventLoop
        self.maxPerKey = max(1, maxPerKey)
    }

    func acquire(key: UpstreamKey, tls: TLSContextCache, callback: @escaping Callback) {
        self.eventLoop.preconditionInEventLoop()
        self.lastTLS = tls
        // One lookup, and the list is changed in place (a copied-out list would be copied again by `popLast`).
        if let index = self.idle.index(forKey: key), let connection = self.idle.values[index].popLast() {
            if self.idle.values[index].isEmpty { self.idle.remove(at: index) }
            callback(.success(connection), true)
            return
        }
        if self.open[key, default: 0] < self.maxPerKey {
            self.openConnection(key: key, tls: tls, callback: callback)
            return
        }
        let id = self.nextWaiterID
        self.nextWaiterID += 1
        let timeout = self.eventLoop.assumeIsolated().scheduleTask(
            in: .milliseconds(Int64(key.entry.timeouts.connectMillis))
        ) { [self] in
            guard var list = self.waiters[key], let index = list.firstIndex(where: { $0.id == id }) else { return }
            let waiter = list.remove(at: index)
            self.waiters[key] = list.isEmpty ? nil : list
            waiter.callback(
                .failure(.poolExhausted("all \(self.maxPerKey) connections to \(key.host) are busy")),
                false
            )
        }
        self.waiters[key, default: []].append(Waiter(id: id, callback: callback, timeout: timeout))
    }

    private func openConnection(key: UpstreamKey, tls: TLSContextCache, callback: @escaping Callback) {
        self.open[key, default: 0] += 1
        UpstreamConnector.connect(key: key, tls: tls, eventLoop: self.eventLoop) { [self] result in
            switch result {
            case .success(let connection):
                self.opened += 1
                connection.handler.onClose = { [self] in self.closed(connection) }
                callback(.success(connection), false)
            case .failure:
                self.decrementOpen(key)
                self.serveWaiter(key: key, tls: tls)
                callback(result, false)
            }
        }
    }

    /// Returns a connection after a complete request/response exchange. Not reusable: it is closed.
    func release(_ connection: UpstreamConnection, reusable: Bool, tls: TLSContextCache?) {
        self.eventLoop.preconditionInEventLoop()
        connection.handler.delegate = nil
        guard reusable, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        if !self.waiters.isEmpty, var list = self.waiters[connection.key], !list.isEmpty {
            let waiter = list.removeFirst()
            self.waiters[connection.key] = list.isEmpty ? nil : list
            waiter.timeout?.cancel()
            waiter.callback(.success(connection), true)
            return
        }
        self.idle[connection.key, default: []].append(connection)
    }

    private func closed(_ connection: UpstreamConnection) {
        self.decrementOpen(connection.key)
        if var list = self.idle[connection.key], let index = list.firstIndex(where: { $0 === connection }) {
            list.remove(at: index)
            self.idle[connection.key] = list.isEmpty ? nil : list
        }
        // The connection's TLS settings are those of its key; a waiter gets a fresh connection.
        if let tls = self.lastTLS { self.serveWaiter(key: connection.key, tls: tls) }
    }

    /// The TLS cache used for replacement connections opened for waiters.
    var lastTLS: TLSContextCache?

    private func serveWaiter(key: UpstreamKey, tls: TLSContextCache) {
        guard var list = self.waiters[key], !list.isEmpty, self.open[key, default: 0] < self.maxPerKey else { return }
        let waiter = list.removeFirst()
        self.waiters[key] = list.isEmpty ? nil : list
        waiter.timeout?.cancel()
        self.openConnection(key: key, tls: tls, callback: waiter.callback)
    }

    private func decrementOpen(_ key: UpstreamKey) {
        let count = self.open[key, default: 1] - 1
        self.open[key] = count > 0 ? count : nil
    }

    /// Closes every idle connection (shutdown).
    func closeIdle() {
        let all = self.idle.values.flatMap { $0 }
        self.idle = [:]
        for connection in all { connection.channel.close(promise: nil) }
    }

    var idleCount: Int { self.idle.values.reduce(0) { $0 + $1.count } }
}
