import ControlPlaneTesting
import Foundation
import KubeAPI
import Manifests
import XCTest

/// The CRD's schema refuses invalid EgressHosts at admission: `kubectl apply` fails, nothing reaches the operator.
final class AdmissionTests: OperatorTestCase {
    /// Fixture → the field the API server's message must name (most fixtures are about `spec.host`).
    static let expectedField = [
        "bad-ca-kind": "spec.tls.caBundle.kind",
        "bad-duration": "spec.timeouts.connect",
        "port-range": "spec.port",
        "unknown-type": "spec.allowPrivateAddresses",
    ]

    func testInvalidFixturesAreRejectedAtAdmission() async throws {
        let directory = "\(TestCluster.repoRoot)/Tests/fixtures/egresshosts/invalid"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }
            .sorted()
        XCTAssertGreaterThanOrEqual(files.count, 5, "expected several fixtures in \(directory)")
        var hostFixtures = 0
        for file in files {
            let fixture = String(file.dropLast(".yaml".count))
            let text = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
            var object = try XCTUnwrap(KubeObject.objects(yaml: text).first, file)
            // A unique name, registered for cleanup in case the server (wrongly) accepts it.
            let name = uniqueName(fixture)
            object.name = name
            object.labels = [Self.testLabel: runID]
            let field = Self.expectedField[fixture] ?? "spec.host"
            if field == "spec.host" { hostFixtures += 1 }
            do {
                _ = try await client.create(Self.egressHosts, object)
                try? await client.delete(Self.egressHosts, name: name)
                XCTFail("\(file): the API server accepted an invalid EgressHost")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, .invalid, "\(file): \(error)")
                XCTAssertTrue(
                    error.message.contains(field),
                    "\(file): the message should name \(field): \(error.message)"
                )
            }
        }
        XCTAssertGreaterThanOrEqual(hostFixtures, 5)
    }

    /// The valid samples pass the same schema (so the rejections above are about the fields, not the CRD).
    func testSamplesAreAccepted() async throws {
        let directory = "\(TestCluster.repoRoot)/config/samples"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter {
            $0.hasSuffix(".yaml") && $0 != "kustomization.yaml"
        }
        XCTAssertFalse(files.isEmpty)
        for file in files.sorted() {
            let text = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
            for var object in try KubeObject.objects(yaml: text) where object.kind == EgressHost.kind {
                let name = uniqueName(object.name ?? "sample")
                object.name = name
                try await createEgressHost(
                    name,
                    host: object[path: "spec", "host"]?.stringValue ?? "",
                    spec: object["spec"]
                )
            }
        }
    }
}
