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

    /// Why each input cannot be used (nil: it can), kept for the inputs of the last check only.
    struct Answers<Input: Hashable> {
        private var last: [Input: String?] = [:]
        private var current: [Input: String?] = [:]

        mutating func answer(_ input: Input, _ load: (Input) -> String?) -> String? {
            let problem = current[input] ?? last[input] ?? load(input)
            current[input] = .some(problem)
            return problem
        }

        mutating func endCheck() {
            last = current
            current = [:]
        }
    }

    private var certificates = Answers<String>()
    private var clientCertificates = Answers<ClientPair>()

    /// Fills `material`'s lists of unusable values: every value as a certificate bundle, and every Secret with
    /// `tls.crt` and `tls.key` as a client certificate and its key.
    mutating func check(_ material: inout TLSMaterial) {
        for (kind, objects) in [("ConfigMap", material.configMaps), ("Secret", material.secrets)] {
            for (name, data) in objects {
                for (key, value) in data {
                    material.unusableCertificates["\(kind)/\(name)/\(key)"] =
                        certificates.answer(value, Self.certificateProblem)
                }
            }
        }
        for (name, data) in material.secrets {
            guard let certificate = data["tls.crt"], let key = data["tls.key"] else { continue }
            material.unusableClientCertificates[name] = clientCertificates.answer(
                ClientPair(certificate: certificate, key: key),
                Self.clientCertificateProblem
            )
        }
        certificates.endCheck()
        clientCertificates.endCheck()
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
