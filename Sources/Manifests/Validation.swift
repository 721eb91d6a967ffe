/// Checks an `EgressHost` spec the same way the CRD schema does at admission, and a little more (the schema of an
/// old API server may be laxer, and the operator must never program a spec it cannot honour). Problems come back
/// as `field: message` strings for the `Accepted=False, reason=InvalidSpec` condition.
public enum SpecValidation {
    /// `suffix` is the operator's (`--suffix`): the host must fit under it and must not be under it.
    public static func problems(_ spec: EgressHost.Spec, suffix: String = HostName.reservedSuffix) -> [String] {
        var problems = HostName.validate(spec.host).map { "spec.host: \($0)" }
        let hostLength = spec.host.utf8.count
        if hostLength <= HostName.maxLength, hostLength > HostName.maxLength(under: suffix) {
            problems.append(
                "spec.host: must be at most \(HostName.maxLength(under: suffix)) characters: the name applications "
                    + "call, HOST.\(suffix), must fit in DNS's \(HostName.maxLength)"
            )
        }
        if suffix != HostName.reservedSuffix, spec.host == suffix || spec.host.hasSuffix("." + suffix) {
            problems.append("spec.host: must not be under \(suffix): that is the proxy's own suffix")
        }
        if let port = spec.port, !(1...65535).contains(port) {
            problems.append("spec.port: must be between 1 and 65535")
        }
        if let serverName = spec.tls?.serverName, !isDNSName(serverName) {
            problems.append("spec.tls.serverName: must be a lowercase DNS name")
        }
        if let key = spec.tls?.caBundle?.key, !isDataKey(key) {
            problems.append("spec.tls.caBundle.key: may contain only letters, digits, \"-\", \"_\" and \".\"")
        }
        if let name = spec.tls?.caBundle?.name, !isObjectName(name) {
            problems.append("spec.tls.caBundle.name: must be a lowercase Kubernetes object name")
        }
        if let name = spec.tls?.clientCertificate?.name, !isObjectName(name) {
            problems.append("spec.tls.clientCertificate.name: must be a lowercase Kubernetes object name")
        }
        for (index, address) in (spec.addresses ?? []).enumerated() {
            guard IPAddress.isValid(address) else {
                problems.append("spec.addresses[\(index)]: \"\(address)\" is not an IPv4 or IPv6 address")
                continue
            }
            // The proxy would refuse every request to it (502 private-address): say so now, not as a Ready host.
            if spec.allowPrivateAddresses != true, let kind = AddressClass.classify(ipAddress: address),
                !kind.isPublic
            {
                problems.append(
                    "spec.addresses[\(index)]: \(address) is a \(kind.rawValue) address, which the proxy refuses "
                        + "unless spec.allowPrivateAddresses is true"
                )
            }
        }
        if (spec.addresses?.count ?? 0) > maxAddresses {
            problems.append("spec.addresses: at most \(maxAddresses) addresses")
        }
        if spec.host.hasPrefix("*."), !(spec.addresses ?? []).isEmpty {
            problems.append("spec.addresses: cannot be combined with a wildcard host")
        }
        // Field by field, not through an array of them: this runs for every EgressHost on every pass.
        func checkDuration(_ field: String, _ value: String?) {
            guard let value else { return }
            switch GoDuration.milliseconds(value) {
            case nil:
                problems.append("spec.timeouts.\(field): \"\(value)\" is not a duration such as 500ms, 5s or 1m30s")
            case 0:
                // A zero timeout would fail every connection, or close every one at once.
                problems.append("spec.timeouts.\(field): must be at least 1ms")
            default:
                break
            }
        }
        checkDuration("connect", spec.timeouts?.connect)
        checkDuration("responseHeaders", spec.timeouts?.responseHeaders)
        checkDuration("idle", spec.timeouts?.idle)
        return problems
    }

    public static let maxAddresses = 16

    static func isDNSName(_ name: String) -> Bool {
        guard (1...HostName.maxLength).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
            return label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        }
    }

    static func isObjectName(_ name: String) -> Bool {
        isDNSName(name)
    }

    static func isDataKey(_ key: String) -> Bool {
        (1...253).contains(key.utf8.count)
            && key.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || "-_.".unicodeScalars.contains($0)
            }
    }
}

/// Go-style durations, as Kubernetes users write them.
public enum GoDuration {
    /// `500ms` → 500, `1m30s` → 90000; nil if malformed. Fractions are allowed (`1.5s`).
    public static func milliseconds(_ text: String) -> Int? {
        // On UTF-8 bytes: `Character` iteration (grapheme breaking) made this a visible share of a pass that plans
        // thousands of hosts, each with three durations.
        let bytes = text.utf8
        var index = bytes.startIndex
        var total = 0.0
        guard index != bytes.endIndex else { return nil }
        while index != bytes.endIndex {
            let numberStart = index
            while index != bytes.endIndex,
                bytes[index] == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index])
            {
                index = bytes.index(after: index)
            }
            let number = text[numberStart..<index]
            guard !number.isEmpty, number.first != ".", number.last != ".", let value = Double(number) else {
                return nil
            }
            let unit: Double
            switch bytes[index...].first {
            case UInt8(ascii: "m"):
                index = bytes.index(after: index)
                if bytes[index...].first == UInt8(ascii: "s") {
                    unit = 1
                    index = bytes.index(after: index)
                } else {
                    unit = 60_000
                }
            case UInt8(ascii: "s"):
                unit = 1_000
                index = bytes.index(after: index)
            case UInt8(ascii: "h"):
                unit = 3_600_000
                index = bytes.index(after: index)
            default:
                return nil
            }
            total += value * unit
        }
        guard total < Double(Int32.max) else { return nil }
        return Int(total.rounded())
    }

    /// The schema's equivalent of `milliseconds(_:) != nil`.
    public static let pattern = #"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"#
}

/// IP literal syntax, without the platform's socket library (Manifests does no I/O).
public enum IPAddress {
    public static func isValid(_ text: String) -> Bool { isIPv4(text) || isIPv6(text) }

    public static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                    part == "0" || part.first != "0", let value = Int(part)
                else { return false }
                return value <= 255
            }
    }

    public static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":"), !text.contains(":::") else { return false }
        var body = Substring(text)
        var groupsAvailable = 8
        // An embedded IPv4 tail (::ffff:1.2.3.4) takes two groups.
        if let lastColon = body.lastIndex(of: ":"), body[lastColon...].contains(".") {
            guard isIPv4(String(body[body.index(after: lastColon)...])) else { return false }
            body = body[...lastColon]
            if body.hasSuffix(":"), !body.hasSuffix("::") { body = body.dropLast() }
            groupsAvailable = 6
        }
        let halves = body.components(separatedBy: "::")
        guard halves.count <= 2 else { return false }
        let groups = halves.flatMap { half in
            half.isEmpty ? [] : half.split(separator: ":", omittingEmptySubsequences: false)
        }
        guard groups.allSatisfy({ (1...4).contains($0.count) && $0.allSatisfy { $0.isASCII && $0.isHexDigit } })
        else { return false }
        return halves.count == 2 ? groups.count < groupsAvailable : groups.count == groupsAvailable
    }

    /// Loose syntax for the schema; the operator's check above is exact.
    public static let pattern =
        #"^(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)$"#
}
