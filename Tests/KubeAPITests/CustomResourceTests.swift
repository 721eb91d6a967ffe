import ControlPlaneTesting
import Foundation
import XCTest

@testable import KubeAPI

/// A CRD of the tests' own, and the project's EgressHost CRD, on the real API server.
final class CustomResourceTests: LiveTestCase {
    static let widgets = Resource(
        group: "tests.example.com",
        version: "v1alpha1",
        name: "widgets",
        kind: "Widget",
        namespaced: true
    )

    static let widgetCRD = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: widgets.tests.example.com
        spec:
          group: tests.example.com
          scope: Namespaced
          names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
          versions:
          - name: v1alpha1
            served: true
            storage: true
            subresources: {status: {}}
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec:
                    type: object
                    required: [host]
                    properties:
                      host: {type: string, pattern: '^[^/]*$'}
                      replicas: {type: integer, default: 1}
                  status:
                    type: object
                    properties:
                      phase: {type: string}
                      observedGeneration: {type: integer}
        """

    /// Applies a CRD (idempotent; CRDs are shared by runs and left installed) and waits until it is usable.
    func install(_ crd: KubeObject, resource: Resource) async throws {
        _ = try await self.client.apply(
            .customResourceDefinitions,
            crd,
            fieldManager: "kubeapi-tests",
            force: true
        )
        let name = crd.name ?? ""
        try await eventually("CRD \(name) to be Established") {
            let current = try await self.client.get(.customResourceDefinitions, name: name)
            let conditions = current["status"]?["conditions"]?.arrayValue ?? []
            return conditions.contains { $0["type"] == "Established" && $0["status"] == "True" }
        }
        try await eventually("\(resource) to be served") {
            try await self.client.isServed(resource)
        }
    }

    func widget(_ name: String, host: String) -> KubeObject {
        var object = KubeObject(apiVersion: "tests.example.com/v1alpha1", kind: "Widget", name: name)
        object.namespace = self.namespace
        object["spec"] = ["host": .string(host)]
        return object
    }

    func testApplyStatusSubresourceAndDefaults() async throws {
        try await self.install(KubeObject(try JSONValue(yaml: Self.widgetCRD)), resource: Self.widgets)
        let name = self.uniqueName("widget")
        self.cleanUp(Self.widgets, name: name, namespace: self.namespace)

        let applied = try await self.client.apply(
            Self.widgets,
            self.widget(name, host: "api.github.com"),
            fieldManager: "kubeapi-tests"
        )
        XCTAssertEqual(applied["spec"]?["replicas"], 1, "the schema default applies")
        XCTAssertNil(applied["status"])

        var status = KubeObject(apiVersion: "tests.example.com/v1alpha1", kind: "Widget", name: name)
        status.namespace = self.namespace
        status["status"] = ["phase": "Ready", "observedGeneration": .int(Int64(applied.generation ?? 0))]
        let withStatus = try await self.client.applyStatus(Self.widgets, status, fieldManager: "kubeapi-tests")
        XCTAssertEqual(withStatus["status"]?["phase"], "Ready")

        // The main resource ignores status, and the status subresource ignores spec.
        let reapplied = try await self.client.apply(
            Self.widgets,
            self.widget(name, host: "example.com"),
            fieldManager: "kubeapi-tests"
        )
        XCTAssertEqual(reapplied["status"]?["phase"], "Ready")
        XCTAssertEqual(reapplied["spec"]?["host"], "example.com")

        let list = try await self.client.list(Self.widgets, namespace: self.namespace)
        XCTAssertTrue(list.items.contains { $0.name == name && $0.kind == "Widget" })
    }

    func testAdmissionRejectsAnInvalidCustomResource() async throws {
        try await self.install(KubeObject(try JSONValue(yaml: Self.widgetCRD)), resource: Self.widgets)
        let name = self.uniqueName("bad")
        self.cleanUp(Self.widgets, name: name, namespace: self.namespace)
        do {
            _ = try await self.client.apply(
                Self.widgets,
                self.widget(name, host: "https://api.github.com"),
                fieldManager: "kubeapi-tests"
            )
            XCTFail("a host with a scheme must be rejected by the schema")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .invalid, "\(error)")
            XCTAssertTrue(error.message.contains("spec.host"), error.message)
            XCTAssertTrue(error.causes.contains { $0.field == "spec.host" }, "\(error.causes)")
        }
    }

    /// The project's real CRD, generated on main into config/crd.
    func testEgressHostCRDRejectsAURLAsHost() async throws {
        let path = "\(TestCluster.repoRoot)/config/crd/egresshosts.egress.dev.yaml"
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("\(path) does not exist yet (it is generated on main)")
        }
        let crd = try KubeObject(JSONValue(yaml: String(contentsOfFile: path, encoding: .utf8)))
        let spec = try XCTUnwrap(crd["spec"])
        let versions = spec["versions"]?.arrayValue ?? []
        let version = try XCTUnwrap(
            versions.first { $0["storage"] == true }?["name"]?.stringValue,
            "the CRD has no storage version"
        )
        let resource = Resource(
            group: try XCTUnwrap(spec["group"]?.stringValue),
            version: version,
            name: try XCTUnwrap(spec[path: "names", "plural"]?.stringValue),
            kind: try XCTUnwrap(spec[path: "names", "kind"]?.stringValue),
            namespaced: spec["scope"] == "Namespaced"
        )
        try await self.install(crd, resource: resource)

        let name = self.uniqueName("github")
        var host = KubeObject(apiVersion: resource.apiVersion, kind: resource.kind, name: name)
        if resource.namespaced { host.namespace = self.namespace }
        host["spec"] = ["host": "https://api.github.com"]
        self.cleanUp(resource, name: name, namespace: host.namespace)
        do {
            _ = try await self.client.apply(resource, host, fieldManager: "kubeapi-tests")
            XCTFail("spec.host with a scheme must be rejected at admission")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .invalid, "\(error)")
            XCTAssertTrue(error.message.contains("spec.host"), error.message)
        }
    }
}
