import Foundation
import Logging
import Manifests
import NIOCore
import NIOHTTP1
import NIOPosix
import Observability
import Prometheus
import ServiceLifecycle
import Testing

@testable import Proxy

@Suite struct HotReloadTests {
    /// A Kubernetes-style ConfigMap mount: `dir/allowlist.json → ..data/allowlist.json`, `..data → ..<version>`.
    struct ConfigMapMount {
        let directory: String
        var path: String { "\(self.directory)/allowlist.json" }
        private var version = 0

        init() throws {
            self.directory = NSTemporaryDirectory() + "egress-reload-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        }

        /// Writes a new timestamped directory and atomically swaps the `..data` symlink to it.
        mutating func publish(_ contents: String) throws {
            self.version += 1
            let versionDir = "..\(self.version)_\(UUID().uuidString.prefix(6))"
            try FileManager.default.createDirectory(
                atPath: "\(self.directory)/\(versionDir)",
                withIntermediateDirectories: true
            )
            try contents.write(
                toFile: "\(self.directory)/\(versionDir)/allowlist.json",
                atomically: false,
                encoding: .utf8
            )
            let tmpLink = "\(self.directory)/..data_tmp"
            unlink(tmpLink)
            try FileManager.default.createSymbolicLink(atPath: tmpLink, withDestinationPath: versionDir)
            guard rename(tmpLink, "\(self.directory)/..data") == 0 else { throw CocoaError(.fileWriteUnknown) }
            if !FileManager.default.fileExists(atPath: self.path) {
                try FileManager.default.createSymbolicLink(
                    atPath: self.path,
                    withDestinationPath: "..data/allowlist.json"
                )
            }
        }
    }

    @Test func reloadUnderLoadDropsNothingAndInvalidFilesKeepTheLastGoodList() async throws {
        try await TestUpstream.with { upstream in
            var mount = try ConfigMapMount()
            let good = Fixtures.entry("good.upstream.test", upstream: upstream)
            let other = Fixtures.entry("other.upstream.test", upstream: upstream)
            try mount.publish(AllowList(hosts: [good]).encoded())

            try await ProxyHarness.with(nil) { proxy in
                var quiet = Logger(label: "watcher")
                quiet.logLevel = .critical
                let watcher = AllowListWatcher(path: mount.path, store: proxy.store, logger: quiet)
                #expect(!proxy.store.isReady)
                #expect(watcher.checkNow())
                #expect(proxy.store.isReady)
                #expect(!watcher.checkNow(), "unchanged file is not reloaded")

                // Clients hammer the allowed host while the list is swapped back and forth.
                let port = proxy.port
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            let client = try await TestClient.connect(port: port)
                            var failures = 0
                            for _ in 0..<40 {
                                let r = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                                if r.status != .ok { failures += 1 }
                            }
                            await client.close()
                            return failures
                        }
                    }
                    for i in 0..<10 {
                        try mount.publish(AllowList(hosts: i % 2 == 0 ? [good, other] : [good]).encoded())
                        #expect(watcher.checkNow())
                        await Task.yield()
                    }
                    var failures = 0
                    for try await f in group { failures += f }
                    #expect(failures == 0)
                }

                // An invalid document is rejected, counted, and the last good list stays.
                try mount.publish("{ not json")
                #expect(!watcher.checkNow())
                try mount.publish(
                    #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"Bad Host"}]}"#
                )
                #expect(!watcher.checkNow())
                let client = try await proxy.client()
                let still = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(still.status == .ok)
                #expect(proxy.metricsText.contains("egress_allowlist_reload_errors_total 2"))
                #expect(proxy.metricsText.contains("egress_allowlist_reloads_total 11"))
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 0.0\n"))
                // The good list in force, written back (a broken edit reverted): the file is read, nothing reloads.
                try mount.publish(AllowList(hosts: [good]).encoded())
                #expect(!watcher.checkNow())
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 1.0\n"))

                // A missing file (a volume being remounted) is reported once, not at every check; when it comes
                // back as it was, the good list it holds is in force again.
                let away = mount.path + ".away"
                #expect(rename(mount.path, away) == 0)
                for _ in 0..<3 { #expect(!watcher.checkNow()) }
                #expect(proxy.metricsText.contains("egress_allowlist_reload_errors_total 3"))
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 0.0\n"))
                #expect(rename(away, mount.path) == 0)
                #expect(!watcher.checkNow(), "the same list is not reloaded")
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 1.0\n"))
                // An unreadable one likewise, reported once.
                let unreadable = AllowListWatcher(path: mount.directory, store: proxy.store, logger: quiet)
                for _ in 0..<3 { #expect(!unreadable.checkNow()) }
                #expect(proxy.metricsText.contains("egress_allowlist_reload_errors_total 4"))
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 0.0\n"))

                // A valid list without the host takes effect for the next request on the same connection.
                try mount.publish(AllowList(hosts: [other]).encoded())
                #expect(watcher.checkNow())
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_successful 1.0\n"))
                #expect(proxy.metricsText.contains("egress_allowlist_last_reload_success_timestamp_seconds 1"))
                let denied = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(denied.status == .forbidden)
                await client.close()
            }
        }
    }
}

