import FuzzSupport
import Manifests
import Testing

@testable import Proxy

/// Seeded random mutations of allow-list documents through the proxy's reader and router. The proxy reads the file
/// on every change of its ConfigMap; a document that made it trap would take down every proxy replica at once, so
/// for every input the reader must either refuse it with an error (the last good list stays) or return a list that:
/// - reads back the same from its own encoding (what the operator writes is what the proxy reads);
/// - routes each exact host to its own entry, and a name under each wildcard to an entry.
@Suite struct AllowListFuzzTests {
    /// About 3 % of the mutated documents are still valid lists; the rest must be refused without a trap.
    static let inputsPerSeed = 10_000

    static let seeds: [[UInt8]] = [
        #"""
        {"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[
        {"host":"*.googleapis.com","timeouts":{"responseHeadersMillis":60000}},
        {"host":"api.github.com"},
        {"host":"api.stripe.com","addresses":["198.51.100.10","198.51.100.11"]},
        {"host":"payments.partner.example.com","port":8443,"tls":{"caFile":"/etc/egress-proxy/tls/ca.crt","clientCertificateFile":"/etc/egress-proxy/tls/tls.crt","clientKeyFile":"/etc/egress-proxy/tls/tls.key"},"timeouts":{"connectMillis":2000,"responseHeadersMillis":10000,"idleMillis":300000}}
        ]}
        """#,
        #"{"apiVersion":"egress.dev/v1alpha1","kind":"AllowList","hosts":[{"host":"*.example.com"},{"host":"a.example.com","tls":{"serverName":"b.example.com","insecureSkipVerify":true},"allowPrivateAddresses":true}]}"#,
        #"{"kind":"AllowList","apiVersion":"egress.dev/v1alpha1","hosts":[]}"#,
    ].map { Array($0.utf8) }

    static let fragments: [[UInt8]] =
        [
            "{", "}", "[", "]", "\"", ",", ":", "\\", " ", "\n", "0", "-", ".", "e", "\\u0000", "\\ud800", "\\n",
            "null",
            "true", "-1", "1e999", "0.5", "99999999999999999999", #""port":0,"#, #""port":65536,"#, #""host":"*","#,
            #""host":"*.com","#, #""host":"A.B.io","#, #""host":"a..b","#, #""host":"api.github.com"},{"#,
            #"{"host":"x.io"},"#, #""addresses":["::1","10.0.0.1"],"#, #""timeouts":{"idleMillis":0},"#,
            #""tls":{"caFile":""},"#, #""hosts":[],"#, "[[[[[[[[", "]]]]]]]]", #""extra":{"a":[1,2,{"b":null}]},"#,
        ].map { Array($0.utf8) } + [[0], [0x80], [0xFF], [0xC3, 0xA9]]

    @Test(arguments: [1, 2, 3] as [UInt64])
    func mutatedDocuments(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for index in 0..<Self.inputsPerSeed {
            let input = random.mutated(Self.seeds, inserting: Self.fragments)
            guard let list = try? AllowList.decode(input) else { continue }
            let context = "seed \(seed) input \(index) \(String(decoding: input, as: UTF8.self).debugDescription)"
            #expect((try? AllowList.decode(Array(list.encoded().utf8))) == list, "reads back its encoding: \(context)")
            let router = Router(list)
            for entry in list.hosts {
                if entry.host.hasPrefix("*.") {
                    let name = "fuzz-\(index)." + entry.host.dropFirst(2)
                    #expect(router.route(for: name) != nil, "\(name) is routed: \(context)")
                } else {
                    #expect(router.route(for: entry.host)?.entry == entry, "\(entry.host) is routed: \(context)")
                }
            }
        }
    }
}
