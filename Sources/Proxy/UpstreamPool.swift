import NIOCore

/// Keep-alive upstream connections for one event loop, keyed by (upstream host, allow-list entry).
///
/// There is one pool per event loop and client connections only use the pool of their own loop, so the pool needs
/// no locks and a request never hops threads. Idle connections are evicted by the idle timeout of their
/// upstream handler (the entry's idle timeout) or when the upstream closes them. At most `maxPerKey` connections
/// (idle + busy) exist per key; further requests wait for a released connection until their connect deadline.
final class UpstreamPool {
    typealias Callback = (Result<UpstreamConnection, ProxyError>, _ reused: Bool) -> Void

    fileprivate struct Waiter {
        var id: Int
        var callback: Callback
        var timeout: Scheduled<Void>?
    }

    /// What the pool keeps for one key. A client connection's routing holds its key's slot and every connection
    /// holds its own, so acquiring and releasing look nothing up: the two dictionary lookups by key (hashing the
    /// name, comparing the entry) were 2 % of a request's instructions. A slot with no connections and no waiters
    /// is forgotten; whoever still holds it asks for its key's slot again.
    final class Slot {
        let key: UpstreamKey
        fileprivate var idle: [UpstreamConnection] = []
        /// Connections opening, idle or busy.
        fileprivate var open = 0
        fileprivate var waiters: [Waiter] = []
        fileprivate(set) var isForgotten = false
        /// The entry's response-headers timeout, read once: each request arms it, and reaching it through the key
        /// copied the key.
        let responseHeadersTimeout: TimeAmount

        fileprivate init(key: UpstreamKey) {
            self.key = key
            self.responseHeadersTimeout = .milliseconds(Int64(key.entry.timeouts.responseHeadersMillis))
        }
    }

    let eventLoop: EventLoop
    let maxPerKey: Int
    private var slots: [UpstreamKey: Slot] = [:]
    private var nextWaiterID = 0
    private(set) var opened = 0
    /// The TLS cache used for replacement connections opened for waiters.
    private var lastTLS: TLSContextCache?

    init(eventLoop: EventLoop, maxPerKey: Int) {
        self.eventLoop = eventLoop
        self.maxPerKey = max(1, maxPerKey)
    }

    /// The slot of `key`, made when there is none.
    func slot(for key: UpstreamKey) -> Slot {
        if let slot = self.slots[key] { return slot }
        let slot = Slot(key: key)
        self.slots[key] = slot
        return slot
    }

    func acquire(_ slot: Slot, tls: TLSContextCache, callback: @escaping Callback) {
        self.eventLoop.preconditionInEventLoop()
        if self.lastTLS !== tls { self.lastTLS = tls }  // storing the same cache again retains and releases it
        let slot = slot.isForgotten ? self.slot(for: slot.key) : slot
        if let connection = slot.idle.popLast() {
            callback(.success(connection), true)
            return
        }
        if slot.open < self.maxPerKey {
            self.openConnection(slot, tls: tls, callback: callback)
            return
        }
        let id = self.nextWaiterID
        self.nextWaiterID += 1
        let timeout = self.eventLoop.assumeIsolated().scheduleTask(
            in: .milliseconds(Int64(slot.key.entry.timeouts.connectMillis))
        ) { [self] in
            guard let index = slot.waiters.firstIndex(where: { $0.id == id }) else { return }
            let waiter = slot.waiters.remove(at: index)
            self.forgetIfUnused(slot)
            waiter.callback(
                .failure(.poolExhausted("all \(self.maxPerKey) connections to \(slot.key.host) are busy")),
                false
            )
        }
        slot.waiters.append(Waiter(id: id, callback: callback, timeout: timeout))
    }

    private func openConnection(_ slot: Slot, tls: TLSContextCache, callback: @escaping Callback) {
        slot.open += 1
        UpstreamConnector.connect(key: slot.key, tls: tls, eventLoop: self.eventLoop) { [self] result in
            switch result {
            case .success(let connection):
                self.opened += 1
                connection.slot = slot
                connection.handler.onClose = { [self] in self.closed(connection) }
                callback(.success(connection), false)
            case .failure:
                slot.open -= 1
                self.serveWaiter(slot, tls: tls)
                self.forgetIfUnused(slot)
                callback(result, false)
            }
        }
    }

    /// Returns a connection after a complete request/response exchange. Not reusable: it is closed.
    func release(_ connection: UpstreamConnection, reusable: Bool, tls: TLSContextCache?) {
        self.eventLoop.preconditionInEventLoop()
        connection.handler.delegate = nil
        guard reusable, !connection.handler.sentUnaskedBytes, connection.channel.isActive, let slot = connection.slot
        else {
            connection.channel.close(promise: nil)
            return
        }
        if !slot.waiters.isEmpty {
            let waiter = slot.waiters.removeFirst()
            waiter.timeout?.cancel()
            waiter.callback(.success(connection), true)
            return
        }
        slot.idle.append(connection)
    }

    private func closed(_ connection: UpstreamConnection) {
        guard let slot = connection.slot else { return }
        slot.open -= 1
        if let index = slot.idle.firstIndex(where: { $0 === connection }) { slot.idle.remove(at: index) }
        // The connection's TLS settings are those of its key; a waiter gets a fresh connection.
        if let tls = self.lastTLS { self.serveWaiter(slot, tls: tls) }
        self.forgetIfUnused(slot)
    }

    private func serveWaiter(_ slot: Slot, tls: TLSContextCache) {
        guard !slot.waiters.isEmpty, slot.open < self.maxPerKey else { return }
        let waiter = slot.waiters.removeFirst()
        waiter.timeout?.cancel()
        self.openConnection(slot, tls: tls, callback: waiter.callback)
    }

    /// A slot with nothing in it is dropped, so names that are no longer asked for (wildcard entries can match
    /// any number) do not pile up.
    private func forgetIfUnused(_ slot: Slot) {
        guard slot.open == 0, slot.waiters.isEmpty, !slot.isForgotten else { return }
        slot.isForgotten = true
        self.slots[slot.key] = nil
    }

    /// Closes every idle connection (shutdown).
    func closeIdle() {
        let all = self.slots.values.flatMap { slot in
            defer { slot.idle.removeAll() }
            return slot.idle
        }
        for connection in all { connection.channel.close(promise: nil) }
    }

    var idleCount: Int { self.slots.values.reduce(0) { $0 + $1.idle.count } }
}
