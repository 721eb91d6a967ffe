import Foundation
import XCTest

@testable import KubeAPI

/// Pure tests: JSON/YAML values, error classification, watch frame decoding.
final class ValueTests: XCTestCase {
    func testJSONRoundTripKeepsIntegersAndTypedViews() throws {
        struct Spec: Codable, Equatable {
            var host: String
            var replicas: Int
        }
        var object = KubeObject(apiVersion: "egress.dev/v1alpha1", kind: "EgressHost", name: "gh", namespace: "ns")
        object["spec"] = try JSONValue(encoding: Spec(host: "api.github.com", replicas: 2))
        object.labels = ["app": "x"]
        let text = object.json.jsonString()
        XCTAssertEqual(
            text,
            #"{"apiVersion":"egress.dev/v1alpha1","kind":"EgressHost","metadata":{"labels":{"app":"x"},"#
                + #""name":"gh","namespace":"ns"},"spec":{"host":"api.github.com","replicas":2}}"#
        )
        let parsed = KubeObject(try JSONValue(parsing: Data(text.utf8)))
        XCTAssertEqual(parsed, object)
        XCTAssertEqual(try parsed["spec"]?.decode(Spec.self), Spec(host: "api.github.com", replicas: 2))
        XCTAssertEqual(parsed.key, ObjectKey(namespace: "ns", name: "gh"))
        XCTAssertEqual(parsed.key.description, "ns/gh")
        XCTAssertEqual(JSONValue.double(1.5).jsonString(), "1.5")
    }

