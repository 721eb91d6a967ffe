#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What kind of address an upstream resolved to, for SSRF protection: only `.public` may be reached unless the
/// allow-list entry sets `allowPrivateAddresses`.
public enum AddressClass: String, Sendable, Hashable {
    case `public`
    case loopback
    case `private`
    case linkLocal = "link-local"
    case sharedAddressSpace = "cgnat"
    case multicast
    case unspecified
    /// Broadcast, "reserved for future use" (240/4) and other never-routable space.
    case reserved

    public var isPublic: Bool { self == .public }

    /// Classifies raw address bytes: 4 for IPv4, 16 for IPv6 (IPv4-mapped, IPv4-compatible, IPv4-translated,
    /// NAT64, 6to4 and Teredo addresses are classified by the IPv4 address they embed, so `::ffff:127.0.0.1` is
    /// loopback).
    public static func classify(bytes: some Collection<UInt8>) -> AddressClass {
        let b = Array(bytes)
        switch b.count {
        case 4: return self.classifyV4(b[0], b[1], b[2], b[3])
        case 16: return self.classifyV6(b)
        default: return .reserved
        }
    }

    /// Parses an IP literal (`10.0.0.1`, `::1`) and classifies it; nil when it is not an IP literal.
    public static func classify(ipAddress: String) -> AddressClass? {
        var v4 = in_addr()
        if inet_pton(AF_INET, ipAddress, &v4) == 1 { return withUnsafeBytes(of: v4) { self.classify(bytes: $0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, ipAddress, &v6) == 1 { return withUnsafeBytes(of: v6) { self.classify(bytes: $0) } }
        return nil
    }

    static func classifyV4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> AddressClass {
        switch a {
        case 0: return .unspecified  // 0.0.0.0/8 "this network"
        case 10: return .private
        case 127: return .loopback
        case 100 where b & 0xC0 == 64: return .sharedAddressSpace  // 100.64.0.0/10
        case 169 where b == 254: return .linkLocal
        case 172 where b & 0xF0 == 16: return .private  // 172.16.0.0/12
        case 192 where b == 168: return .private
        case 192 where b == 0 && c == 0: return .reserved  // 192.0.0.0/24 IETF protocol assignments
        case 198 where b & 0xFE == 18: return .reserved  // 198.18.0.0/15 benchmarking
        case 224...239: return .multicast
        case 240...255: return .reserved  // includes 255.255.255.255
        default: return .public
        }
    }

    static func classifyV6(_ b: [UInt8]) -> AddressClass {
        let firstTen = b[0..<10].allSatisfy { $0 == 0 }
        if firstTen && b[10] == 0 && b[11] == 0 {
            // :: , ::1 and the deprecated IPv4-compatible ::a.b.c.d
            if b[12..<15].allSatisfy({ $0 == 0 }) {
                if b[15] == 0 { return .unspecified }
                if b[15] == 1 { return .loopback }
            }
            return self.classifyV4(b[12], b[13], b[14], b[15])
        }
        if firstTen && b[10] == 0xFF && b[11] == 0xFF {  // ::ffff:a.b.c.d
            return self.classifyV4(b[12], b[13], b[14], b[15])
        }
        // ::ffff:0:a.b.c.d, IPv4-translated (SIIT, RFC 2765): a translator delivers it to the IPv4 address.
        if b[0..<8].allSatisfy({ $0 == 0 }), b[8] == 0xFF, b[9] == 0xFF, b[10] == 0, b[11] == 0 {
            return self.classifyV4(b[12], b[13], b[14], b[15])
        }
        // 2001::/32 Teredo: a relay delivers it to the client's IPv4 address, stored inverted in the last four bytes.
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0, b[3] == 0 {
            return self.classifyV4(~b[12], ~b[13], ~b[14], ~b[15])
        }
        // 64:ff9b::/96 NAT64
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4..<12].allSatisfy({ $0 == 0 }) {
            return self.classifyV4(b[12], b[13], b[14], b[15])
        }
        // 2002::/16 6to4: a relay delivers it to the IPv4 address in bytes 2...5.
        if b[0] == 0x20, b[1] == 0x02 { return self.classifyV4(b[2], b[3], b[4], b[5]) }
        // 64:ff9b:1::/48 local-use NAT64 (RFC 8215): a network's own translator, into its own IPv4 space.
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4] == 0x00, b[5] == 0x01 { return .private }
        // 100::/64 discard-only and 2001:db8::/32 documentation: never a real upstream.
        if b[0] == 0x01, b[1] == 0x00, b[2..<8].allSatisfy({ $0 == 0 }) { return .reserved }
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0D, b[3] == 0xB8 { return .reserved }
        if b[0] & 0xFE == 0xFC { return .private }  // fc00::/7
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return .linkLocal }  // fe80::/10
        if b[0] == 0xFE && b[1] & 0xC0 == 0xC0 { return .private }  // fec0::/10 deprecated site-local
        if b[0] == 0xFF { return .multicast }
        return .public
    }
}