@Suite struct AdminAndObservabilityTests {
    @Test func readinessMetricsAndAccessLog() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(nil) { proxy in
                let admin = try await AdminServer.bind(
                    host: "127.0.0.1",
                    port: 0,
                    registry: proxy.registry,
                    readiness: { [store = proxy.store] in store.notReadyReason }
                )
                let adminPort = admin.localAddress.port!
                func adminGet(_ path: String) async throws -> String {
                    let raw = try await RawConnection.connect(port: adminPort)
                    try await raw.send("GET \(path) HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                    let response = await raw.readResponse() ?? ""
                    await raw.close()
                    return response
                }
                #expect(try await adminGet("/healthz").hasPrefix("HTTP/1.1 200"))
                #expect(try await adminGet("/readyz").hasPrefix("HTTP/1.1 503"))
                let client = try await proxy.client()
                let notReady = try await client.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(notReady.status == .serviceUnavailable)

                proxy.store.install(AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]))
                #expect(try await adminGet("/readyz").hasPrefix("HTTP/1.1 200"))
                #expect(try await client.get("/hello", host: Fixtures.host("good.upstream.test")).status == .ok)
                #expect(try await client.get("/x", host: Fixtures.host("nope.example.com")).status == .forbidden)
                await client.close()
                let garbled = try await proxy.raw(sending: "G\"ET / HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(await garbled.readResponse()?.hasPrefix("HTTP/1.1 400") == true)
                await garbled.close()

                let metrics = try await adminGet("/metrics")
                for line in [
                    #"egress_requests_total{host="good.upstream.test",code="2xx"} 1"#,
                    #"egress_requests_total{host="_denied",code="4xx"} 2"#,
                    #"egress_requests_total{host="_denied",code="5xx"} 1"#,
                    #"egress_denials_total{reason="not-allowed"} 1"#,
                    #"egress_denials_total{reason="not-ready"} 1"#,
                    #"egress_upstream_connections_total{host="good.upstream.test",kind="opened"} 1"#,
                    #"egress_request_duration_seconds_count{host="good.upstream.test"} 1"#,
                    "egress_allowlist_entries 1.0",
                    "egress_allowlist_reloads_total 1",
                    "# TYPE egress_requests_total counter",
                ] {
                    #expect(metrics.contains(line + "\n"), "missing \(line)")
                }
                // Every proxy metric the chart's dashboard and alerts query is one the proxy exports.
                let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                    .deletingLastPathComponent().deletingLastPathComponent()
                for file in [
                    "charts/egress-operator/dashboards/egress.json", "charts/egress-operator/alerts/egress.rules.yaml",
                ] {
                    let text = try String(contentsOf: repository.appendingPathComponent(file), encoding: .utf8)
                    let names = Set(text.matches(of: /egress_[a-z_]+/).map { String($0.output) })
                    #expect(!names.isEmpty, "\(file) names no metric")
                    for name in names where !name.hasPrefix("egress_operator_") {
                        let family = name.replacing(/_(bucket|sum|count)$/, with: "")
                        #expect(
                            metrics.contains("# TYPE \(family) "),
                            "\(file) queries \(name), which the proxy does not export"
                        )
                    }
                }

                // One JSON line per request; no path unless configured.
                let lines = proxy.accessLog.all
                #expect(lines.count == 4)
                let allowed = try #require(lines.first { $0.contains(#""status":200"#) })
                let object = try JSONSerialization.jsonObject(with: Data(allowed.utf8)) as? [String: Any]
                #expect(object?["host"] as? String == "good.upstream.test")
                #expect(object?["decision"] as? String == "allow")
                #expect(object?["method"] as? String == "GET")
                #expect(object?["client"] as? String == "127.0.0.1")
                #expect((object?["bytes_out"] as? Int) == 20)
                #expect(object?["path"] == nil)
                #expect(object?["time"] != nil && object?["duration_ms"] != nil)
                let denied = try #require(lines.first { $0.contains(#""status":403"#) })
                #expect(denied.contains(#""decision":"deny""#) && denied.contains(#""reason":"not-allowed""#))
                // A request too garbled to have a method is not logged as a GET.
                let malformed = try #require(lines.first { $0.contains(#""reason":"malformed-request""#) })
                #expect(malformed.contains(#""method":"-""#), "\(malformed)")

