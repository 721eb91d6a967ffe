import KubeAPI
import Manifests

/// The decoded EgressHosts, each one's assessment and the last EgressPlan, carried from pass to pass and updated
/// from the informer's delta.
///
/// With thousands of hosts a change touches one of them, yet decoding, assessing and planning every host on every
/// pass was most of the time from a change to its write. Here a pass pays for the objects that changed (plus one
/// `EgressPlan` over all of them); a pass that its own writes started (nothing changed in EgressHosts or TLS
/// material) reuses the plan as it is. Hosts and assessments live in parallel arrays, handed to the plan without
/// copying; `slots` finds an object's place in them.
struct EgressHostIndex: Sendable {
    /// The informer revision the arrays reflect (nil: nothing read yet).
    private(set) var revision: Int?
    /// Each one as decoded at its `metadata.resourceVersion`.
    private var hosts: [EgressHost] = []
    /// Made from `hosts[i].spec` and `material`; nil until a plan needs it.
    private var assessments: [EgressPlan.Assessment?] = []
    private var slots: [String: Int] = [:]
    private var material: TLSMaterial?
    private var last: EgressPlan?

    /// Applies what changed in the informer's cache. `decode` returns nil for an object that cannot be decoded
    /// (the caller logs it); objects being deleted are left out, as they no longer claim their host.
    mutating func update(_ delta: Informer.Delta, decode: (KubeObject) -> EgressHost?) {
        revision = delta.revision
        if let all = delta.all {
            var kept = self
            kept.removeAll()
            for object in all { kept.set(object.name ?? "", object, reusing: self, decode: decode) }
            kept.revision = revision
            self = kept
            last = nil
        } else {
            for (key, object) in delta.changed { set(key.name, object, reusing: nil, decode: decode) }
        }
    }

    /// Every EgressHost and the plan for them, assessing only hosts that changed (all of them if the material did).
    mutating func plan(material: TLSMaterial, tlsMountPath: String) -> (hosts: [EgressHost], plan: EgressPlan) {
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
                tlsMountPath: tlsMountPath
            )
            assessments[index] = assessment
            complete.append(assessment)
        }
        let plan = EgressPlan(egressHosts: hosts, assessments: complete)
        last = plan
        return (hosts, plan)
    }

    private mutating func removeAll() {
        hosts = []
        assessments = []
        slots = [:]
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
        if let old, old.host.metadata.resourceVersion == object.resourceVersion {
            return put(name, old.host, old.assessment)
        }
        guard let host = decode(object) else { return remove(name) }
        // A write of the status alone (after a burst, one per host) changes nothing the plan reads: the assessment
        // and the plan stay.
        if let old, Self.samePlanInputs(old.host, host) { return put(name, host, old.assessment) }
        last = nil
        put(name, host, nil)
    }

    private func item(named name: String) -> (host: EgressHost, assessment: EgressPlan.Assessment?)? {
        slots[name].map { (hosts[$0], assessments[$0]) }
    }

    /// Whether the plan reads the same from both: the spec, and the name and age that decide a claim.
    private static func samePlanInputs(_ old: EgressHost, _ new: EgressHost) -> Bool {
        old.spec == new.spec && old.metadata.name == new.metadata.name
            && old.metadata.creationTimestamp == new.metadata.creationTimestamp
    }

    private mutating func put(_ name: String, _ host: EgressHost, _ assessment: EgressPlan.Assessment?) {
        if let slot = slots[name] {
            hosts[slot] = host
            assessments[slot] = assessment
        } else {
            slots[name] = hosts.count
            hosts.append(host)
            assessments.append(assessment)
        }
    }

    /// Removes by moving the last element into the freed slot, so no other slot changes.
    private mutating func remove(_ name: String) {
        guard let slot = slots.removeValue(forKey: name) else { return }
        last = nil
        let last = hosts.count - 1
        if slot != last {
            hosts.swapAt(slot, last)
            assessments.swapAt(slot, last)
            slots[hosts[slot].metadata.name] = slot
        }
        hosts.removeLast()
        assessments.removeLast()
    }
}
