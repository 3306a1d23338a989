private import COpenSSL

/// AES-256-GCM with a 12-byte nonce and a 16-byte tag appended to the ciphertext.
/// Internal: callers go through `Sealer`, which picks keys and binds associated data.
enum AESGCM {
    static let nonceBytes = 12
    static let tagBytes = 16

    /// Encrypts `plaintext` under a fresh random nonce; returns the nonce and ciphertext || tag.
    static func seal(key: [UInt8], aad: [UInt8], plaintext: [UInt8]) -> (nonce: [UInt8], sealed: [UInt8]) {
        withThreadCipherState { state in
            let nonce = state.nextNonce()
            return (nonce, seal(state.sealing, key: key, nonce: nonce, aad: aad, plaintext: plaintext))
        }
    }

    /// Encrypts `plaintext` under the given nonce. Only for known-answer tests: a nonce
    /// must never be used twice with one key, which the random nonces above guarantee.
    static func seal(key: [UInt8], nonce: [UInt8], aad: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        withThreadCipherState { seal($0.sealing, key: key, nonce: nonce, aad: aad, plaintext: plaintext) }
    }

    private static func seal(_ keyed: KeyedCipherContext, key: [UInt8], nonce: [UInt8], aad: [UInt8],
                             plaintext: [UInt8]) -> [UInt8] {
        precondition(key.count == MasterKey.keyBytes && nonce.count == nonceBytes,
                     "AES-256-GCM needs a 32-byte key and 12-byte nonce, got \(key.count) and \(nonce.count)")
        let context = keyed.begin(encrypt: true, key: key, nonce: nonce)
        var outBytes: Int32 = 0
        if !aad.isEmpty {
            let ok = EVP_EncryptUpdate(context, nil, &outBytes, aad, Int32(aad.count))
            precondition(ok == 1, "EVP_EncryptUpdate(AAD, \(aad.count) bytes) failed: \(ok)")
        }
        let count = plaintext.count
        return [UInt8](unsafeUninitializedCapacity: count + tagBytes) { out, initialized in
            let base = out.baseAddress!
            var produced: Int32 = 0
            if count > 0 {
                let ok = EVP_EncryptUpdate(context, base, &produced, plaintext, Int32(count))
                precondition(ok == 1 && produced == count, "EVP_EncryptUpdate(\(count) bytes) failed: \(ok)")
            }
            var finalBytes: Int32 = 0
            var ok = EVP_EncryptFinal_ex(context, base + count, &finalBytes)
            precondition(ok == 1 && finalBytes == 0, "EVP_EncryptFinal_ex failed: \(ok), \(finalBytes) bytes")
            ok = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagBytes), base + count)
            precondition(ok == 1, "EVP_CTRL_GCM_GET_TAG failed: \(ok)")
            initialized = count + tagBytes
        }
    }

    /// Decrypts ciphertext || tag; nil when the tag does not verify.
    /// The caller has checked that the nonce is 12 bytes and the input at least 16.
    static func open(key: [UInt8], nonce: [UInt8], aad: [UInt8], ciphertextAndTag: [UInt8]) -> [UInt8]? {
        precondition(key.count == MasterKey.keyBytes && nonce.count == nonceBytes && ciphertextAndTag.count >= tagBytes,
                     "AESGCM.open: key \(key.count), nonce \(nonce.count), input \(ciphertextAndTag.count) bytes")
        return withThreadCipherState { state in
            let context = state.opening.begin(encrypt: false, key: key, nonce: nonce)
            var outBytes: Int32 = 0
            if !aad.isEmpty {
                let ok = EVP_DecryptUpdate(context, nil, &outBytes, aad, Int32(aad.count))
                precondition(ok == 1, "EVP_DecryptUpdate(AAD, \(aad.count) bytes) failed: \(ok)")
            }
            let count = ciphertextAndTag.count - tagBytes
            var authentic = false
            let plaintext = ciphertextAndTag.withUnsafeBufferPointer { input in
                [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                    let inBase = input.baseAddress!
                    var produced: Int32 = 0
                    if count > 0 {
                        let ok = EVP_DecryptUpdate(context, out.baseAddress, &produced, inBase, Int32(count))
                        precondition(ok == 1 && produced == count, "EVP_DecryptUpdate(\(count) bytes) failed: \(ok)")
                    }
                    // The ctrl API takes a mutable pointer even to set the tag; OpenSSL only reads it.
                    let tag = UnsafeMutableRawPointer(mutating: inBase + count)
                    let ok = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagBytes), tag)
                    precondition(ok == 1, "EVP_CTRL_GCM_SET_TAG failed: \(ok)")
                    var finalBytes: Int32 = 0
                    var scratch: UInt8 = 0
                    authentic = EVP_DecryptFinal_ex(context, &scratch, &finalBytes) == 1
                    initialized = count
                }
            }
            // Release nothing decrypted from a forged input: the bytes are garbage at best,
            // and a chosen-ciphertext attacker's oracle at worst.
            return authentic ? plaintext : nil
        }
    }
}
