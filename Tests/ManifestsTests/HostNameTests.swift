import Foundation
import Manifests
import Testing

struct HostNameTests {
    @Test(
        "accepts DNS names and wildcards",
        arguments: [
            "api.github.com", "a.io", "xn--80ak6aa92e.com", "*.example.com", "*.s3.eu-west-1.amazonaws.com",
            "api-2.example.co.uk", "0day.example.com", String(repeating: "a", count: 63) + ".com",
        ]
    )
    func accepts(_ host: String) {
        #expect(HostName.validate(host) == [])
    }

    @Test(
        "rejects with a message a user understands",
        arguments: [
            ("https://api.github.com", "not a URL"),
            ("api.github.com/repos", "not a URL"),
            ("api.github.com:443", "put the port in spec.port"),
            ("10.0.0.1", "IP addresses are not allowed"),
            ("[::1]", "IPv6 literals are not host names"),
            ("API.GitHub.com", "only lowercase letters"),
            ("api..github.com", "no empty labels"),
            (".github.com", "no empty labels"),
            ("github.com.", "no empty labels"),
            ("localhost", "two or more labels"),
            ("*.com", "two or more labels"),
            ("foo.*.example.com", "optional leading \"*.\""),
            ("*example.com", "optional leading \"*.\""),
            ("-api.github.com", "not starting or ending with \"-\""),
            ("api.github.com.egress.local", "proxy's own suffix"),
            ("egress.local", "proxy's own suffix"),
            ("*.egress.local", "proxy's own suffix"),
            ("api.github.com\n", "only lowercase letters"),
            ("api github.com", "only lowercase letters"),
            (String(repeating: "a", count: 64) + ".com", "each 1-63 characters"),
            ((1...64).map { _ in "abcd" }.joined(separator: "."), "at most 253 characters"),
            ("", "must not be empty"),
        ]
    )
    func rejects(_ host: String, _ expected: String) {
        let problems = HostName.validate(host)
        #expect(problems.contains { $0.contains(expected) }, "\(host): \(problems)")
    }

    /// The CRD schema uses the regexes, the operator and proxy the Swift checks: they must agree.
    @Test("Swift checks and schema patterns agree")
    func patternsAgreeWithCode() throws {
        let corpus = [
            "api.github.com", "*.example.com", "a.b", "1.2.3.4", "1.2.3.a4", "a.1b", "-a.b", "a-.b", "a.b-", "*.a.b",
            "**.a.b", "*.*.a.b", "a..b", ".a.b", "a.b.", "A.b", "a_b.c", "a.b/c", "a:b.c", "egress.local",
            "x.egress.local", "egress.locals", "x.egress.local.com", "xegress.local", "", "*.", "*", "a",
            String(repeating: "a", count: 63) + ".b", String(repeating: "a", count: 64) + ".b", "a.b\n", "ü.com",
        ]
        for host in corpus {
            for rule in HostName.rules {
                // RE2 (the API server's engine) matches `$` only at the very end; ICU also before a final newline.
                let pattern = rule.pattern.hasSuffix("$") ? String(rule.pattern.dropLast()) + #"\z"# : rule.pattern
                let regex = try NSRegularExpression(pattern: pattern)
                let regexMatches = regex.firstMatch(in: host, range: NSRange(host.startIndex..., in: host)) != nil
                #expect(rule.matches(host[...]) == regexMatches, "\(rule.pattern) on \(host.debugDescription)")
            }
        }
    }
}

struct SpecValidationTests {
    @Test func validSpecHasNoProblems() {
        for sample in Samples.all {
            #expect(SpecValidation.problems(sample.host.spec) == [], "\(sample.file)")
        }
    }

