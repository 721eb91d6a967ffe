import Foundation
import Manifests
import XCTest

final class CorefileTests: XCTestCase {
    private static let proxy = "egress-proxy.egress-system.svc.cluster.local"
    /// Unsorted, with a duplicate in another case, so canonicalisation shows in every golden.
    private static let hosts = [
        "registry.npmjs.org", "*.example.com", "api.github.com", "API.GitHub.com", "*.s3.amazonaws.com",
    ]
    private static let canonicalHosts = ["api.github.com", "registry.npmjs.org", "*.example.com", "*.s3.amazonaws.com"]
    private static let fixtures = [
        "kubeadm", "k3s", "toplevel-import", "multiple-blocks", "comments-quotes", "tabs", "user-rewrite",
    ]

    private func editor(_ mode: CoreDNSRuleMode = .perHost) throws -> CorefileEditor {
        try CorefileEditor(proxyServiceFQDN: Self.proxy, mode: mode)
    }

    private func golden(_ name: String) throws -> String {
        let directory = try XCTUnwrap(Bundle.module.url(forResource: "Golden", withExtension: nil))
        let url = directory.appendingPathComponent("corefile").appendingPathComponent(name)
        return try String(contentsOf: url, encoding: .utf8)
    }

    private func assertError(
        _ expected: CorefileError,
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: () throws -> some Any
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? CorefileError, expected, "\(error)", file: file, line: line)
        }
    }

    /// The `reload` plugin directly in a server block counts; a plugin's own `reload` option, an argument or a
    /// comment does not.
    func testLoadsReload() throws {
        let cases: [(String, Bool)] = [
            (".:53 {\n    errors\n    reload\n}\n", true),
            (".:53 {\n\treload 10s\n}", true),
            (".:53 {\r\n    reload\r\n}\r\n", true),
            ("example.org {\n    reload\n}\n.:53 {\n    errors\n}\n", true),
            (".:53 {\n    # reload\n    reloader\n    errors reload\n}\n", false),
            (".:53 {\n    hosts /etc/coredns/NodeHosts {\n        reload 15s\n    }\n}\n", false),
            ("(snippet) {\n    reload\n}\n.:53 {\n    errors\n}\n", false),
            ("", false),
            (".:53 {\n}\n   ", false),
        ]
        for (corefile, expected) in cases {
            XCTAssertEqual(try CorefileEditor.loadsReload(in: corefile), expected, corefile.debugDescription)
        }
        XCTAssertTrue(try CorefileEditor.loadsReload(in: try golden("k3s.input.txt")))
        XCTAssertTrue(try CorefileEditor.loadsReload(in: try golden("kubeadm.input.txt")))
    }

    // MARK: Golden fixtures

    func testGoldenFixtures() throws {
        let editor = try editor()
        for name in Self.fixtures {
            let input = try golden("\(name).input.txt")
            let expected = try golden("\(name).expected.txt")
            let output = try editor.apply(hosts: Self.hosts, to: input)
            XCTAssertEqual(output, expected, name)
            XCTAssertEqual(try editor.apply(hosts: Self.hosts, to: output), output, "\(name): apply twice")
            XCTAssertEqual(try editor.apply(hosts: Self.hosts.reversed(), to: output), output, "\(name): host order")
            XCTAssertEqual(try editor.managedHosts(in: output), Self.canonicalHosts, name)
            XCTAssertEqual(try editor.edit(hosts: Self.hosts, in: input).managedHosts, Self.canonicalHosts, name)
            XCTAssertEqual(try editor.managedHosts(in: input), [], name)
            XCTAssertEqual(try editor.apply(hosts: [], to: output), input, "\(name): removal restores the input")
            XCTAssertEqual(try editor.apply(hosts: [], to: input), input, "\(name): nothing to remove")
        }
    }

    func testSuffixModeGolden() throws {
        let editor = try editor(.suffix)
        let input = try golden("kubeadm.input.txt")
        let output = try editor.apply(hosts: Self.hosts, to: input)
        XCTAssertEqual(output, try golden("kubeadm.suffix.expected.txt"))
        XCTAssertEqual(try editor.apply(hosts: ["only.one.example"], to: output), output, "one rule whatever the hosts")
        XCTAssertEqual(try editor.managedHosts(in: output), ["*"])
        XCTAssertEqual(try editor.edit(hosts: Self.hosts, in: input).managedHosts, ["*"])
        XCTAssertEqual(try editor.edit(hosts: [], in: output).managedHosts, try editor.managedHosts(in: input))
        XCTAssertEqual(try editor.apply(hosts: [], to: output), input)
        // A per-host editor reads the block back the same way and can replace it.
        let perHost = try self.editor()
        XCTAssertEqual(try perHost.managedHosts(in: output), ["*"])
        XCTAssertEqual(try perHost.apply(hosts: Self.hosts, to: output), try golden("kubeadm.expected.txt"))
        XCTAssertEqual(try perHost.apply(hosts: ["*", "api.github.com"], to: input), output, "`*` subsumes the rest")
    }

    func testOverrideSnippetGolden() throws {
        let editor = try editor()
        XCTAssertEqual(try editor.overrideSnippet(hosts: Self.hosts), try golden("override.expected.txt"))
        XCTAssertEqual(try editor.overrideSnippet(hosts: []), "")
        XCTAssertEqual(CorefileEditor.overrideFileName, "egress-operator.override")
        let suffix = try self.editor(.suffix).overrideSnippet(hosts: ["a.example"])
        XCTAssertTrue(suffix.contains(#"rewrite stop name regex ^(?:[a-z0-9_-]+\.)+egress\.local\.?$ "#), suffix)
    }

    func testImportsOverrideFiles() throws {
        XCTAssertTrue(try CorefileEditor.importsOverrideFiles(in: golden("k3s.input.txt")))
        XCTAssertFalse(try CorefileEditor.importsOverrideFiles(in: golden("kubeadm.input.txt")))
        XCTAssertFalse(try CorefileEditor.importsOverrideFiles(in: "import custom/*.override\n.:53 {\n    errors\n}\n"))
        XCTAssertTrue(try CorefileEditor.importsOverrideFiles(in: ".:53 {\n    import custom/*.override\n}\n"))
    }

    // MARK: Editing behaviour

    func testHostSetChangeReplacesBlockInPlace() throws {
        let editor = try editor()
        let input = try golden("kubeadm.input.txt")
        let first = try editor.apply(hosts: ["a.example", "b.example"], to: input)
        let second = try editor.apply(hosts: ["c.example"], to: first)
        XCTAssertEqual(second, try editor.apply(hosts: ["c.example"], to: input))
        XCTAssertEqual(try editor.managedHosts(in: second), ["c.example"])

        // A block the admin moved (and re-indented) stays where it is, with its indentation.
        let moved = """
            .:53 {
                errors
                cache 30
              # egress-operator: begin managed block (do not edit)
              rewrite stop name exact a.example.egress.local. egress-proxy.egress-system.svc.cluster.local.
              # egress-operator: end managed block
                loop
            }

            """
        let expected = """
            .:53 {
                errors
                cache 30
              # egress-operator: begin managed block (do not edit)
              rewrite stop name exact c.example.egress.local. egress-proxy.egress-system.svc.cluster.local.
              template ANY ANY egress.local {
                  rcode NXDOMAIN
              }
              # egress-operator: end managed block
                loop
            }

            """
        XCTAssertEqual(try editor.apply(hosts: ["c.example"], to: moved), expected)
    }

    /// Editing its own output again splices the new block into the remembered layout instead of parsing: the text
    /// must be byte for byte what a parse gives, through a sequence of host sets, in every fixture and layout.
    func testEditingItsOwnOutputWithoutParsingGivesWhatParsingGives() throws {
        var random = CorefileTestRandom(seed: 7)
        let many = (0..<200).map { _ in "\(random.label()).\(random.label()).example" }
        // Big jumps, and steps of one host at the start, the middle and the end (the rule lines of the hosts a step
        // shares with the one before are reused).
        let sequence: [[String]] = [
            Self.hosts, ["a.example"], many, many + ["m.inserted.example"], many + ["*.m.example"], many,
            Array(many.dropFirst()), many + ["0.first.example", "zz.last.example"], many,
            Self.hosts + ["*.z.example"], [], Self.hosts, ["*"], ["b.example"],
        ]
        let layouts = Self.fixtures.map { "\($0).input.txt" }
        var inputs = try layouts.map(golden)
        inputs += [
            ".:53 {\r\n    errors\r\n    forward . /etc/resolv.conf\r\n}\r\n", ".:53 {\n    errors\n}", ".:53 {\n}\n",
            ".:53 {\n\terrors\n}\n.:5353 {\n    errors\n}\n",
        ]
        for mode in CoreDNSRuleMode.allCases {
            let editor = try editor(mode)
            for input in inputs {
                var previous = try editor.edit(hosts: [], in: input, after: nil)
                for hosts in sequence {
                    let parsed = try editor.edit(hosts: hosts, in: previous.corefile, after: nil)
                    let spliced = try editor.edit(hosts: hosts, in: previous.corefile, after: previous)
                    XCTAssertEqual(spliced.corefile, parsed.corefile, "\(mode) \(hosts.count) hosts in \(input)")
                    XCTAssertEqual(spliced.managedHosts, parsed.managedHosts)
                    XCTAssertEqual(spliced.managedHosts, try editor.managedHosts(in: spliced.corefile))
                    XCTAssertEqual(spliced.isReusable, !hosts.isEmpty, "a block to splice into exactly when one exists")
                    previous = spliced
                }
            }
        }
    }

    /// A Corefile someone else changed after our write is parsed again: their change stays, and a marker they broke
    /// is reported rather than spliced around.
    func testAChangedCorefileIsParsedAgain() throws {
        let editor = try editor()
        let ours = try editor.edit(hosts: ["a.example"], in: try golden("kubeadm.input.txt"), after: nil)
        XCTAssertTrue(ours.isReusable)
        let theirs = ours.corefile.replacingOccurrences(of: "cache 30", with: "cache 60")
        XCTAssertNotEqual(theirs, ours.corefile)
        let edited = try editor.edit(hosts: ["b.example"], in: theirs, after: ours)
        XCTAssertEqual(edited.corefile, try editor.apply(hosts: ["b.example"], to: theirs))
        XCTAssertTrue(edited.corefile.contains("cache 60"))

        let broken = ours.corefile.replacingOccurrences(of: CorefileEditor.endMarker, with: "# the end")
        assertError(.malformedMarkers(line: 2, .beginWithoutEnd)) {
            try editor.edit(hosts: ["b.example"], in: broken, after: ours)
        }
    }

    func testCRLFAndMissingTrailingNewline() throws {
        let editor = try editor()
        let crlf = ".:53 {\r\n    errors\r\n    forward . /etc/resolv.conf\r\n}\r\n"
        let output = try editor.apply(hosts: ["api.github.com"], to: crlf)
        let opening = ".:53 {\r\n    # egress-operator: begin managed block (do not edit)\r\n"
        XCTAssertTrue(output.hasPrefix(opening), output)
        XCTAssertFalse(
            output.unicodeScalars.indices.contains { index in
                output.unicodeScalars[index] == "\n"
                    && (index == output.unicodeScalars.startIndex
                        || output.unicodeScalars[output.unicodeScalars.index(before: index)] != "\r")
            },
            "every inserted line ends in CRLF"
        )
        XCTAssertEqual(try editor.apply(hosts: ["api.github.com"], to: output), output)
        XCTAssertEqual(try editor.apply(hosts: [], to: output), crlf)

        let bare = ".:53 {\n    errors\n}"
        let edited = try editor.apply(hosts: ["api.github.com"], to: bare)
        XCTAssertTrue(edited.hasSuffix("    errors\n}"), edited)
        XCTAssertEqual(try editor.apply(hosts: [], to: edited), bare)
    }

    func testBlockLayouts() throws {
        let editor = try editor()
        // Empty block: one indentation step inside the braces.
        let empty = try editor.apply(hosts: ["a.example"], to: "  .:53 {\n  }\n")
        XCTAssertTrue(empty.hasPrefix("  .:53 {\n      # egress-operator: begin"), empty)
        // `{` on the line after the key, a trailing comma continuing the key list, a scheme.
        let braceBelow = try editor.apply(hosts: ["a.example"], to: "example.org,\n dns://.:53\n{\n\twhoami\n}\n")
        XCTAssertTrue(braceBelow.hasPrefix("example.org,\n dns://.:53\n{\n\t# egress-operator: begin"), braceBelow)
        XCTAssertTrue(braceBelow.contains("\ttemplate ANY ANY egress.local {\n\t\trcode NXDOMAIN\n\t}\n"), braceBelow)
        // A byte order mark and non-ASCII text elsewhere survive untouched.
        let bom = "\u{FEFF}# zone für Grüße\n.:53 {\n    errors\n}\n"
        XCTAssertEqual(try editor.apply(hosts: [], to: editor.apply(hosts: ["a.example"], to: bom)), bom)
        // Content on the opening line leaves no clean insertion point; without hosts there is nothing to insert.
        assertError(.unsupportedLayout(line: 1)) { try editor.apply(hosts: ["a.example"], to: ".:53 { errors\n}\n") }
        XCTAssertEqual(try editor.apply(hosts: [], to: ".:53 { errors\n}\n"), ".:53 { errors\n}\n")
    }

    // MARK: Errors leave the text alone

    func testNoRootServerBlock() throws {
        let editor = try editor()
        let corefiles = ["example.org:53 {\n    whoami\n}\n", "", "# only a comment\n", "(snippet) {\n    errors\n}\n"]
        for corefile in corefiles {
            assertError(.noRootServerBlock) { try editor.apply(hosts: ["a.example"], to: corefile) }
            // Nothing to write and nothing to remove (in `custom` mode, say, where the `.` block may live in an
            // imported file): left as it is, not an error that would stop every pass.
            XCTAssertEqual(try editor.apply(hosts: [], to: corefile), corefile)
        }
        XCTAssertEqual(
            try editor.apply(hosts: [], to: "import /etc/coredns/custom/*.server\n"),
            "import /etc/coredns/custom/*.server\n"
        )
        assertError(.noRootServerBlock) { try editor.apply(hosts: ["a.example"], to: ".example.org:53 {\n}\n") }
        assertError(.noRootServerBlock) { try editor.apply(hosts: ["a.example"], to: "..:53 {\n}\n") }
    }

    func testParseErrors() throws {
        let editor = try editor()
        assertError(.unbalancedBraces(line: 1)) { try editor.apply(hosts: ["a.example"], to: ".:53 {\n    errors\n") }
        assertError(.unbalancedBraces(line: 1)) {
            try editor.apply(hosts: ["a.example"], to: ".:53 {\n    health {\n    errors\n}\n")
        }
        assertError(.unbalancedBraces(line: 4)) {
            try editor.apply(hosts: ["a.example"], to: ".:53 {\n    errors\n}\n}\n")
        }
        assertError(.unterminatedQuote(line: 3)) {
            try editor.apply(hosts: ["a.example"], to: ".:53 {\n    errors\n    hosts \"oops {\n}\n")
        }
        assertError(.missingOpeningBrace(line: 1)) { try editor.apply(hosts: ["a.example"], to: ".:53\nwhoami\n") }
        XCTAssertThrowsError(try editor.managedHosts(in: ".:53 {\n"))  // the same parser guards every entry point
    }

    func testMalformedMarkers() throws {
        let editor = try editor()
        let begin = CorefileEditor.beginMarker
        let end = CorefileEditor.endMarker
        let cases: [(String, CorefileError)] = [
            (".:53 {\n    \(begin)\n    errors\n}\n", .malformedMarkers(line: 2, .beginWithoutEnd)),
            (".:53 {\n    errors\n    \(end)\n}\n", .malformedMarkers(line: 3, .endWithoutBegin)),
            (".:53 {\n    \(begin)\n    \(begin)\n    \(end)\n}\n", .malformedMarkers(line: 2, .beginWithoutEnd)),
            (
                ".:53 {\n    \(begin)\n    \(end)\n    \(begin)\n    \(end)\n}\n",
                .malformedMarkers(line: 4, .duplicateBlock)
            ),
            (".:53 {\n    \(end)\n    \(begin)\n}\n", .malformedMarkers(line: 2, .endWithoutBegin)),
            ("\(begin)\n\(end)\n.:53 {\n    errors\n}\n", .malformedMarkers(line: 1, .outsideRootServerBlock)),
            (
                "example.org {\n    \(begin)\n    \(end)\n}\n.:53 {\n}\n",
                .malformedMarkers(line: 2, .outsideRootServerBlock)
            ),
            (
                ".:53 {\n    health {\n        \(begin)\n        \(end)\n    }\n}\n",
                .malformedMarkers(line: 3, .insidePluginBlock)
            ),
            (".:53 {\n    errors \(begin)\n    \(end)\n}\n", .malformedMarkers(line: 2, .notOnOwnLine)),
            (".:53 {\n    \(begin)\n}\n.:5353 {\n    \(end)\n}\n", .malformedMarkers(line: 5, .endWithoutBegin)),
            (".:53 {\n    #egress-operator: begin managed block\n}\n", .malformedMarkers(line: 2, .beginWithoutEnd)),
        ]
        for (corefile, expected) in cases {
            assertError(expected) { try editor.apply(hosts: ["a.example"], to: corefile) }
            assertError(expected) { try editor.apply(hosts: [], to: corefile) }
            assertError(expected) { try editor.managedHosts(in: corefile) }
        }
        // A marker inside a quoted string is not a comment, so not a marker.
        let quoted = ".:53 {\n    hosts \"\(begin)\"\n}\n"
        XCTAssertEqual(try editor.managedHosts(in: quoted), [])
    }

    func testHandEditedBlockIsReportedButReplaceable() throws {
        let editor = try editor()
        let edited = """
            .:53 {
                # egress-operator: begin managed block (do not edit)
                rewrite continue name exact a.example.egress.local. \(Self.proxy).
                # egress-operator: end managed block
                errors
            }

            """
        assertError(.unrecognizedManagedLine(line: 3)) { try editor.managedHosts(in: edited) }
        let fixed = try editor.apply(hosts: ["a.example"], to: edited)
        XCTAssertEqual(try editor.managedHosts(in: fixed), ["a.example"])
    }

    /// A server block for a zone holding the suffix (`local`, say, where `.local` is an Active Directory domain)
    /// would receive every `*.egress.local` query, so rules in `.` would never run: refused, with the line. Other
    /// zones, and removing rules, are fine.
    func testAnotherBlockServingTheSuffixIsRefused() throws {
        let editor = try editor()
        let kubeadm = try golden("kubeadm.input.txt")
        for (key, zone) in [
            ("local:53", "local"), ("dns://Egress.Local.:53", "egress.local"), ("x.egress.local", "x.egress.local"),
        ] {
            let corefile = kubeadm + "\(key) {\n    forward . 192.168.1.1\n}\n"
            let line = corefile.split(separator: "\n", omittingEmptySubsequences: false).count - 3
            assertError(.suffixServedElsewhere(line: line, zone: zone)) {
                try editor.apply(hosts: ["a.example"], to: corefile)
            }
            XCTAssertEqual(try editor.apply(hosts: [], to: corefile), corefile)
        }
        let cluster = kubeadm + "cluster.local:53 {\n    kubernetes cluster.local\n}\n"
        XCTAssertEqual(try editor.managedHosts(in: try editor.apply(hosts: ["a.example"], to: cluster)), ["a.example"])
        // CoreDNS matches zones among the blocks on one listener: such a block elsewhere takes nothing from `.:53`.
        for key in ["local:5353", "tls://local", "dns://egress.local:1053"] {
            let elsewhere = kubeadm + "\(key) {\n    forward . 192.168.1.1\n}\n"
            XCTAssertEqual(
                try editor.managedHosts(in: try editor.apply(hosts: ["a.example"], to: elsewhere)),
                ["a.example"],
                key
            )
        }
        // ... unless a `.` block listens there too.
        let both = kubeadm + ".:5353 {\n    forward . 8.8.8.8\n}\nlocal:5353 {\n    forward . 192.168.1.1\n}\n"
        let bothLine = both.split(separator: "\n", omittingEmptySubsequences: false).count - 3
        assertError(.suffixServedElsewhere(line: bothLine, zone: "local")) {
            try editor.apply(hosts: ["a.example"], to: both)
        }
    }

    /// The operator answers NXDOMAIN for every name under the suffix that is not allowed, ahead of the kubernetes
    /// and forward plugins: a suffix that could be a real zone, or holds the cluster's own names, is refused.
    func testASuffixThatCouldShadowRealNamesIsRefused() throws {
        for suffix in ["com", "egress.example.com", "in-addr.arpa", "internal", "local.", "home.arpa"] {
            XCTAssertThrowsError(try CorefileEditor(suffix: suffix, proxyServiceFQDN: Self.proxy), suffix) { error in
                let text = "\(error)"
                XCTAssertTrue(
                    text.contains("must be a name under a special-use domain")
                        || text.contains("invalid proxy Service name"),
                    text
                )
            }
        }
        XCTAssertThrowsError(try CorefileEditor(suffix: "default.svc.cluster.local", proxyServiceFQDN: Self.proxy)) {
            XCTAssertEqual(
                "\($0)",
                "unsafe egress DNS suffix \"default.svc.cluster.local\": it lies within the cluster domain "
                    + "cluster.local, whose names the kubernetes plugin answers"
            )
        }
        for suffix in ["egress.local", "egress.internal", "egress.test", "e.example", "egress.invalid", "e.home.arpa"] {
            XCTAssertNoThrow(try CorefileEditor(suffix: suffix, proxyServiceFQDN: Self.proxy), suffix)
        }
    }

    /// A block this editor wrote under other settings (another suffix or proxy Service, or the previous template
    /// form) routes nothing to this proxy: it reads as no hosts, not as a hand edit, and the next edit replaces it.
    /// Otherwise a change of the operator's flags would leave it unable to read its own block, and stuck.
    func testABlockWrittenUnderOtherSettingsIsStaleAndReplaced() throws {
        let editor = try editor()
        let kubeadm = try golden("kubeadm.input.txt")
        for old in [
            try CorefileEditor(suffix: "egress.internal", proxyServiceFQDN: Self.proxy),
            try CorefileEditor(proxyServiceFQDN: "egress-proxy.old-namespace.svc.cluster.local"),
            try CorefileEditor(proxyServiceFQDN: "egress-proxy.old-namespace.svc.cluster.local", mode: .suffix),
        ] {
            let written = try old.apply(hosts: ["a.example", "*.b.example"], to: kubeadm)
            XCTAssertEqual(try editor.managedHosts(in: written), [], written)
            let replaced = try editor.apply(hosts: ["a.example"], to: written)
            XCTAssertEqual(replaced, try editor.apply(hosts: ["a.example"], to: kubeadm))
        }
        // The template of the previous release (class IN only), under the current settings: its hosts still count,
        // and the next edit writes the template that also catches other classes.
        let previous = try editor.apply(hosts: ["a.example"], to: kubeadm).replacingOccurrences(
            of: "template ANY ANY egress.local {",
            with: "template IN ANY egress.local {"
        )
        XCTAssertEqual(try editor.managedHosts(in: previous), ["a.example"])
        XCTAssertTrue(try editor.apply(hosts: ["a.example"], to: previous).contains("template ANY ANY egress.local {"))
        // An override snippet that lost its last line break (re-applied through YAML's `|-`) still reads.
        let snippet = try editor.overrideSnippet(hosts: ["a.example"])
        XCTAssertEqual(try editor.managedHosts(inOverrideSnippet: String(snippet.dropLast())), ["a.example"])
    }

    // MARK: Names and regexes

    func testRuleForms() throws {
        let snippet = try editor().overrideSnippet(hosts: ["api.github.com", "*.example.com"])
        let lines = snippet.split(separator: "\n").map(String.init)
        XCTAssertEqual(
            lines,
            [
                "# Written by egress-operator; edits are overwritten.",
                "rewrite stop name exact api.github.com.egress.local. egress-proxy.egress-system.svc.cluster.local.",
                #"rewrite stop name regex ^(?:[a-z0-9_-]+\.)+example\.com\.egress\.local\.?$"#
                    + " egress-proxy.egress-system.svc.cluster.local. answer auto",
                "template ANY ANY egress.local {",
                "    rcode NXDOMAIN",
                "}",
            ]
        )
    }

    func testWildcardRegexAnchoring() throws {
        let pattern = try wildcardPattern(editor: editor(), host: "*.example.com")
        let regex = try NSRegularExpression(pattern: pattern)
        func matches(_ name: String) -> Bool {
            regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        for name in [
            "a.example.com.egress.local.", "a.b.example.com.egress.local.", "x-1.y_2.example.com.egress.local.",
            "a.example.com.egress.local",
        ] {
            XCTAssertTrue(matches(name), name)
        }
        for name in [
            "example.com.egress.local.", "aexample.com.egress.local.", "a.example.com.egress.local.evil.com.",
            "a.example.com.egress.localx.", "a.example.comxegress.local.", "a.example.com.",
            ".example.com.egress.local.",
            #"a\.example.com.egress.local."#, "a.example.com.egress.local..", "a.example.org.egress.local.",
        ] {
            XCTAssertFalse(matches(name), name)
        }
    }

    func testSuffixRegexAnchoring() throws {
        let pattern = try wildcardPattern(editor: editor(.suffix), host: "anything.example")
        let regex = try NSRegularExpression(pattern: pattern)
        func matches(_ name: String) -> Bool {
            regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        XCTAssertTrue(matches("api.github.com.egress.local."))
        XCTAssertTrue(matches("x.egress.local."))
        XCTAssertFalse(matches("egress.local."))
        XCTAssertFalse(matches("x.egress.local.evil.com."))
        XCTAssertFalse(matches("xegress.local."))
    }

    func testNamesAreValidatedAndEscaped() throws {
        let editor = try editor()
        for bad in [
            "", " ", "api github.com", "a{b}.com", "a}.com", "#x.com", "x.com#", "\"x.com\"", "*.", "*.*.com",
            "a.*.com", "**.com", "a..com", ".a.com", "a\\.com", "a.com\n.:53 {", "ünï.com", "\u{212A}.com",
            String(repeating: "a", count: 64) + ".com",
            Array(repeating: "abcdefghi", count: 25).joined(separator: "."),
        ] {
            assertError(.invalidHost(bad)) { try editor.apply(hosts: ["ok.example", bad], to: ".:53 {\n}\n") }
            assertError(.invalidHost(bad)) { try editor.overrideSnippet(hosts: [bad]) }
        }
        XCTAssertEqual(
            try editor.managedHosts(in: editor.apply(hosts: ["Trailing.Dot.", "*.Wild.Card."], to: ".:53 {\n}\n")),
            ["trailing.dot", "*.wild.card"]
        )

        assertError(.invalidSuffix("egress local")) {
            try CorefileEditor(suffix: "egress local", proxyServiceFQDN: "p.q")
        }
        assertError(.invalidSuffix("*.egress")) { try CorefileEditor(suffix: "*.egress", proxyServiceFQDN: "p.q") }
        assertError(.invalidProxyServiceFQDN("proxy")) { try CorefileEditor(proxyServiceFQDN: "proxy") }
        assertError(.invalidProxyServiceFQDN("a b.c")) { try CorefileEditor(proxyServiceFQDN: "a b.c") }
        // The suffix's NXDOMAIN template would answer for a proxy inside it, or for the whole cluster domain.
        assertError(.invalidProxyServiceFQDN("p.egress.local")) {
            try CorefileEditor(proxyServiceFQDN: "p.egress.local")
        }
        assertError(.invalidProxyServiceFQDN(Self.proxy)) {
            try CorefileEditor(suffix: "cluster.local", proxyServiceFQDN: Self.proxy)
        }
        let normalized = try CorefileEditor(
            suffix: "Egress.Local.",
            proxyServiceFQDN: "Egress-Proxy.Egress-System.svc."
        )
        XCTAssertEqual(normalized.suffix, "egress.local")
        XCTAssertEqual(normalized.proxyServiceFQDN, "egress-proxy.egress-system.svc")

        // A suffix with regex metacharacters is impossible, but underscores and hyphens pass through literally.
        let custom = try CorefileEditor(suffix: "my-egress_zone.internal", proxyServiceFQDN: Self.proxy)
        let pattern = try wildcardPattern(editor: custom, host: "*.a-b.c")
        XCTAssertEqual(pattern, #"^(?:[a-z0-9_-]+\.)+a-b\.c\.my-egress_zone\.internal\.?$"#)
    }

    // MARK: Property: round trip over generated hosts

    func testGeneratedHostsRoundTrip() throws {
        let editor = try editor()
        let input = try golden("k3s.input.txt")
        var random = CorefileTestRandom(seed: 0x5EED_C0DE)
        for round in 0..<5 {
            var hosts: [String] = []
            for _ in 0..<(200 + round * 40) {
                let labels = (0..<random.next(in: 1...4)).map { _ in random.label() }
                let name =
                    labels.joined(separator: ".") + "." + ["com", "io", "dev", "example"][random.next(in: 0...3)]
                hosts.append(random.next(in: 0...3) == 0 ? "*." + name : name)
            }
            hosts += hosts.prefix(20)  // duplicates
            let expected = Array(Set(hosts)).sorted { lhs, rhs in
                let lhsWild = lhs.hasPrefix("*.")
                let rhsWild = rhs.hasPrefix("*.")
                return lhsWild == rhsWild ? lhs < rhs : !lhsWild
            }
            let output = try editor.apply(hosts: hosts, to: input)
            XCTAssertEqual(try editor.managedHosts(in: output), expected, "round \(round)")
            XCTAssertEqual(try editor.apply(hosts: hosts.shuffled(using: &random), to: input), output, "round \(round)")
            XCTAssertEqual(try editor.apply(hosts: expected, to: output), output, "round \(round)")
            XCTAssertEqual(try editor.apply(hosts: [], to: output), input, "round \(round)")
            let rewrites = output.components(separatedBy: "\n").filter { $0.hasPrefix("    rewrite stop name ") }
            XCTAssertEqual(rewrites.count, expected.count, "one rule per distinct host")
        }
    }

    // MARK: Helpers

    private func wildcardPattern(editor: CorefileEditor, host: String) throws -> String {
        let snippet = try editor.overrideSnippet(hosts: [host])
        let line = try XCTUnwrap(snippet.split(separator: "\n").first { $0.hasPrefix("rewrite stop name regex ") })
        return String(line.split(separator: " ")[4])
    }
}

/// SplitMix64, so generated hosts are the same on every run and platform.
private struct CorefileTestRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    mutating func next(in range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func label() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-_")
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        let length = next(in: 1...20)
        return String(
            (0..<length).map { index in
                index == 0 ? letters[next(in: 0...(letters.count - 1))] : alphabet[next(in: 0...(alphabet.count - 1))]
            }
        )
    }
}

extension CorefileTests {
    func testOverrideSnippetReadsBack() throws {
        let editor = try CorefileEditor(proxyServiceFQDN: "egress-proxy.egress-system.svc.cluster.local")
        let hosts = ["api.github.com", "*.example.com"]
        let snippet = try editor.overrideSnippet(hosts: hosts)
        XCTAssertEqual(try editor.managedHosts(inOverrideSnippet: snippet), ["api.github.com", "*.example.com"])
        XCTAssertEqual(try editor.managedHosts(inOverrideSnippet: ""), [])
    }
}
