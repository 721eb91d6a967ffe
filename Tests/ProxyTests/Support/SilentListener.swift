#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A loopback TCP port that never answers: a listening socket nobody accepts on.
///
/// With room in its backlog the kernel completes connections, which then hear nothing (a TLS handshake that
/// never finishes). With the backlog filled by one parked connection, further connection attempts get no SYN-ACK
/// at all (a connect that never finishes).
final class SilentListener: Sendable {
    let port: Int
    private let descriptors: [Int32]

    init(completesConnections: Bool) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(listener, pointer, length) == 0 && listen(listener, completesConnections ? 64 : 0) == 0
                    && getsockname(listener, pointer, &length) == 0
            }
        }
        guard listener >= 0, bound else { throw SilentListenerError() }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        var descriptors = [listener]
        if !completesConnections {
            // Backlog 0 still queues one connection: park it so that the queue is full.
            let parked = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(parked, $0, length) == 0 }
            }
            guard connected else { throw SilentListenerError() }
            descriptors.append(parked)
        }
        self.descriptors = descriptors
    }

    func close() {
        for descriptor in self.descriptors { closeDescriptor(descriptor) }
    }
}

struct SilentListenerError: Error {}

private func closeDescriptor(_ descriptor: Int32) { _ = close(descriptor) }
