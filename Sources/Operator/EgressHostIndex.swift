import KubeAPI
import Manifests

/// The decoded EgressHosts, each one's assessment and the last EgressPlan, carried from pass to pass and updated
/// from the informer's delta.
///
/// With thousands of hosts a change touches one of them, yet decoding, assessing and planning every host on every
/// pass was most of the time from a change to its write. Here a pass pays for the objects that changed (plus one
/// `EgressPlan` over all of them); a pass that its own writes started (nothing changed in EgressHosts or TLS
/// material) reuses the plan as it is. Objects (as cached, to tell a status-only write from others), hosts and
/// assessments live in parallel arrays, the hosts handed to the plan without copying; `slots` finds an object's
/// place in them.
struct EgressHostIndex: Sendable {
    /// The informer revision the arrays reflect (nil: nothing read yet).
    private(set) var revision: Int?
    /// Each one as the informer had it, and as decoded from that.
    private var objects: [KubeObject] = []
    private var hosts: [EgressHost] = []
    /// Made from `hosts[i].spec` and `material`; nil until a plan needs it.
    private var assessments: [EgressPlan.Assessment?] = []
    private var slots: [String: Int] = [:]
    /// The slots sorted by host, then name, kept in step with every change (a binary search and an insert or
    /// remove): the plan's allow-list entries then come out sorted, and no pass sorts thousands of them.
    private(set) var hostOrder: [Int] = []
    /// Off while a full re-read fills the arrays: they are sorted once at the end instead.
    private var keepsOrder = true
    private var material: TLSMaterial?
    private var last: EgressPlan?

    /// Applies what changed in the informer's cache. `decode` returns nil for an object that cannot be decoded
    /// (the caller logs it); objects being deleted are left out, as they no longer claim their host.
    mutating func update(_ delta: Informer.Delta, decode: (KubeObject) -> EgressHost?) {
        revision = delta.revision
        if let all = delta.all {
            var kept = self
            kept.removeAll()
            kept.keepsOrder = false
            for object in all { kept.set(object.name ?? "", object, reusing: self, decode: decode) }
            let order = kept.hosts.indices.sorted { kept.orderKey($0) < kept.orderKey($1) }
            kept.hostOrder = order
            kept.keepsOrder = true
            kept.revision = revision
            self = kept
            last = nil
        } else {
            for (key, object) in delta.changed { set(key.name, object, reusing: nil, decode: decode) }
        }
    }

    /// Every EgressHost and the plan for them, assessing only hosts that changed (all of them if the material did).
    /// `tlsMountPath` and `suffix` are the process's settings, the same on every call.
    mutating func plan(
        material: TLSMaterial,
        tlsMountPath: String,
        suffix: String = HostName.reservedSuffix
    ) -> (hosts: [EgressHost], plan: EgressPlan) {
        if material != self.material {
            self.material = material
            assessments = Array(repeating: nil, count: hosts.count)
            last = nil
        }
        if let last { return (hosts, last) }
        var complete: [EgressPlan.Assessment] = []
        complete.reserveCapacity(hosts.count)
        for index in hosts.indices {
            if let assessment = assessments[index] {
                complete.append(assessment)
                continue
            }
            let host = hosts[index]
            let assessment = EgressPlan.assess(
                host.spec,
                name: host.metadata.name,
                material: material,
                tlsMountPath: tlsMountPath,
                suffix: suffix
            )
            assessments[index] = assessment
            complete.append(assessment)
        }
        let plan = EgressPlan(egressHosts: hosts, assessments: complete, hostOrder: hostOrder)
        last = plan
        return (hosts, plan)
    }

    private mutating func removeAll() {
        objects = []
        hosts = []
        assessments = []
        slots = [:]
        hostOrder = []
        last = nil
    }

