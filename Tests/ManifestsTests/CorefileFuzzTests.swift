import Foundation
import FuzzSupport
import Manifests
import Testing

/// Seeded random Corefiles (the fixtures, mutated with the tokens Corefiles are made of) through the editor. The
/// operator edits a file the cluster's owner wrote, so for every input the editor must not trap, and when it edits:
/// - editing its own output again with the same hosts changes nothing;
/// - the output holds exactly the hosts asked for;
/// - removing the hosts gives back the input byte for byte (nothing of the owner's is lost or moved);
/// - editing its own output without a parse (the operator's fast path) gives what a parse gives.
///
/// The seeds are fixed, so a failure names an input that fails again.
@Suite struct CorefileFuzzTests {
    static let inputsPerSeed = 1_000
    static let proxy = "egress-proxy.egress-system.svc.cluster.local"
    static let hostPool = ["api.github.com", "*.example.com", "registry.npmjs.org", "*.s3.amazonaws.com", "a.io", "*"]

    static let fixtures: [String] = [
        "kubeadm", "k3s", "toplevel-import", "multiple-blocks", "comments-quotes", "tabs", "user-rewrite",
    ].map { name in
        let url = Bundle.module.url(forResource: "Golden", withExtension: nil)!
            .appendingPathComponent("corefile").appendingPathComponent("\(name).input.txt")
        return try! String(contentsOf: url, encoding: .utf8)
    }

    static let seeds = Self.fixtures.map { Array($0.unicodeScalars) }
    static let fragmentScalars = Self.fragments.map { Array($0.unicodeScalars) }
    static let fragments: [String] = [
        "{", "}", "\n", "\r\n", "\t", " ", "#", "\"", "'", "\\", ";", ".", ":53", "import *.override\n",
        ".:53 {\n    errors\n}\n", "local:53 {\n    forward . 10.0.0.10\n}\n", "egress.local {\n    whoami\n}\n",
        "rewrite name exact a.example b.example\n", "\(CorefileEditor.beginMarker)\n", "\(CorefileEditor.endMarker)\n",
        "(snippet) {\n    log\n}\n", "import snippet\n", "reload\n",
        "template ANY ANY egress.local {\n    rcode NXDOMAIN\n}\n",
        "dns://.:5353 {\n    forward . /etc/resolv.conf\n}\n", "hosts {\n    reload 15s\n    fallthrough\n}\n",
    ]

    @Test(arguments: [1, 2, 3] as [UInt64])
    func mutatedCorefiles(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for index in 0..<Self.inputsPerSeed {
            let input = Self.mutated(&random)
            let mode: CoreDNSRuleMode = Bool.random(using: &random) ? .perHost : .suffix
            let editor = try CorefileEditor(proxyServiceFQDN: Self.proxy, mode: mode)
            let hosts = Self.hosts(&random)
            let other = Self.hosts(&random)
            let context =
                "seed \(seed) input \(index) (\(mode), hosts \(hosts), then \(other)): \(input.debugDescription)"

            let first: CorefileEditor.Edit
            do {
                first = try editor.edit(hosts: hosts, in: input, after: nil)
            } catch {
                continue  // refused with a CorefileError, which says why: the operator reports it and writes nothing
            }
            let output = first.corefile
            #expect(
                (try? editor.apply(hosts: hosts, to: output)) == output,
                "editing again changes nothing: \(context)"
            )
            #expect((try? editor.managedHosts(in: output)) == first.managedHosts, "holds the hosts: \(context)")
            if !input.contains("egress-operator") {
                #expect((try? editor.apply(hosts: [], to: output)) == input, "removal restores the input: \(context)")
            }
            let reused = try? editor.edit(hosts: other, in: output, after: first).corefile
            #expect(reused == (try? editor.apply(hosts: other, to: output)), "the fast path is a parse: \(context)")
        }
    }

    static func mutated(_ random: inout SplitMix64) -> String {
        var text = ""
        text.unicodeScalars.append(contentsOf: random.mutated(Self.seeds, inserting: Self.fragmentScalars))
        return text
    }

    /// Zero to three hosts of the pool (the suffix itself, `*`, among them).
    static func hosts(_ random: inout SplitMix64) -> [String] {
        (0..<Int.random(in: 0...3, using: &random)).map { _ in
            Self.hostPool[Int.random(in: 0..<Self.hostPool.count, using: &random)]
        }
    }
}
