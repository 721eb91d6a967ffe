import Crypto
import Foundation
import Manifests
import X509
import XCTest

@testable import Operator

/// A certificate for `name` that signs itself, and its key, as PEM: made by the test.
func selfSignedPEM(_ name: String) throws -> (certificate: String, key: String) {
    let key = P256.Signing.PrivateKey()
    let privateKey = Certificate.PrivateKey(key)
    let subject = try DistinguishedName { CommonName(name) }
    let certificate = try Certificate(
        version: .v3,
        serialNumber: .init(),
        publicKey: privateKey.publicKey,
        notValidBefore: Date().addingTimeInterval(-3600),
        notValidAfter: Date().addingTimeInterval(86_400),
        issuer: subject,
        subject: subject,
        extensions: try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
        },
        issuerPrivateKey: privateKey
    )
    return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
}

/// The operator's loading of TLS material, with real PEM and the proxy's TLS library.
final class TLSMaterialCheckTests: XCTestCase {
    func testValuesThatAreNotCertificatesAreUnusable() throws {
        let (ca, key) = try selfSignedPEM("partner CA")
        let (other, _) = try selfSignedPEM("other CA")
        var material = TLSMaterial(
            configMaps: [
                "bundle": [
                    "ca.crt": ca + "\n" + other,
                    "garbage": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                ],
                "notes": ["text": "not a certificate at all"],
            ],
            secrets: ["keys": ["ca.crt": ca, "key.pem": key]]
        )
        var check = TLSMaterialCheck()
        check.check(&material)
        XCTAssertEqual(
            Set(material.unusableCertificates.keys),
            ["ConfigMap/bundle/garbage", "ConfigMap/notes/text", "Secret/keys/key.pem"]
        )
        for problem in material.unusableCertificates.values {
            XCTAssertTrue(problem.hasPrefix("is not a PEM certificate bundle"), problem)
        }
        XCTAssertEqual(material.unusableClientCertificates, [:])
    }

    func testAClientCertificateNeedsItsOwnKey() throws {
        let (certificate, key) = try selfSignedPEM("client")
        let (_, otherKey) = try selfSignedPEM("someone else")
        var material = TLSMaterial(
            secrets: [
                "good": ["tls.crt": certificate, "tls.key": key],
                "mismatched": ["tls.crt": certificate, "tls.key": otherKey],
                "not-a-key": ["tls.crt": certificate, "tls.key": certificate],
                "not-a-certificate": ["tls.crt": key, "tls.key": key],
            ]
        )
        var check = TLSMaterialCheck()
        check.check(&material)
        let problems = material.unusableClientCertificates
        XCTAssertEqual(Set(problems.keys), ["mismatched", "not-a-key", "not-a-certificate"], "\(problems)")
        XCTAssertTrue(problems["mismatched"]?.hasPrefix("tls.key is not the private key of the certificate") == true)
        XCTAssertTrue(problems["not-a-key"]?.hasPrefix("tls.key is not an unencrypted PEM private key") == true)
        XCTAssertTrue(problems["not-a-certificate"]?.hasPrefix("tls.crt is not a PEM certificate chain") == true)
    }

    /// Answers are kept by content: a value that changes is loaded again, one that does not keeps its answer.
    func testAChangedValueIsCheckedAgain() throws {
        let (ca, _) = try selfSignedPEM("partner CA")
        var check = TLSMaterialCheck()
        var broken = TLSMaterial(configMaps: ["bundle": ["ca.crt": "junk"]])
        check.check(&broken)
        XCTAssertNotNil(broken.unusableCertificates["ConfigMap/bundle/ca.crt"])
        var fixed = TLSMaterial(configMaps: ["bundle": ["ca.crt": ca]])
        check.check(&fixed)
        XCTAssertNil(fixed.unusableCertificates["ConfigMap/bundle/ca.crt"])
        var brokenAgain = TLSMaterial(configMaps: ["bundle": ["ca.crt": "junk"]])
        check.check(&brokenAgain)
        XCTAssertNotNil(brokenAgain.unusableCertificates["ConfigMap/bundle/ca.crt"])
    }
}