                await admin.close()
            }
        }
    }

    /// `GET /allowlist` on the admin port (what the operator asks before it reports a host Ready) lists what the
    /// process routes: nothing before a first list (503), then every host, with the ones whose TLS material it cannot
    /// load (a CA bundle the kubelet has not copied in yet) named with the reason, until the files are there.
    @Test func theAllowListPageSaysWhatIsRouted() async throws {
        let pki = TestPKI.shared
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("egress-report-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await ProxyHarness.with(nil) { proxy in
            let admin = try await AdminServer.bind(
                host: "127.0.0.1",
                port: 0,
                registry: proxy.registry,
                readiness: { nil },
                pages: ProxyRuntime.adminPages(proxy.store)
            )
            func report() async throws -> (status: String, report: ProxyLoadReport?) {
                let raw = try await RawConnection.connect(port: admin.localAddress.port!)
                try await raw.send("GET /allowlist HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                let response = await raw.readResponse() ?? ""
                await raw.close()
                let parts = response.components(separatedBy: "\r\n\r\n")
                let status = String(response.prefix(12))
                guard status == "HTTP/1.1 200", parts.count > 1 else { return (status, nil) }
                #expect(response.lowercased().contains("content-type: application/json"))
                return (status, try ProxyLoadReport.decode(Array(parts[1].utf8)))
            }
            #expect(try await report().status == "HTTP/1.1 503")

            let partnerCA = "\(directory)/partner.ca.crt"
            let entries = [
                AllowList.Entry(host: "api.github.com"),
                AllowList.Entry(host: "*.googleapis.com"),
                AllowList.Entry(host: "partner.example.com", tls: .init(caFile: partnerCA)),
                AllowList.Entry(host: "other.example.com", tls: .init(caFile: pki.ca.certificatePath)),
            ]
            proxy.store.install(AllowList(hosts: entries))
            let missing = try #require(try await report().report)
            #expect(missing.entries == Dictionary(uniqueKeysWithValues: entries.map { ($0.host, $0.fingerprint) }))
            #expect(Array(missing.unusable.keys) == ["partner.example.com"])
            #expect(missing.unusable["partner.example.com"]?.contains("cannot load TLS material") == true)

            try FileManager.default.copyItem(atPath: pki.ca.certificatePath, toPath: partnerCA)
            try await Task.sleep(for: .milliseconds(1_100))
            let present = try #require(try await report().report)
            #expect(present.entries == missing.entries)
            #expect(present.unusable.isEmpty)

            // A new version of an entry: a new fingerprint.
            let moved = AllowList.Entry(host: "api.github.com", port: 8443)
            proxy.store.install(AllowList(hosts: [moved]))
            #expect(try await report().report == ProxyLoadReport(entries: ["api.github.com": moved.fingerprint]))
            #expect(moved.fingerprint != entries[0].fingerprint)
            await admin.close()
        }
    }

    @Test func pathsAreLoggedOnlyWhenConfigured() async throws {
        try await ProxyHarness.with(AllowList(hosts: []), configure: { $0.logPaths = true }) { proxy in
            let client = try await proxy.client()
            _ = try await client.get("/secret/path?q=1", host: Fixtures.host("nope.example.com"))
            await client.close()
            #expect(proxy.accessLog.all.first?.contains(#""path":"/secret/path?q=1""#) == true)
        }
    }
}

@Suite struct LifecycleTests {
    @Test func gracefulShutdownDrainsAnInFlightRequest() async throws {
        try await ProxyHarness.withGoodUpstream { proxy, upstream in
            let port = proxy.port
            let idle = try await proxy.client()
            _ = try await idle.get("/hello", host: Fixtures.host("good.upstream.test"))
            try await withThrowingTaskGroup(of: TestResponse.self) { group in
                group.addTask {
                    let client = try await TestClient.connect(port: port)
                    return try await client.send(
                        HTTPRequestHead(
                            version: .http1_1,
                            method: .GET,
                            uri: "/slow/500",
                            headers: ["Host": Fixtures.host("good.upstream.test")]
                        )
                    )
                }
                // Wait until the upstream has the request, then begin graceful shutdown.
                while upstream.requests < 2 { try await Task.sleep(for: .milliseconds(10)) }
                await proxy.serviceGroup.triggerGracefulShutdown()
                let response = try await group.next()!
                #expect(response.status == .ok)
                #expect(response.text == "slow\n")
                #expect(response.headers["connection"] == ["close"])
            }
            // The idle keep-alive connection was closed, and new connections are refused.
            await #expect(throws: ClientClosedError.self) { _ = try await idle.next() }
            await #expect(throws: (any Error).self) { _ = try await TestClient.connect(port: proxy.port) }
        }
    }

