import ControlPlaneTesting
import Foundation
import Logging
import Synchronization
import XCTest

@testable import KubeAPI

/// CRUD, server-side apply, pagination, errors, discovery and Events against the real API server.
final class ClientTests: LiveTestCase {
    func testCreateGetReplacePatchDelete() async throws {
        let name = self.uniqueName("crud")
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)

        let created = try await self.client.create(.configMaps, self.configMap(name, data: ["a": "1"]))
        XCTAssertEqual(created.name, name)
        XCTAssertNotNil(created.uid)

        do {
            _ = try await self.client.create(.configMaps, self.configMap(name, data: [:]))
            XCTFail("creating a taken name must fail")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .alreadyExists, "\(error)")
        }

        var fetched = try await self.client.get(.configMaps, name: name, namespace: self.namespace)
        XCTAssertEqual(fetched["data"], ["a": "1"])
        XCTAssertEqual(fetched.kind, "ConfigMap")

        fetched["data"] = ["a": "2"]
        let replaced = try await self.client.replace(.configMaps, fetched)
        XCTAssertEqual(replaced["data"], ["a": "2"])

        // The first read's resourceVersion is stale now: optimistic concurrency says conflict.
        do {
            _ = try await self.client.replace(.configMaps, fetched)
            XCTFail("a stale resourceVersion must conflict")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .conflict, "\(error)")
        }

        let patched = try await self.client.patch(
            .configMaps,
            name: name,
            namespace: self.namespace,
            patch: ["data": ["b": "3"]]
        )
        XCTAssertEqual(patched["data"], ["a": "2", "b": "3"])

        // Preconditions: a wrong uid must not delete.
        do {
            try await self.client.delete(
                .configMaps,
                name: name,
                namespace: self.namespace,
                preconditions: Preconditions(uid: "00000000-0000-0000-0000-000000000000")
            )
            XCTFail("a delete with a wrong uid precondition must fail")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .conflict, "\(error)")
        }
        try await self.client.delete(
            .configMaps,
            name: name,
            namespace: self.namespace,
            preconditions: Preconditions(uid: patched.uid, resourceVersion: patched.resourceVersion)
        )
        do {
            _ = try await self.client.get(.configMaps, name: name, namespace: self.namespace)
            XCTFail("the deleted object must be gone")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .notFound, "\(error)")
            XCTAssertFalse(error.isRetryable)
        }
    }

    func testServerSideApplyOwnershipAndConflicts() async throws {
        let name = self.uniqueName("ssa")
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)

        let first = try await self.client.apply(
            .configMaps,
            self.configMap(name, data: ["owned": "a", "stale": "x"]),
            fieldManager: "manager-a"
        )
        XCTAssertEqual(first["data"], ["owned": "a", "stale": "x"])
        let managers = first.metadata["managedFields"]?.arrayValue?.compactMap { $0["manager"]?.stringValue }
        XCTAssertEqual(managers, ["manager-a"])

        // Applying the complete intent again without `stale` removes it: stale fields disappear.
        let second = try await self.client.apply(
            .configMaps,
            self.configMap(name, data: ["owned": "a"]),
            fieldManager: "manager-a"
        )
        XCTAssertEqual(second["data"], ["owned": "a"])

        // Another manager setting the same field conflicts unless it forces.
        do {
            _ = try await self.client.apply(
                .configMaps,
                self.configMap(name, data: ["owned": "b"]),
                fieldManager: "manager-b",
                force: false
            )
            XCTFail("a field owned by another manager must conflict")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .conflict, "\(error)")
            XCTAssertTrue(error.message.contains("manager-a"), error.message)
        }
        let forced = try await self.client.apply(
            .configMaps,
            self.configMap(name, data: ["owned": "b"]),
            fieldManager: "manager-b",
            force: true
        )
        XCTAssertEqual(forced["data"], ["owned": "b"])
    }

    func testPaginationOverMoreObjectsThanOnePage() async throws {
        let selector = "kubeapi-page=\(self.runID)"
        var expected: Set<String> = []
        for _ in 0..<7 {
            let name = self.uniqueName("page")
            expected.insert(name)
            self.cleanUp(.configMaps, name: name, namespace: self.namespace)
            _ = try await self.client.create(
                .configMaps,
                self.configMap(name, data: [:], labels: ["kubeapi-page": self.runID])
            )
        }

        var seen: [String] = []
        var pages = 0
        var options = ListOptions(labelSelector: selector, limit: 2)
        while true {
            let page = try await self.client.list(.configMaps, namespace: self.namespace, options: options)
            pages += 1
            XCTAssertLessThanOrEqual(page.items.count, 2)
            XCTAssertTrue(page.items.allSatisfy { $0.kind == "ConfigMap" })
            seen += page.items.compactMap(\.name)
            guard let token = page.continueToken else { break }
            options.continueToken = token
            XCTAssertLessThan(pages, 10, "pagination does not end")
        }
        XCTAssertEqual(pages, 4)
        XCTAssertEqual(seen.count, 7)
        XCTAssertEqual(Set(seen), expected)

        let all = try await self.client.listAll(
            .configMaps,
            namespace: self.namespace,
            labelSelector: selector,
            pageSize: 2
        )
        XCTAssertEqual(Set(all.items.compactMap(\.name)), expected)
        XCTAssertFalse(all.resourceVersion.isEmpty)
    }

    /// A list read in pages whose snapshot etcd compacts away between two pages, as a large list read slowly meets
    /// it: the next page is refused (410 Expired), and the pager reads the list again in one request.
    func testAListWhoseSnapshotExpiresBetweenPagesIsReadAgainInOneRequest() async throws {
        let selector = "kubeapi-expiry=\(self.runID)"
        var expected: Set<String> = []
        for _ in 0..<3 {
            let name = self.uniqueName("expiry")
            expected.insert(name)
            self.cleanUp(.configMaps, name: name, namespace: self.namespace)
            _ = try await self.client.create(
                .configMaps,
                self.configMap(name, data: [:], labels: ["kubeapi-expiry": self.runID])
            )
        }
        let client = self.client!
        let namespace = self.namespace
        let requests = Mutex<[ListOptions]>([])
        let pager = ListPager(logger: Logger(label: "test")) { options in
            requests.withLock { $0.append(options) }
            let page = try await client.list(.configMaps, namespace: namespace, options: options)
            if options.limit != nil && options.continueToken == nil {
                try await TestCluster.script("compact")
            }
            return page
        }

        let all = try await pager.listAll(ListOptions(labelSelector: selector, limit: 1))

        XCTAssertEqual(Set(all.items.compactMap(\.name)), expected)
        XCTAssertFalse(all.resourceVersion.isEmpty)
        XCTAssertNil(all.continueToken)
        // The first page, the second (refused: otherwise a third page would follow), then the list without pages.
        let sent = requests.withLock { $0 }
        XCTAssertEqual(sent.map(\.limit), [1, 1, nil])
        XCTAssertEqual(sent.map { $0.continueToken != nil }, [false, true, false])
    }

    func testForbiddenUnauthorizedAndClientCertificates() async throws {
        let nobody = try await TestCluster.client(try TestCluster.stateConfig("kubeconfig-nobody"))
        do {
            _ = try await nobody.list(.configMaps, namespace: self.namespace)
            XCTFail("user nobody must not list configmaps")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .forbidden, "\(error)")
            XCTAssertTrue(error.message.contains("nobody"), error.message)
        }
        try await nobody.shutdown()

        var badToken = try TestCluster.adminConfig()
        badToken.credentials = .bearerToken("not-a-valid-token")
        let stranger = try KubeClient(config: badToken)
        do {
            _ = try await stranger.list(.configMaps, namespace: self.namespace)
            XCTFail("an unknown token must be rejected")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .unauthorized, "\(error)")
        }
        try await stranger.shutdown()

        let certificateAdmin = try await TestCluster.client(try TestCluster.stateConfig("kubeconfig-cert"))
        let namespaces = try await certificateAdmin.list(.namespaces)
        XCTAssertTrue(namespaces.items.contains { $0.name == "kube-system" })
        try await certificateAdmin.shutdown()
    }

    func testTransportErrorsAreRetryable() async throws {
        var config = try TestCluster.adminConfig()
        config.server = "https://127.0.0.1:1"
        let client = try KubeClient(config: config)
        do {
            _ = try await client.get(.namespaces, name: "default")
            XCTFail("nothing listens on port 1")
        } catch let error as KubeError {
            XCTAssertEqual(error.code, .transport, "\(error)")
            XCTAssertTrue(error.isRetryable)
        }
        try await client.shutdown()
    }

    func testDiscovery() async throws {
        let served = try await self.client.isServed(apiVersion: "apps/v1", kind: "Deployment")
        XCTAssertTrue(served)
        let configMaps = try await self.client.isServed(.configMaps)
        XCTAssertTrue(configMaps)
        // Kubernetes 1.20 serves PodDisruptionBudget only as policy/v1beta1.
        let pdb = try await self.client.isServed(.podDisruptionBudgets)
        XCTAssertFalse(pdb)
        let pdbKind = try await self.client.isServed(apiVersion: "policy/v1", kind: "PodDisruptionBudget")
        XCTAssertFalse(pdbKind)
        let unknown = try await self.client.resources(forAPIVersion: "nothing.example.com/v1")
        XCTAssertNil(unknown)
        let version = try await self.client.serverVersion()
        XCTAssertEqual(version.major, "1")
    }

    func testEvents() async throws {
        let name = self.uniqueName("evt")
        self.cleanUp(.configMaps, name: name, namespace: self.namespace)
        let subject = try await self.client.create(.configMaps, self.configMap(name, data: [:]))
        let event = try await self.client.createEvent(
            regarding: ObjectReference(subject),
            type: .warning,
            reason: "NotServed",
            message: "policy/v1 PodDisruptionBudget is not served by this cluster",
            reportingComponent: "egress-operator"
        )
        self.cleanUp(.events, name: event.name ?? "", namespace: self.namespace)
        XCTAssertEqual(event[path: "involvedObject"]?["uid"]?.stringValue, subject.uid)

        let events = try await self.client.list(
            .events,
            namespace: self.namespace,
            options: ListOptions(fieldSelector: "involvedObject.name=\(name)")
        )
        XCTAssertEqual(events.items.count, 1)
        XCTAssertEqual(events.items.first?["reason"], "NotServed")
        XCTAssertEqual(events.items.first?["type"], "Warning")

        // Events about cluster-scoped objects go to the default namespace.
        let namespaceEvent = try await self.client.createEvent(
            regarding: ObjectReference(try await self.client.get(.namespaces, name: self.namespace)),
            type: .normal,
            reason: "Tested",
            message: "an event about a cluster-scoped object",
            reportingComponent: "egress-operator"
        )
        self.cleanUp(.events, name: namespaceEvent.name ?? "", namespace: "default")
        XCTAssertEqual(namespaceEvent.namespace, "default")
        XCTAssertEqual(namespaceEvent[path: "involvedObject", "kind"], "Namespace")
    }

    /// The in-cluster layout (token file, ca.crt, namespace) against the real server, with a token minted by the
    /// TokenRequest API for a fresh ServiceAccount.
    func testInClusterConfigurationAuthenticatesWithTheServiceAccountToken() async throws {
        let account = self.uniqueName("sa")
        self.cleanUp(.serviceAccounts, name: account, namespace: self.namespace)
        _ = try await self.client.create(
            .serviceAccounts,
            KubeObject(apiVersion: "v1", kind: "ServiceAccount", name: account, namespace: self.namespace)
        )
        let request = KubeObject([
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": ["expirationSeconds": 600],
        ])
        let response = try await self.client.create(
            Resource(group: "", version: "v1", name: "serviceaccounts", kind: "ServiceAccount", namespaced: true),
            request,
            namespace: self.namespace,
            subresourceOf: account,
            subresource: "token"
        )
        let token = try XCTUnwrap(response[path: "status", "token"]?.stringValue)

        let directory = NSTemporaryDirectory() + "kubeapi-incluster-\(self.runID)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let admin = try TestCluster.adminConfig()
        _ = FileManager.default.createFile(atPath: "\(directory)/token", contents: Data(token.utf8))
        _ = FileManager.default.createFile(
            atPath: "\(directory)/ca.crt",
            contents: Data(try XCTUnwrap(admin.certificateAuthorityPEM))
        )
        _ = FileManager.default.createFile(atPath: "\(directory)/namespace", contents: Data(self.namespace.utf8))
        let address = try XCTUnwrap(URLComponents(string: admin.server))
        let config = try KubeConfig.inCluster(
            directory: directory,
            environment: [
                "KUBERNETES_SERVICE_HOST": try XCTUnwrap(address.host),
                "KUBERNETES_SERVICE_PORT": String(try XCTUnwrap(address.port)),
            ]
        )
        let inCluster = try KubeClient(config: config)
        do {
            _ = try await inCluster.list(.configMaps, namespace: config.namespace)
            XCTFail("a ServiceAccount without RBAC must not list configmaps")
        } catch let error as KubeError {
            // Forbidden (not unauthorized) proves the token authenticated as the ServiceAccount.
            XCTAssertEqual(error.code, .forbidden, "\(error)")
            XCTAssertTrue(error.message.contains("system:serviceaccount:\(self.namespace):\(account)"), error.message)
        }
        try await inCluster.shutdown()
    }
}
