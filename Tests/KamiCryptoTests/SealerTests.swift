import Dispatch
import KamiCore
import KamiCrypto
import Synchronization
import XCTest

final class SealerTests: XCTestCase {
    private let secret = Secret("ABCD-EFGH-1234-5678")
    private let aad = Sealer.associatedData(codeID: 42, skuID: 7)

    func testSealOpenRoundTrip() throws {
        let sealer = Sealer(key: MasterKey.random())
        for plaintext in ["", "x", "ABCD-EFGH-1234-5678", String(repeating: "卡密", count: 200)] {
            let sealed = sealer.seal(Secret(plaintext), aad: aad)
            XCTAssertEqual(sealed.keyID, sealer.keyring.current.id)
            XCTAssertEqual(sealed.nonce.count, 12)
            XCTAssertEqual(sealed.ciphertextAndTag.count, plaintext.utf8.count + 16)
            XCTAssertEqual(try sealer.open(sealed, aad: aad).reveal(), plaintext)
        }
    }

    func testCiphertextDoesNotContainThePlaintext() {
        let sealed = Sealer(key: MasterKey.random()).seal(secret, aad: aad)
        let body = sealed.ciphertextAndTag
        XCTAssertNotEqual(Array(body.prefix(secret.bytes.count)), secret.bytes)
    }

    func testTwoSealsOfTheSameSecretDiffer() {
        let sealer = Sealer(key: MasterKey.random())
        let a = sealer.seal(secret, aad: aad)
        let b = sealer.seal(secret, aad: aad)
        XCTAssertNotEqual(a.nonce, b.nonce)
        XCTAssertNotEqual(a.ciphertextAndTag, b.ciphertextAndTag)
        XCTAssertNotEqual(a, b)
    }

    func testAnyFlippedByteFailsAuthentication() {
        let sealer = Sealer(key: MasterKey.random())
        let sealed = sealer.seal(secret, aad: aad)
        let body = sealed.ciphertextAndTag
        let failure = SealError.authenticationFailed(keyID: sealed.keyID)
        // Every byte of the ciphertext and of the tag, and every byte of the nonce.
        for index in body.indices {
            var tampered = body
            tampered[index] ^= 0x80
            let forged = SealedSecret(keyID: sealed.keyID, nonce: sealed.nonce, ciphertextAndTag: tampered)
            let part = index < body.count - 16 ? "ciphertext" : "tag"
            assertOpenFails(sealer, forged, aad: aad, with: failure, "\(part) \(index)")
        }
        for index in sealed.nonce.indices {
            var nonce = sealed.nonce
            nonce[index] ^= 0x01
            let forged = SealedSecret(keyID: sealed.keyID, nonce: nonce, ciphertextAndTag: body)
            assertOpenFails(sealer, forged, aad: aad, with: failure, "nonce \(index)")
        }
        XCTAssertEqual(try sealer.open(sealed, aad: aad), secret, "the untouched original still opens")
    }

    func testWrongAssociatedDataFails() {
        let sealer = Sealer(key: MasterKey.random())
        let sealed = sealer.seal(secret, aad: aad)
        let failure = SealError.authenticationFailed(keyID: sealed.keyID)
        assertOpenFails(sealer, sealed, aad: Sealer.associatedData(codeID: 43, skuID: 7), with: failure, "other code")
        assertOpenFails(sealer, sealed, aad: Sealer.associatedData(codeID: 42, skuID: 8), with: failure, "other SKU")
        assertOpenFails(sealer, sealed, aad: [], with: failure, "no AAD")
    }

    func testUnknownKeyIDFails() {
        let sealed = Sealer(key: MasterKey.random()).seal(secret, aad: aad)
        let other = Sealer(key: MasterKey.random())
        assertOpenFails(other, sealed, aad: aad, with: .unknownKeyID(sealed.keyID), "other keyring")
    }

    func testMalformedFieldsAreReportedNotCrashing() {
        let sealer = Sealer(key: MasterKey.random())
        let sealed = sealer.seal(secret, aad: aad)
        let shortNonce = SealedSecret(keyID: sealed.keyID, nonce: Array(sealed.nonce.prefix(11)),
                                      ciphertextAndTag: sealed.ciphertextAndTag)
        let bodyBytes = secret.bytes.count + 16
        assertOpenFails(sealer, shortNonce, aad: aad,
                        with: .malformed(nonceBytes: 11, ciphertextAndTagBytes: bodyBytes), "nonce")
        let shortBody = SealedSecret(keyID: sealed.keyID, nonce: sealed.nonce,
                                     ciphertextAndTag: Array(repeating: 0, count: 15))
        assertOpenFails(sealer, shortBody, aad: aad,
                        with: .malformed(nonceBytes: 12, ciphertextAndTagBytes: 15), "body")
    }