    /// Fixed addresses the proxy's SSRF check would refuse are refused in the spec unless it allows them.
    @Test func privateFixedAddressesNeedAllowPrivateAddresses() {
        var spec = EgressHost.Spec(host: "db.example.com", addresses: ["192.0.2.1", "10.1.2.3", "::ffff:127.0.0.1"])
        #expect(
            SpecValidation.problems(spec) == [
                "spec.addresses[1]: 10.1.2.3 is a private address, which the proxy refuses unless "
                    + "spec.allowPrivateAddresses is true",
                "spec.addresses[2]: ::ffff:127.0.0.1 is a loopback address, which the proxy refuses unless "
                    + "spec.allowPrivateAddresses is true",
            ]
        )
        spec.allowPrivateAddresses = true
        #expect(SpecValidation.problems(spec).isEmpty)
    }

    @Test func reportsEveryField() {
        let spec = EgressHost.Spec(
            host: "*.example.com",
            port: 70000,
            tls: .init(caBundle: .init(kind: .secret, name: "Bad_Name", key: "a/b"), serverName: "Not.Valid"),
            addresses: ["1.2.3.4", "300.1.1.1", "fe80::1", "zz::1"],
            timeouts: .init(connect: "5 seconds", responseHeaders: "1m30s", idle: "1.5s")
        )
        let problems = SpecValidation.problems(spec)
        #expect(
            problems == [
                "spec.port: must be between 1 and 65535",
                "spec.tls.serverName: must be a lowercase DNS name",
                "spec.tls.caBundle.key: may contain only letters, digits, \"-\", \"_\" and \".\"",
                "spec.tls.caBundle.name: must be a lowercase Kubernetes object name",
                "spec.addresses[1]: \"300.1.1.1\" is not an IPv4 or IPv6 address",
                "spec.addresses[2]: fe80::1 is a link-local address, which the proxy refuses unless "
                    + "spec.allowPrivateAddresses is true",
                "spec.addresses[3]: \"zz::1\" is not an IPv4 or IPv6 address",
                "spec.addresses: cannot be combined with a wildcard host",
                "spec.timeouts.connect: \"5 seconds\" is not a duration such as 500ms, 5s or 1m30s",
            ]
        )
    }

    @Test("a host must fit, with the operator's suffix, in a DNS name; and must not be under that suffix")
    func hostFitsUnderTheSuffix() {
        // 240 = 253 - ".egress.local".count: the CRD's limit.
        let label = String(repeating: "a", count: 63)
        func name(lastLabel: Int) -> String {
            [label, label, label, String(repeating: "b", count: lastLabel)].joined(separator: ".") + ".com"
        }
        let longest = name(lastLabel: 44)
        #expect(longest.utf8.count == 240)
        #expect(SpecValidation.problems(.init(host: longest)) == [])
        #expect((longest + ".egress.local").utf8.count == 253)
        let longer = name(lastLabel: 45)
        #expect(
            SpecValidation.problems(.init(host: longer)) == [
                "spec.host: must be at most 240 characters: the name applications call, HOST.egress.local, must fit "
                    + "in DNS's 253"
            ]
        )
        // A wildcard's names (x.base.SUFFIX) are as long as the wildcard under the suffix.
        #expect(SpecValidation.problems(.init(host: "*." + longest.dropFirst(2))) == [])
        #expect(SpecValidation.problems(.init(host: "*." + longest.dropFirst(1))).count == 1)
        // A longer suffix leaves less room, and a host under it is refused.
        let suffix = "egress.svc.example.internal"
        #expect(SpecValidation.problems(.init(host: longest), suffix: suffix).count == 1)
        #expect(
            SpecValidation.problems(.init(host: "api.egress.svc.example.internal"), suffix: suffix) == [
                "spec.host: must not be under egress.svc.example.internal: that is the proxy's own suffix"
            ]
        )
    }

    @Test(
        arguments: [
            ("500ms", 500), ("5s", 5_000), ("1m30s", 90_000), ("1.5s", 1_500), ("2h", 7_200_000),
            ("1h1m1s1ms", 3_661_001),
        ]
    )
    func durations(_ text: String, _ millis: Int) {
        #expect(GoDuration.milliseconds(text) == millis)
    }

    @Test func zeroTimeoutsAreProblems() {
        let spec = EgressHost.Spec(
            host: "a.example.com",
            timeouts: .init(connect: "0s", responseHeaders: "0ms", idle: "1ms")
        )
        #expect(
            SpecValidation.problems(spec) == [
                "spec.timeouts.connect: must be at least 1ms", "spec.timeouts.responseHeaders: must be at least 1ms",
            ]
        )
    }

    @Test(arguments: ["", "5", "s", "5x", "-5s", ".5s", "5.s", "5 s", "1e3s", "9999999h"])
    func badDurations(_ text: String) {
        #expect(GoDuration.milliseconds(text) == nil)
    }

    @Test func ipAddresses() {
        for valid in [
            "127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::", "fe80::1", "2001:db8::8:800:200c:417a",
            "1:2:3:4:5:6:7:8", "::ffff:10.0.0.1", "64:ff9b::192.0.2.33",
        ] {
            #expect(IPAddress.isValid(valid), "\(valid)")
        }
        for invalid in [
            "256.0.0.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::",
            "::ffff:300.0.0.1", "g::1", "example.com", "",
        ] {
            #expect(!IPAddress.isValid(invalid), "\(invalid)")
        }
    }
}
