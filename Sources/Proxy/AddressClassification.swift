import Manifests
import NIOCore

extension AddressClass {
    public static func classify(_ address: SocketAddress) -> AddressClass {
        switch address {
        case .v4(let v4):
            // s_addr is in network byte order: its in-memory bytes are the address bytes.
            return withUnsafeBytes(of: v4.address.sin_addr.s_addr) { self.classify(bytes: $0) }
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { self.classify(bytes: $0) }
        case .unixDomainSocket:
            return .reserved
        }
    }
}
