import ArgumentParser
import Foundation
import Manifests

@main
struct EgressOperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "egress-operator",
        abstract: "Reconciles EgressHosts into CoreDNS rules, the egress proxy's allow-list and its workload.",
        version: "0.1.0",
        subcommands: [RunCommand.self, ManifestsCommand.self, CorefileCommand.self]
    )
}

/// Writes (or checks) the generated `config/` tree.
struct ManifestsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifests",
        abstract: "Render the CRD, RBAC, operator workload, samples and kustomizations into a directory."
    )

    @Option(help: "Directory to write, e.g. config/.")
    var output: String = "config"

    @Flag(help: "Do not write: exit non-zero if the directory differs from what the code generates.")
    var check = false

    @Option(
        help: "Also write (or check) the chart's generated files (CRD, RBAC rules) here, e.g. \(ChartBundle.directory)."
    )
    var chart: String?

    func run() throws {
        let command = "egress-operator manifests --output \(output)" + (chart.map { " --chart \($0)" } ?? "")
        try sync(ConfigBundle.files(), into: output, command: command)
        if let chart { try sync(ChartBundle.files(), into: chart, command: command) }
    }

    func sync(_ files: [(path: String, text: String)], into output: String, command: String) throws {
        let root = URL(fileURLWithPath: output, isDirectory: true)
        var drifted: [String] = []
        for file in files {
            let url = root.appendingPathComponent(file.path)
            let current = try? String(contentsOf: url, encoding: .utf8)
            guard current != file.text else { continue }
            drifted.append(file.path)
            if !check {
                try FileManager.default.createDirectory(
                    at: url.deletingLastPathComponent(),
                    withIntermediateDirectories: true
                )
                try file.text.write(to: url, atomically: true, encoding: .utf8)
            }
        }
        if check, !drifted.isEmpty {
            throw ValidationError(
                "\(output) is out of date (\(drifted.joined(separator: ", "))): run `\(command)`"
            )
        }
        print(check ? "\(output) is up to date" : "wrote \(drifted.count) file(s) under \(output)")
    }
}

/// The pure Corefile edit, for people and scripts: reads a Corefile on standard input, prints the edited one.
struct CorefileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corefile",
        abstract: "Print a Corefile (from stdin) with the managed egress block set to the given hosts."
    )

    @Option(name: .customLong("host"), help: "An allowed host (repeatable).")
    var hosts: [String] = []

    @Option(help: "The proxy Service's DNS name.")
    var proxyService = ProxySettings().serviceFQDN(namespace: OperatorSettings().namespace)

    @Option(help: "The suffix applications append.")
    var suffix = HostName.reservedSuffix

    @Flag(help: "Print the coredns-custom `*.override` snippet instead of editing a Corefile.")
    var overrideSnippet = false

    func run() throws {
        do {
            let editor = try CorefileEditor(suffix: suffix, proxyServiceFQDN: proxyService)
            if overrideSnippet {
                print(try editor.overrideSnippet(hosts: hosts), terminator: "")
                return
            }
            // Decoding would replace bytes that are not UTF-8: refused instead, so no byte is changed unasked.
            guard let input = String(data: FileHandle.standardInput.readDataToEndOfFile(), encoding: .utf8) else {
                throw ValidationError("standard input is not UTF-8 text (a Corefile in a ConfigMap always is)")
            }
            print(try editor.apply(hosts: hosts, to: input), terminator: "")
        } catch {
            throw ValidationError("cannot edit this Corefile: \(error)")
        }
    }
}