    /// A request the shutdown deadline cuts short is logged as such (`shutdown-deadline`), not as a client that
    /// went away.
    @Test func aRequestCutShortByTheShutdownDeadlineSaysSo() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                configure: { $0.shutdownGracePeriod = .milliseconds(200) }
            ) { proxy in
                let raw = try await proxy.raw(
                    sending: "GET /slow/5000 HTTP/1.1\r\nHost: \(Fixtures.host("good.upstream.test"))\r\n\r\n"
                )
                while upstream.requests < 1 { try await Task.sleep(for: .milliseconds(10)) }
                await proxy.serviceGroup.triggerGracefulShutdown()
                _ = await raw.readResponse()
                await raw.close()
                for _ in 0..<500 where proxy.accessLog.all.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
                let line = try #require(proxy.accessLog.all.first)
                #expect(line.contains(#""reason":"shutdown-deadline""#), "\(line)")
                #expect(line.contains(#""status":499"#), "\(line)")
            }
        }
    }

    /// With a shutdown delay, readiness fails at once but connections are still accepted and served until the
    /// delay ends (Kubernetes is still removing the pod from the Service's endpoints); then they are refused.
    @Test func gracefulShutdownKeepsAcceptingDuringTheDelay() async throws {
        try await TestUpstream.with { upstream in
            try await ProxyHarness.with(
                AllowList(hosts: [Fixtures.entry("good.upstream.test", upstream: upstream)]),
                configure: { $0.shutdownDelay = .seconds(2) }
            ) { proxy in
                #expect(proxy.store.isReady)
                await proxy.serviceGroup.triggerGracefulShutdown()
                var polls = 0
                while proxy.store.isReady, polls < 100 {
                    try await Task.sleep(for: .milliseconds(5))
                    polls += 1
                }
                #expect(proxy.store.notReadyReason == "shutting down")
                let late = try await TestClient.connect(port: proxy.port)
                let response = try await late.get("/hello", host: Fixtures.host("good.upstream.test"))
                #expect(response.status == .ok)
                await late.close()
                try await Task.sleep(for: .milliseconds(2_500))
                await #expect(throws: (any Error).self) { _ = try await TestClient.connect(port: proxy.port) }
            }
        }
    }

    /// At the limit a new connection takes the place of the one idle longest, as nginx reuses idle keep-alive
    /// connections (connections kept open with an occasional request cannot lock others out); only when every
    /// connection is answering is the new one refused with a 503.
    @Test func connectionLimit() async throws {
        try await ProxyHarness.with(AllowList(hosts: []), configure: { $0.maxClientConnections = 2 }) { proxy in
            let denied = "GET / HTTP/1.1\r\nHost: x.y.egress.local\r\n\r\n"
            let (older, newer) = (try await proxy.raw(), try await proxy.raw())
            // Both accepted, each answered once and idle again.
            for connection in [older, newer] {
                try await connection.send(denied)
                #expect(await connection.readResponse()?.hasPrefix("HTTP/1.1 403") == true)
            }
            #expect(proxy.metricsText.contains("egress_client_connections 2.0\n"), "\(proxy.metricsText)")
            #expect(proxy.metricsText.contains("egress_client_connections_limit 2.0\n"))
            // The proxy marks a connection idle just after its answer left: wait for both (bounded).
            for _ in 0..<1_000 where proxy.proxy.idleClientConnections < 2 {
                try await Task.sleep(for: .milliseconds(10))
            }
            let third = try await proxy.raw(sending: denied)
            #expect(await third.readResponse()?.hasPrefix("HTTP/1.1 403") == true, "answered at the limit")
            #expect(await older.readResponse() == nil, "the connection idle longest made room")
            try await newer.send(denied)
            #expect(await newer.readResponse()?.hasPrefix("HTTP/1.1 403") == true, "the newer one stays")

            // Both answering (refused requests whose bodies are still to come): the next is refused.
            let body = "POST / HTTP/1.1\r\nHost: x.y.egress.local\r\nContent-Length: 10\r\n\r\n"
            for connection in [newer, third] {
                try await connection.send(body)
                #expect(await connection.readResponse()?.hasPrefix("HTTP/1.1 403") == true)
            }
            #expect(proxy.proxy.clientConnections == 2 && proxy.proxy.idleClientConnections == 0)
            let c = try await proxy.raw()
            let refused = await c.readResponse()
            #expect(refused?.hasPrefix("HTTP/1.1 503") == true)
            #expect(refused?.contains("X-Egress-Error: too-many-connections") == true)
            #expect(proxy.metricsText.contains("egress_denials_total{reason=\"too-many-connections\"} 1\n"))
            for connection in [older, newer, third, c] { await connection.close() }
            // Closed connections leave the gauge (the proxy learns of each close a moment later).
            var polls = 0
            while !proxy.metricsText.contains("egress_client_connections 0.0\n"), polls < 200 {
                try await Task.sleep(for: .milliseconds(10))
                polls += 1
            }
            #expect(proxy.metricsText.contains("egress_client_connections 0.0\n"))
        }
    }
}
