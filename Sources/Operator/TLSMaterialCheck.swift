import Manifests
import NIOSSL

/// Loads the PEM that EgressHosts may reference the way the proxy will (swift-nio-ssl, the same calls), so that a
/// CA bundle or client certificate the proxy could not use is reported on the EgressHost (`InvalidTLSMaterial`)
/// rather than found later as 502s. Answers are kept by content, so a pass loads only what changed.
struct TLSMaterialCheck {
    struct ClientPair: Hashable {
        var certificate: String
        var key: String
    }

    /// Content → why it cannot be used (nil: it can), for the content of the last check.
    private var certificates: [String: String?] = [:]
    private var clientCertificates: [ClientPair: String?] = [:]

    /// Fills `material`'s lists of unusable values: every value as a certificate bundle, and every Secret with
    /// `tls.crt` and `tls.key` as a client certificate and its key.
    mutating func check(_ material: inout TLSMaterial) {
        var certificates: [String: String?] = [:]
        var clientCertificates: [ClientPair: String?] = [:]
        func certificateProblem(_ pem: String) -> String? {
            let problem = certificates[pem] ?? self.certificates[pem] ?? Self.certificateProblem(pem)
            certificates[pem] = .some(problem)
            return problem
        }
        for (kind, objects) in [("ConfigMap", material.configMaps), ("Secret", material.secrets)] {
            for (name, data) in objects {
                for (key, value) in data {
                    material.unusableCertificates["\(kind)/\(name)/\(key)"] = certificateProblem(value)
                }
            }
        }
        for (name, data) in material.secrets {
            guard let certificate = data["tls.crt"], let key = data["tls.key"] else { continue }
            let pair = ClientPair(certificate: certificate, key: key)
            let problem =
                clientCertificates[pair] ?? self.clientCertificates[pair] ?? Self.clientCertificateProblem(pair)
            clientCertificates[pair] = .some(problem)
            material.unusableClientCertificates[name] = problem
        }
        self.certificates = certificates
        self.clientCertificates = clientCertificates
    }

    /// What the proxy does with a CA bundle: read every certificate in it; at least one must be there.
    static func certificateProblem(_ pem: String) -> String? {
        do {
            return try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)).isEmpty ? "holds no PEM certificate" : nil
        } catch {
            return "is not a PEM certificate bundle (\(error))"
        }
    }

    /// What the proxy does with a client certificate: read the chain and the key, and build a TLS context from
    /// them, which fails when the key is not the certificate's.
    static func clientCertificateProblem(_ pair: ClientPair) -> String? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        // Only the pair is checked: no trust store need be read.
        configuration.trustRoots = .certificates([])
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(pair.certificate.utf8))
            guard !chain.isEmpty else { return "tls.crt holds no PEM certificate" }
            configuration.certificateChain = chain.map { .certificate($0) }
        } catch {
            return "tls.crt is not a PEM certificate chain (\(error))"
        }
        do {
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(pair.key.utf8), format: .pem))
        } catch {
            return "tls.key is not an unencrypted PEM private key (\(error))"
        }
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            return "tls.key is not the private key of the certificate in tls.crt (\(error))"
        }
        return nil
    }
}
