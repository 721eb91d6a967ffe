import Foundation
import KubeAPI
import Manifests
import XCTest

@testable import Operator

/// What the operator takes out of its objects that another field manager added where it sets a field whole, as a
/// JSON merge patch, without a cluster.
final class RemovalPatchTests: XCTestCase {
    private func value(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    func testSelectorsLabelsExpressionsAndDataKeys() throws {
        let policy: JSON = [
            "kind": "NetworkPolicy", "spec": ["podSelector": ["matchLabels": ["app": "egress-proxy"]]],
        ]
        let hijacked = try value(
            #"{"kind":"NetworkPolicy","spec":{"podSelector":{"matchLabels":{"app":"egress-proxy","x":"y"},"#
                + #""matchExpressions":[{"key":"x","operator":"Exists"}]}}}"#
        )
        XCTAssertEqual(
            Reconciler.removalPatch(hijacked, policy),
            try value(#"{"spec":{"podSelector":{"matchExpressions":null,"matchLabels":{"x":null}}}}"#)
        )
        // The lockdown policy selects every pod: any selector added to it is taken out.
        let lockdown: JSON = ["kind": "NetworkPolicy", "spec": ["podSelector": .object([])]]
        XCTAssertEqual(
            Reconciler.removalPatch(
                try value(#"{"kind":"NetworkPolicy","spec":{"podSelector":{"matchLabels":{"only":"me"}}}}"#),
                lockdown
            ),
            try value(#"{"spec":{"podSelector":{"matchLabels":null}}}"#)
        )
        let configMap: JSON = ["kind": "ConfigMap", "data": ["allowlist.json": "{}"]]
        XCTAssertEqual(
            Reconciler.removalPatch(
                try value(#"{"kind":"ConfigMap","data":{"allowlist.json":"{}","x":"1"},"binaryData":{"y":"AA=="}}"#),
                configMap
            ),
            try value(#"{"data":{"x":null},"binaryData":null}"#)
        )
        let service: JSON = [
            "kind": "Service", "spec": ["selector": ["app": "egress-proxy"], "ports": [["name": "http", "port": 80]]],
        ]
        XCTAssertEqual(
            Reconciler.removalPatch(
                try value(
                    #"{"kind":"Service","spec":{"selector":{"app":"egress-proxy"},"ports":[{"name":"http","port":80,"#
                        + #""protocol":"TCP"},{"name":"extra","port":9}]}}"#
                ),
                service
            ),
            try value(#"{"spec":{"ports":[{"name":"http","port":80}]}}"#)
        )
    }

    /// Server defaults beside the operator's values (a port's protocol, fields outside the whole fields) and an
    /// object that is as the operator wants it give no patch: a patch every pass would be a write loop.
    func testNothingToTakeOut() throws {
        let service: JSON = [
            "kind": "Service", "spec": ["selector": ["app": "egress-proxy"], "ports": [["name": "http", "port": 80]]],
        ]
        let live = try value(
            #"{"kind":"Service","metadata":{"labels":{"a":"b"}},"spec":{"clusterIP":"10.0.0.1","#
                + #""selector":{"app":"egress-proxy"},"ports":[{"name":"http","port":80,"protocol":"TCP","#
                + #""targetPort":80}]}}"#
        )
        XCTAssertNil(Reconciler.removalPatch(live, service))
        XCTAssertNil(Reconciler.removalPatch(nil, service))
        let deployment: JSON = ["kind": "Deployment", "spec": ["replicas": 2]]
        XCTAssertNil(
            Reconciler.removalPatch(try value(#"{"kind":"Deployment","spec":{"replicas":2,"x":1}}"#), deployment)
        )
    }
}