    /// Decoding straight from the tree gives what `JSONDecoder` gives from the same JSON text, and fails where it fails.
    func testTreeDecodingMatchesJSONDecoder() throws {
        struct Model: Codable, Equatable {
            enum Kind: String, Codable { case a, b }
            struct Item: Codable, Equatable {
                var name: String
                var weight: Double?
            }
            var kind: Kind
            var count: Int
            var small: UInt8
            var ratio: Double
            var flag: Bool
            var optional: String?
            var explicitNull: Int?
            var items: [Item]
            var matrix: [[Int]]
            var labels: [String: String]
            var bytes: Data
            var nested: [String: JSONValue]
            var big: Int64
            var maybeFlag: Bool?
            var maybeCount: Int?
            var maybeRatio: Double?
            var maybeBig: Int64?
            var missingText: String?
        }
        let text = #"""
            {"kind":"b","count":7,"small":2.0,"ratio":3,"flag":true,"explicitNull":null,"big":9007199254740993,
             "maybeFlag":false,"maybeCount":4.0,"maybeRatio":2,"maybeBig":null,
             "items":[{"name":"x"},{"name":"y","weight":1.5}],"matrix":[[1,2],[],[3]],
             "labels":{"team":"payments"},"bytes":"aGVsbG8=","nested":{"a":[1,"two",null]}}
            """#
        let value = try JSONValue(parsing: Data(text.utf8))
        let viaText = try JSONDecoder().decode(Model.self, from: Data(text.utf8))
        XCTAssertEqual(try value.decode(Model.self), viaText)
        XCTAssertEqual(viaText.bytes, Data("hello".utf8))

        func failsBothWays<T: Decodable>(_ type: T.Type, _ json: String) {
            XCTAssertThrowsError(try JSONDecoder().decode(type, from: Data(json.utf8)), json)
            XCTAssertThrowsError(try JSONValue(parsing: Data(json.utf8)).decode(type), json)
        }
        failsBothWays(Model.Item.self, #"{"weight":1}"#)  // missing key
        failsBothWays(Model.Item.self, #"{"name":5}"#)  // wrong type
        failsBothWays(Model.Item.self, #"{"name":null}"#)  // null for a required value
        failsBothWays(Model.Item.self, #"{"name":"x","weight":"heavy"}"#)  // wrong type for an optional value
        failsBothWays([String: Int].self, #"{"a":1.5}"#)  // not whole, as a keyed member
        failsBothWays([String: Bool].self, #"{"a":1}"#)  // wrong type, as a keyed member
        failsBothWays([UInt8].self, #"[256]"#)  // out of range
        failsBothWays([Int].self, #"[1.5]"#)  // not whole
        failsBothWays(Model.Kind.self, #""c""#)  // no such case
        XCTAssertThrowsError(try JSONValue.object(["name": .int(1)]).decode(Model.Item.self)) { error in
            guard case DecodingError.typeMismatch(_, let context) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(context.codingPath.map(\.stringValue), ["name"])
        }
        XCTAssertThrowsError(
            try JSONValue(parsing: Data(#"{"items":[{"name":"x","weight":true}]}"#.utf8)).decode(
                [String: [Model.Item]].self
            )
        ) { error in
            guard case DecodingError.typeMismatch(_, let context) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(context.codingPath.map(\.stringValue), ["items", "Index 0", "weight"])
        }
    }

    func testYAMLKeepsScalarTypes() throws {
        let documents = try KubeObject.objects(
            yaml: """
                ---
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: a}
                data: {quoted: "1", flag: "true"}
                spec: {n: 1, f: 1.5, b: true, z: null, list: [x, 2]}
                ---
                # empty document
                ---
                apiVersion: v1
                kind: Namespace
                metadata: {name: b}
                """
        )
        XCTAssertEqual(documents.count, 2)
        XCTAssertEqual(documents[0]["data"], ["quoted": "1", "flag": "true"])
        XCTAssertEqual(documents[0]["spec"], ["n": 1, "f": 1.5, "b": true, "z": nil, "list": ["x", 2]])
        XCTAssertEqual(documents[1].kind, "Namespace")
    }

    func testErrorsAreClassifiedFromStatus() {
        func classify(_ code: Int, _ reason: String?, retryAfter: String? = nil) -> KubeError {
            KubeError.from(
                httpStatus: code,
                status: Status(message: "m", reason: reason, code: code),
                body: nil,
                retryAfterHeader: retryAfter
            )
        }
        XCTAssertEqual(classify(404, "NotFound").code, .notFound)
        XCTAssertEqual(classify(409, "AlreadyExists").code, .alreadyExists)
        XCTAssertEqual(classify(409, "Conflict").code, .conflict)
        XCTAssertEqual(classify(422, "Invalid").code, .invalid)
        XCTAssertEqual(classify(403, "Forbidden").code, .forbidden)
        XCTAssertEqual(classify(401, "Unauthorized").code, .unauthorized)
        XCTAssertEqual(classify(410, "Expired").code, .gone)
        XCTAssertEqual(classify(500, "InternalError").code, .serverError)
        XCTAssertEqual(classify(415, nil).code, .badRequest)
        XCTAssertEqual(classify(504, nil).code, .timeout)
        let throttled = classify(429, "TooManyRequests", retryAfter: "3")
        XCTAssertEqual(throttled.code, .tooManyRequests)
        XCTAssertEqual(throttled.retryAfter, .seconds(3))
        XCTAssertTrue(throttled.isRetryable)
        XCTAssertFalse(classify(422, "Invalid").isRetryable)
        XCTAssertTrue(classify(403, "Forbidden").description.contains("RBAC"))
    }

    func testWatchFrames() throws {
        let added = try WatchEventStream.AsyncIterator.decode(
            #"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}"#,
            context: "test"
        )
        XCTAssertEqual(added.type, .added)
        XCTAssertEqual(added.object.resourceVersion, "7")

        let expired = #"""
            {"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure",
            "message":"too old resource version: 1 (120)","reason":"Expired","code":410}}
            """#.replacingOccurrences(of: "\n", with: "")
        XCTAssertThrowsError(try WatchEventStream.AsyncIterator.decode(expired, context: "test")) {
            error in
            XCTAssertEqual((error as? KubeError)?.code, .gone)
        }
    }

    func testResourcePaths() {
        XCTAssertEqual(Resource.configMaps.path(namespace: "ns", name: "a"), "/api/v1/namespaces/ns/configmaps/a")
        XCTAssertEqual(Resource.configMaps.path(namespace: nil), "/api/v1/configmaps")
        XCTAssertEqual(
            Resource.customResourceDefinitions.path(namespace: "ignored", name: "x.y"),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y"
        )
        XCTAssertEqual(
            Resource.deployments.path(namespace: "ns", name: "d", subresource: "status"),
            "/apis/apps/v1/namespaces/ns/deployments/d/status"
        )
        XCTAssertEqual(
            KubeClient.queryString([("labelSelector", "a=b,c!=d"), ("limit", "2")]),
            "?labelSelector=a%3Db%2Cc%21%3Dd&limit=2"
        )
    }

    func testInformerCachesDropApplyBookkeeping() {
        var object = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: "a", namespace: "ns")
        object.metadata["managedFields"] = [["manager": "egress-operator", "operation": "Apply"]]
        object.labels = ["keep": "me"]
        let slim = Informer.slimmed(object)
        XCTAssertNil(slim.metadata["managedFields"])
        XCTAssertEqual(slim.labels, ["keep": "me"])
        XCTAssertEqual(slim.name, "a")

        let lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
        object.metadata["annotations"] = [lastApplied: "{\"big\":\"json\"}", "keep": "this"]
        XCTAssertEqual(Informer.slimmed(object).metadata["annotations"], ["keep": "this"])
        object.metadata["annotations"] = [lastApplied: "{}"]
        XCTAssertNil(Informer.slimmed(object).metadata["annotations"])

        // A cache whose objects are replaced whole keeps the annotation (a PUT without it would delete it).
        let kept = Informer.slimmed(object, keepingLastApplied: true)
        XCTAssertEqual(kept.metadata["annotations"], [lastApplied: "{}"])
        XCTAssertNil(kept.metadata["managedFields"])
    }
}
