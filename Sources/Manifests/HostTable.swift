/// Host name → index into a list of hosts: open addressing over (hash, index) pairs, O(1) per lookup. The allow-list
/// reader finds duplicate hosts with it, and the proxy's router routes with it.
///
/// A `[Substring: Int]` (or a `Set<String>`) keeps a retained reference to every host string, compares stored keys
/// along each probe sequence and releases every key when freed: for 100,000 hosts that was most of building a router.
/// This table is 8 bytes a slot and reads a host (through `keyAt`, which returns the key at a list index) only to
/// confirm a hash match. Hashes are Swift's per-process seeded `hashValue`, so names cannot be crafted to collide.
public struct HostTable: Sendable {
    private struct Slot: Sendable {
        /// The upper half of the key's hash (the lower bits pick the slot).
        var hash: UInt32 = 0
        /// The list index plus one; 0 marks an empty slot.
        var position: UInt32 = 0
    }

    /// A power of two, at least twice the number of keys, so probe sequences stay short (and end).
    private var slots: [Slot]
    private var count = 0

    public init(capacity: Int) {
        var size = 8
        while size < capacity * 2 { size *= 2 }
        self.slots = Array(repeating: Slot(), count: size)
    }

    /// Adds `key` at `index` and returns the index it had, if it was already there (the later index then wins, as
    /// in a dictionary).
    @discardableResult
    public mutating func insert(_ key: Substring, index: Int, keyAt: (Int) -> Substring) -> Int? {
        let (slot, hash) = self.probe(key, keyAt: keyAt)
        let previous = self.slots[slot].position
        if previous == 0 {
            self.count += 1
            precondition(self.count * 2 <= self.slots.count, "more hosts than the table's capacity")
        }
        self.slots[slot] = Slot(hash: hash, position: UInt32(index + 1))
        return previous == 0 ? nil : Int(previous) - 1
    }

    public func find(_ key: Substring, keyAt: (Int) -> Substring) -> Int? {
        let position = self.slots[self.probe(key, keyAt: keyAt).slot].position
        return position == 0 ? nil : Int(position) - 1
    }

    /// The slot holding `key`, or the empty slot where it would go.
    private func probe(_ key: Substring, keyAt: (Int) -> Substring) -> (slot: Int, hash: UInt32) {
        let full = key.hashValue
        let hash = UInt32(truncatingIfNeeded: full >> 32)
        let mask = self.slots.count - 1
        var slot = full & mask
        while self.slots[slot].position != 0 {
            if self.slots[slot].hash == hash, keyAt(Int(self.slots[slot].position) - 1) == key { break }
            slot = (slot + 1) & mask
        }
        return (slot, hash)
    }
}