    func testRotationOpensSecretsSealedWithTheOldKey() throws {
        let old = MasterKey.random()
        let new = MasterKey.random()
        let before = Sealer(key: old).seal(secret, aad: aad)

        let rotated = Sealer(keyring: Keyring(current: new, previous: [old]))
        XCTAssertEqual(try rotated.open(before, aad: aad), secret)
        let after = rotated.seal(secret, aad: aad)
        XCTAssertEqual(after.keyID, new.id, "new secrets are sealed with the new current key")
        XCTAssertNotEqual(after.keyID, before.keyID)
        XCTAssertEqual(try rotated.open(after, aad: aad), secret)

        // Once the old key is dropped, its rows are reported, not misread.
        assertOpenFails(Sealer(key: new), before, aad: aad, with: .unknownKeyID(old.id), "old key dropped")
    }

    func testKeyringLookupAndDuplicates() {
        let a = MasterKey.random()
        let b = MasterKey.random()
        let ring = Keyring(current: a, previous: [b, a, b])
        XCTAssertEqual(ring.ids, [a.id, b.id], "a key listed twice is kept once")
        XCTAssertEqual(ring.key(id: b.id)?.id, b.id)
        var missing: UInt32 = 0
        while ring.ids.contains(missing) { missing += 1 }
        XCTAssertNil(ring.key(id: missing))
    }

    func testConcurrentSealingAndOpeningRoundTrips() {
        let sealer = Sealer(keyring: Keyring(current: MasterKey.random(), previous: [MasterKey.random()]))
        let failures = Atomic<Int>(0)
        let nonces = Locked(Set<[UInt8]>())
        let perThread = 2_000
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            var local = [[UInt8]]()
            for i in 0..<perThread {
                let plaintext = Secret("code-\(worker)-\(i)")
                let aad = Sealer.associatedData(codeID: Int64(worker * perThread + i), skuID: Int32(worker))
                let sealed = sealer.seal(plaintext, aad: aad)
                local.append(sealed.nonce)
                if (try? sealer.open(sealed, aad: aad)) != plaintext { failures.add(1, ordering: .relaxed) }
            }
            nonces.withLock { $0.formUnion(local) }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
        XCTAssertEqual(nonces.withLock { $0.count }, 8 * perThread, "a nonce was used twice")
    }

    func testAssociatedDataIsFixedWidthBigEndianWithPrefix() {
        let data = Sealer.associatedData(codeID: 0x0102_0304_0506_0708, skuID: 0x0A0B_0C0D)
        XCTAssertEqual(data, Array("kami.code.v1".utf8) + [1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D])
        XCTAssertEqual(Sealer.associatedData(codeID: -1, skuID: 1).count, data.count)
        XCTAssertNotEqual(Sealer.associatedData(codeID: 1, skuID: 2), Sealer.associatedData(codeID: 2, skuID: 1))
    }

    func testFingerprints() {
        let first = MasterKey.random()
        let sealer = Sealer(key: first)
        let fingerprint = sealer.fingerprint(secret)
        XCTAssertEqual(fingerprint.count, 16)
        XCTAssertEqual(sealer.fingerprint(Secret("ABCD-EFGH-1234-5678")), fingerprint,
                       "equal secrets, equal fingerprints")
        XCTAssertNotEqual(sealer.fingerprint(Secret("ABCD-EFGH-1234-5679")), fingerprint)

        // Keyed: a different key gives a different fingerprint, and it is not a plain hash.
        XCTAssertNotEqual(Sealer(key: MasterKey.random()).fingerprint(secret), fingerprint)
        XCTAssertNotEqual(Array(SHA256.hash(secret.bytes).prefix(16)), fingerprint)

        // Pinned fingerprint key: rotation of the sealing key leaves fingerprints unchanged.
        let rotated = Sealer(keyring: Keyring(current: MasterKey.random(), previous: [first]), fingerprintKey: first)
        XCTAssertEqual(rotated.fingerprint(secret), fingerprint)
        let unpinned = Sealer(keyring: Keyring(current: MasterKey.random(), previous: [first]))
        XCTAssertNotEqual(unpinned.fingerprint(secret), fingerprint, "by default the current key is used")
    }

    func testFingerprintKeyIsDerivedNotTheMasterKeyItself() {
        let key = MasterKey(bytes: Array(0..<32))
        let derived = HMACSHA256.mac(key: Array(0..<32), data: Array("kami fingerprint v1".utf8))
        let expected = Array(HMACSHA256.mac(key: derived, data: secret.bytes).prefix(16))
        XCTAssertEqual(Sealer(key: key).fingerprint(secret), expected)
        XCTAssertNotEqual(Array(HMACSHA256.mac(key: Array(0..<32), data: secret.bytes).prefix(16)), expected)
    }

    private func assertOpenFails(_ sealer: Sealer, _ sealed: SealedSecret, aad: [UInt8], with expected: SealError,
                                 _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let opened = try sealer.open(sealed, aad: aad)
            XCTFail("\(message): opened to \(opened.bytes.count) bytes instead of failing", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, message, file: file, line: line)
        }
    }
}
