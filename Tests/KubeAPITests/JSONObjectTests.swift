import Testing

@testable import KubeAPI

/// `JSONObject`, the sorted array that replaced `[String: JSONValue]` in the tree: it must behave as the dictionary
/// did, and the parser must size what it builds exactly.
@Suite struct JSONObjectTests {
    /// Random sets and removals, the same on a dictionary: the same members after every step, in name order.
    @Test func behavesAsADictionary() {
        var random = SplitMix64(seed: 7)
        var object = JSONObject()
        var model: [String: JSONValue] = [:]
        let names = ["a", "b", "ab", "Z", "é", "e\u{301}", "spec", "status", "metadata", "lastTransitionTime", ""]
        for step in 0..<2_000 {
            let name = names[Int(random.next() % UInt64(names.count))]
            // `.none`, not `nil`: JSONValue is itself expressible by `nil` (as `.null`).
            let value: JSONValue? = random.next() % 4 == 0 ? .none : .some(.int(Int64(step)))
            object[name] = value
            model[name] = value
            #expect(object.count == model.count)
            #expect(object.keys == model.keys.sorted())
            for name in names {
                #expect(object[name] == model[name], "\(name) after step \(step)")
            }
        }
        #expect(object == JSONObject(model))
        #expect(object.compactMapValues(\.intValue) == model.compactMapValues(\.intValue))
    }

    /// Equal members are equal objects with equal hashes, however they were put in.
    @Test func orderOfInsertionDoesNotMatter() {
        let forwards: JSONObject = ["kind": "EgressHost", "spec": ["host": "api.github.com"], "apiVersion": "v1"]
        var backwards = JSONObject()
        for (name, value) in forwards.reversed() { backwards[name] = value }
        #expect(forwards == backwards)
        #expect(forwards.hashValue == backwards.hashValue)
        #expect(forwards.keys == ["apiVersion", "kind", "spec"])
        #expect(JSONValue.object(forwards) == JSONValue.object(backwards))
    }

    /// Of duplicate member names the parser keeps the first, in order or not; a literal, like a dictionary's, the
    /// last.
    @Test func duplicateNames() throws {
        let sorted = try JSONValue(parsing: Array(#"{"a":1,"a":2,"b":3}"#.utf8))
        #expect(sorted == ["a": 1, "b": 3])
        let unsorted = try JSONValue(parsing: Array(#"{"c":1,"b":2,"c":3,"a":4,"b":5}"#.utf8))
        #expect(unsorted == ["a": 4, "b": 2, "c": 1])
        #expect(unsorted.objectValue?.keys == ["a", "b", "c"])
        let literal: JSONObject = ["a": 1, "a": 2]
        #expect(literal["a"] == 2)
    }

    /// Every object and array the parser builds has room for exactly its members and elements, nested or not, read in
    /// order (the labels) or not.
    @Test func parsedStorageIsExactlySized() throws {
        let text = #"""
            {"metadata":{"name":"x","uid":"u","resourceVersion":"1","generation":1,"creationTimestamp":"t",
             "labels":{"a":"1","b":"2","c":"3","d":"4","e":"5"}},
             "status":{"conditions":[{"type":"Ready","status":"True","reason":"Ready","message":"m",
             "lastTransitionTime":"t","observedGeneration":1},{"type":"Accepted"},{"type":"Programmed"}]},
             "spec":{"host":"h"},"kind":"EgressHost","apiVersion":"egress.dev/v1alpha1"}
            """#
        let value = try JSONValue(parsing: Array(text.utf8))
        var objects = 0
        var arrays = 0
        func check(_ value: JSONValue) {
            switch value {
            case .object(let members):
                objects += 1
                #expect(members.storageCapacity == members.count, "\(members.keys)")
                members.values.forEach(check)
            case .array(let elements):
                arrays += 1
                #expect(elements.capacity == elements.count)
                elements.forEach(check)
            default: break
            }
        }
        check(value)
        #expect(objects == 8)
        #expect(arrays == 1)
    }
}

/// Setting a member to `nil` removes it; `JSONValue` is itself expressible by `nil` (as `.null`), so a `nil` in the
/// wrong place would write a JSON null instead.
@Suite struct NilIsNotNullTests {
    @Test func emptyLabelsAndAnnotationsRemoveTheirMembers() {
        var object = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: "x", namespace: "y")
        object.labels = ["a": "1"]
        object.annotations = ["b": "2"]
        #expect(object.metadata["labels"] == ["a": "1"])
        object.labels = [:]
        object.annotations = [:]
        #expect(object.metadata.objectValue?.keys == ["name", "namespace"])
    }
}
