import Foundation
import XCTest

@testable import KubeAPI

final class ConfigTests: XCTestCase {
    private var directory: String!

    override func setUp() {
        super.setUp()
        self.directory = NSTemporaryDirectory() + "kubeapi-config-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: self.directory)
        super.tearDown()
    }

    private func write(_ name: String, _ text: String) -> String {
        let path = "\(self.directory!)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    private static let caPEM = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"

    func testTokenAndCertificateAuthorityData() throws {
        let ca = Data(Self.caPEM.utf8).base64EncodedString()
        let config = try KubeConfig.parse(
            kubeconfig: """
                apiVersion: v1
                kind: Config
                clusters:
                - name: c
                  cluster:
                    server: https://127.0.0.1:6443/
                    certificate-authority-data: \(ca)
                users:
                - name: u
                  user:
                    token: secret-token
                contexts:
                - name: ctx
                  context: {cluster: c, user: u, namespace: egress}
                current-context: ctx
                """
        )
        XCTAssertEqual(config.server, "https://127.0.0.1:6443")
        XCTAssertEqual(config.certificateAuthorityPEM, Array(Self.caPEM.utf8))
        XCTAssertEqual(config.credentials, .bearerToken("secret-token"))
        XCTAssertEqual(config.namespace, "egress")
        XCTAssertFalse(config.insecureSkipTLSVerify)
    }

    func testFilesRelativeToTheKubeconfigAndExplicitContext() throws {
        _ = self.write("ca.crt", Self.caPEM)
        _ = self.write("client.crt", "CERT")
        _ = self.write("client.key", "KEY")
        _ = self.write("token", "file-token\n")
        let path = self.write(
            "config",
            """
            clusters:
            - name: c
              cluster: {server: "https://k8s.example:443", certificate-authority: ca.crt}
            - name: insecure
              cluster: {server: "https://other:6443", insecure-skip-tls-verify: true}
            users:
            - name: cert
              user: {client-certificate: client.crt, client-key: client.key}
            - name: tokenfile
              user: {tokenFile: token}
            contexts:
            - name: a
              context: {cluster: c, user: cert}
            - name: b
              context: {cluster: insecure, user: tokenfile}
            current-context: a
            """
        )
        let a = try KubeConfig.load(kubeconfigPaths: [path])
        XCTAssertEqual(a.server, "https://k8s.example:443")
        XCTAssertEqual(a.certificateAuthorityPEM, Array(Self.caPEM.utf8))
        XCTAssertEqual(a.clientCertificatePEM, Array("CERT".utf8))
        XCTAssertEqual(a.clientKeyPEM, Array("KEY".utf8))
        XCTAssertEqual(a.credentials, KubeConfig.Credentials.none)
        XCTAssertEqual(a.namespace, "default")

        let b = try KubeConfig.load(kubeconfigPaths: [path], context: "b")
        XCTAssertTrue(b.insecureSkipTLSVerify)
        XCTAssertNil(b.certificateAuthorityPEM)
        XCTAssertEqual(b.credentials, .tokenFile(path: "\(self.directory!)/token"))
    }

    func testKubeconfigListMergesFirstWins() throws {
        let first = self.write(
            "one",
            """
            clusters:
            - {name: c, cluster: {server: "https://first:6443"}}
            contexts:
            - {name: ctx, context: {cluster: c, user: u}}
            """
        )
        let second = self.write(
            "two",
            """
            clusters:
            - {name: c, cluster: {server: "https://second:6443"}}
            users:
            - {name: u, user: {token: t2}}
            current-context: ctx
            """
        )
        let config = try KubeConfig.fromEnvironment(["KUBECONFIG": "\(first):\(self.directory!)/missing:\(second)"])
        XCTAssertEqual(config.server, "https://first:6443")
        XCTAssertEqual(config.credentials, .bearerToken("t2"))
    }

    func testBrokenKubeconfigsGiveTypedErrors() throws {
        func code(_ text: String, context: String? = nil) -> KubeConfigError.Code? {
            do {
                _ = try KubeConfig.parse(kubeconfig: text, context: context)
                return nil
            } catch let error as KubeConfigError {
                XCTAssertFalse(error.description.isEmpty)
                return error.code
            } catch {
                XCTFail("unexpected error \(error)")
                return nil
            }
        }
        let valid = """
            clusters: [{name: c, cluster: {server: "https://x"}}]
            users: [{name: u, user: {token: t}}]
            contexts: [{name: ctx, context: {cluster: c, user: u}}]
            """
        XCTAssertEqual(code(valid), .missingContext)  // no current-context
        XCTAssertEqual(code(valid, context: "other"), .missingContext)
        XCTAssertNil(code(valid, context: "ctx"))
        XCTAssertEqual(
            code("contexts: [{name: ctx, context: {cluster: nope, user: u}}]\ncurrent-context: ctx"),
            .missingCluster
        )
        XCTAssertEqual(
            code(
                """
                clusters: [{name: c, cluster: {server: "https://x"}}]
                contexts: [{name: ctx, context: {cluster: c, user: ghost}}]
                current-context: ctx
                """
            ),
            .missingUser
        )
        XCTAssertEqual(
            code(
                """
                clusters: [{name: c, cluster: {}}]
                contexts: [{name: ctx, context: {cluster: c}}]
                current-context: ctx
                """
            ),
            .malformed
        )
        XCTAssertEqual(
            code(
                """
                clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "%%%"}}]
                contexts: [{name: ctx, context: {cluster: c}}]
                current-context: ctx
                """
            ),
            .malformed
        )
        XCTAssertEqual(
            code(
                """
                clusters: [{name: c, cluster: {server: "https://x"}}]
                users: [{name: u, user: {exec: {command: aws}}}]
                contexts: [{name: ctx, context: {cluster: c, user: u}}]
                current-context: ctx
                """
            ),
            .unsupportedAuthentication
        )
        XCTAssertEqual(code("clusters: {not: [a list"), .malformed)

        XCTAssertThrowsError(try KubeConfig.load(kubeconfigPaths: ["\(self.directory!)/absent"])) { error in
            XCTAssertEqual((error as? KubeConfigError)?.code, .fileNotFound)
        }
        XCTAssertThrowsError(try KubeConfig.fromEnvironment(["HOME": self.directory!])) { error in
            XCTAssertEqual((error as? KubeConfigError)?.code, .noConfiguration)
        }
    }

    func testInClusterLayout() throws {
        _ = self.write("token", "sa-token\n")
        _ = self.write("ca.crt", Self.caPEM)
        _ = self.write("namespace", "egress-system\n")
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let config = try KubeConfig.inCluster(directory: self.directory, environment: environment)
        XCTAssertEqual(config.server, "https://10.96.0.1:443")
        XCTAssertEqual(config.namespace, "egress-system")
        XCTAssertEqual(config.certificateAuthorityPEM, Array(Self.caPEM.utf8))
        XCTAssertEqual(config.credentials, .tokenFile(path: "\(self.directory!)/token"))

        let v6 = try KubeConfig.inCluster(
            directory: self.directory,
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"]
        )
        XCTAssertEqual(v6.server, "https://[fd00::1]:443")

        XCTAssertThrowsError(try KubeConfig.inCluster(directory: self.directory, environment: [:])) { error in
            XCTAssertEqual((error as? KubeConfigError)?.code, .notInCluster)
        }
        XCTAssertThrowsError(
            try KubeConfig.inCluster(directory: "\(self.directory!)/nothing", environment: environment)
        ) { error in
            XCTAssertEqual((error as? KubeConfigError)?.code, .fileNotFound)
        }
    }

    func testServiceAccountTokenIsReReadAfterRotation() throws {
        let path = self.write("token", "first\n")
        let cached = TokenSource(path: path, refreshInterval: .seconds(3600))
        let fresh = TokenSource(path: path, refreshInterval: .zero)
        XCTAssertEqual(try cached.token(), "first")
        XCTAssertEqual(try fresh.token(), "first")
        _ = self.write("token", "second\n")
        XCTAssertEqual(try cached.token(), "first")
        XCTAssertEqual(try fresh.token(), "second")
        // A failed re-read keeps the last good token.
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(try fresh.token(), "second")
        XCTAssertThrowsError(try TokenSource(path: path, refreshInterval: .zero).token())
    }
}