    /// Stores the object under `name`, or removes `name` if the object is absent, being deleted or undecodable.
    private mutating func set(
        _ name: String,
        _ object: KubeObject?,
        reusing previous: EgressHostIndex?,
        decode: (KubeObject) -> EgressHost?
    ) {
        guard let object, object.deletionTimestamp == nil else { return remove(name) }
        // What the index held for this name: in `previous` when rebuilding from a full read, else here.
        let old = previous.map { $0.item(named: name) } ?? item(named: name)
        if let old, old.object.resourceVersion == object.resourceVersion {
            return put(name, object, old.host, old.assessment)
        }
        // A write of the status alone (after a burst, one per host) changes nothing the plan reads: the assessment
        // and the plan stay, and only the status is decoded. The first pass after a burst's thousands of status
        // writes spent most of its time decoding whole objects again.
        if let old, OperatorService.onlyStatusChanged(old.object, object), let status = Self.status(of: object) {
            var host = old.host
            host.status = status
            host.metadata.resourceVersion = object.resourceVersion
            return put(name, object, host, old.assessment)
        }
        guard let host = decode(object) else { return remove(name) }
        // Other changes that leave the plan's inputs as they were (labels, annotations) keep the assessment too.
        if let old, Self.samePlanInputs(old.host, host) { return put(name, object, host, old.assessment) }
        last = nil
        put(name, object, host, nil)
    }

    private func item(
        named name: String
    ) -> (object: KubeObject, host: EgressHost, assessment: EgressPlan.Assessment?)? {
        slots[name].map { (objects[$0], hosts[$0], assessments[$0]) }
    }

    /// An EgressHost's status alone (nil inside for none); nil if it does not decode. Decoding the whole object
    /// costs several times more, and a status write changes nothing else.
    /// The part of `object`'s status the operator writes (`operatorOwned`).
    static func status(of object: KubeObject) -> EgressHost.Status?? {
        guard let value = object["status"], value != .null else { return .some(nil) }
        return (try? value.decode(EgressHost.Status.self)).map { .some($0.operatorOwned) }
    }

    /// Whether the plan reads the same from both: the spec, and the name and age that decide a claim.
    private static func samePlanInputs(_ old: EgressHost, _ new: EgressHost) -> Bool {
        old.spec == new.spec && old.metadata.name == new.metadata.name
            && old.metadata.creationTimestamp == new.metadata.creationTimestamp
    }

    private mutating func put(
        _ name: String,
        _ object: KubeObject,
        _ host: EgressHost,
        _ assessment: EgressPlan.Assessment?
    ) {
        if let slot = slots[name] {
            let moves = keepsOrder && hosts[slot].spec.host != host.spec.host
            if moves { hostOrder.remove(at: orderPosition(of: slot)) }
            objects[slot] = object
            hosts[slot] = host
            assessments[slot] = assessment
            if moves { hostOrder.insert(slot, at: orderPosition(of: slot)) }
        } else {
            let slot = hosts.count
            slots[name] = slot
            objects.append(object)
            hosts.append(host)
            assessments.append(assessment)
            if keepsOrder { hostOrder.insert(slot, at: orderPosition(of: slot)) }
        }
    }

    private func orderKey(_ slot: Int) -> (host: String, name: String) {
        (hosts[slot].spec.host, hosts[slot].metadata.name)
    }

    /// Where `slot` is in `hostOrder`, or where it belongs (names are unique, so keys are too).
    private func orderPosition(of slot: Int) -> Int {
        let key = orderKey(slot)
        var (low, high) = (0, hostOrder.count)
        while low < high {
            let middle = (low + high) / 2
            if orderKey(hostOrder[middle]) < key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Removes by moving the last element into the freed slot, so no other slot changes.
    private mutating func remove(_ name: String) {
        guard let slot = slots.removeValue(forKey: name) else { return }
        last = nil
        let last = hosts.count - 1
        if keepsOrder {
            hostOrder.remove(at: orderPosition(of: slot))
            // The last slot's object moves into the freed one.
            if slot != last { hostOrder[orderPosition(of: last)] = slot }
        }
        if slot != last {
            objects.swapAt(slot, last)
            hosts.swapAt(slot, last)
            assessments.swapAt(slot, last)
            slots[hosts[slot].metadata.name] = slot
        }
        objects.removeLast()
        hosts.removeLast()
        assessments.removeLast()
    }
}
