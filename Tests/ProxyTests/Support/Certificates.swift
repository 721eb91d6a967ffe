import Crypto
import Foundation
import NIOSSL
import X509

/// Certificates made by the tests: a CA, leaves for the upstream names, a wrong-name leaf, an expired leaf, and a
/// separate client-certificate CA with one client certificate. Written as PEM files to a temp directory.
final class TestPKI: Sendable {
    struct Issued: Sendable {
        let certificatePEM: String
        let keyPEM: String
        let certificatePath: String
        let keyPath: String

        var nioCertificate: NIOSSLCertificate {
            try! NIOSSLCertificate(bytes: Array(self.certificatePEM.utf8), format: .pem)
        }
        var nioKey: NIOSSLPrivateKey { try! NIOSSLPrivateKey(bytes: Array(self.keyPEM.utf8), format: .pem) }
    }

    let directory: String
    let ca: Issued
    let otherCA: Issued
    let clientCA: Issued
    /// Valid for upstream.test names (see `names`).
    let leaf: Issued
    /// Signed by the CA but only for "someone-else.test".
    let wrongName: Issued
    /// Signed by the CA, right names, expired yesterday.
    let expired: Issued
    /// Signed by `otherCA` (unknown to the proxy).
    let unknownCA: Issued
    let client: Issued

    static let names = ["good.upstream.test", "*.wild.upstream.test", "localhost"]

    static let shared = TestPKI()

    private init() {
        let dir = NSTemporaryDirectory() + "egress-proxy-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.directory = dir
        let now = Date()
        func make(
            _ name: String,
            cn: String,
            sans: [String],
            isCA: Bool,
            issuer: (name: DistinguishedName, key: Certificate.PrivateKey)?,
            notAfter: Date = Date().addingTimeInterval(86_400),
            notBefore: Date = Date().addingTimeInterval(-3600),
            clientAuth: Bool = false
        ) -> (Issued, DistinguishedName, Certificate.PrivateKey) {
            let key = P256.Signing.PrivateKey()
            let privateKey = Certificate.PrivateKey(key)
            let subject = try! DistinguishedName { CommonName(cn) }
            let extensionsFinal: Certificate.Extensions
            if isCA {
                extensionsFinal = try! Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(keyCertSign: true))
                }
            } else {
                extensionsFinal = try! Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([clientAuth ? .clientAuth : .serverAuth])
                    SubjectAlternativeNames(sans.map { .dnsName($0) })
                }
            }
            let certificate = try! Certificate(
                version: .v3,
                serialNumber: .init(),
                publicKey: privateKey.publicKey,
                notValidBefore: notBefore,
                notValidAfter: notAfter,
                issuer: issuer?.name ?? subject,
                subject: subject,
                extensions: extensionsFinal,
                issuerPrivateKey: issuer?.key ?? privateKey
            )
            let certPEM = try! certificate.serializeAsPEM().pemString
            let keyPEM = key.pemRepresentation
            let certPath = "\(dir)/\(name).crt"
            let keyPath = "\(dir)/\(name).key"
            try! certPEM.write(toFile: certPath, atomically: true, encoding: .utf8)
            try! keyPEM.write(toFile: keyPath, atomically: true, encoding: .utf8)
            return (
                Issued(certificatePEM: certPEM, keyPEM: keyPEM, certificatePath: certPath, keyPath: keyPath), subject,
                privateKey
            )
        }
        let (ca, caName, caKey) = make("ca", cn: "egress test CA", sans: [], isCA: true, issuer: nil)
        let (otherCA, otherName, otherKey) = make("other-ca", cn: "unknown CA", sans: [], isCA: true, issuer: nil)
        let (clientCA, clientCAName, clientCAKey) = make(
            "client-ca",
            cn: "client CA",
            sans: [],
            isCA: true,
            issuer: nil
        )
        self.ca = ca
        self.otherCA = otherCA
        self.clientCA = clientCA
        self.leaf = make("leaf", cn: "good.upstream.test", sans: Self.names, isCA: false, issuer: (caName, caKey)).0
        self.wrongName =
            make(
                "wrong-name",
                cn: "someone-else.test",
                sans: ["someone-else.test"],
                isCA: false,
                issuer: (caName, caKey)
            ).0
        self.expired =
            make(
                "expired",
                cn: "good.upstream.test",
                sans: Self.names,
                isCA: false,
                issuer: (caName, caKey),
                notAfter: now.addingTimeInterval(-86_400),
                notBefore: now.addingTimeInterval(-10 * 86_400)
            ).0
        self.unknownCA =
            make(
                "unknown-ca-leaf",
                cn: "good.upstream.test",
                sans: Self.names,
                isCA: false,
                issuer: (otherName, otherKey)
            ).0
        self.client =
            make(
                "client",
                cn: "egress-proxy",
                sans: ["egress-proxy.test"],
                isCA: false,
                issuer: (clientCAName, clientCAKey),
                clientAuth: true
            ).0
    }
}
