private import COpenSSL
private import Glibc
private import Synchronization

// Per-thread OpenSSL cipher contexts and nonce randomness, so that sealing and
// opening share no mutable state between threads and skip the expensive parts of
// a call. Measured on the 2-core development machine (OpenSSL 3.0, 30-byte secret):
//   - a new EVP_CIPHER_CTX with a full key set-up:     ~900 ns per seal
//   - a reused context whose key is already set:       ~400 ns
//   - RAND_bytes(12) for one nonce:                  ~1,100 ns (the DRBG's fixed cost)
//   - RAND_bytes for 32 nonces at once:                 ~45 ns per nonce
// Each thread that seals or opens gets one `ThreadCipherState` the first time and
// keeps it until the thread exits (the pthread key's destructor frees it). Nothing
// in it is ever touched by another thread, which is why it needs no lock.

/// Number of nonces drawn from the CSPRNG per refill: amortizes the DRBG's fixed
/// cost over 32 seals while keeping the buffer (nonces are public) small.
private let noncesPerRefill = 32

/// Bumped in the child after `fork()`. A forked child inherits the forking thread's
/// state, including unused buffered nonces that the parent will also use; a state
/// that sees a new generation throws its buffer away. (OpenSSL's DRBG does the same
/// for itself.) Written only by the atfork handler, read with one relaxed load per seal.
private let forkGeneration = Atomic<UInt64>(0)

/// Registers the atfork handler once per process, before the first state is created.
private let forkHandlerRegistered: Bool = {
    let result = pthread_atfork(nil, nil) { forkGeneration.add(1, ordering: .relaxed) }
    precondition(result == 0, "pthread_atfork failed: \(result)")
    return true
}()

/// The pthread key under which each thread's `ThreadCipherState` is stored (retained).
private let threadStateKey: pthread_key_t = {
    var key = pthread_key_t()
    let result = pthread_key_create(&key) { raw in
        if let raw { Unmanaged<ThreadCipherState>.fromOpaque(raw).release() }
    }
    precondition(result == 0, "pthread_key_create failed: \(result)")
    return key
}()

/// One cipher context and the key it is currently set up with.
///
/// Setting a new key expands the AES key schedule and derives GCM's hash key; when
/// the next call uses the same key (the common case: one current master key), the
/// context is re-initialized with just the new nonce, which OpenSSL documents as the
/// way to reuse a context. Every call re-initializes, so no nonce, AAD or tag state
/// carries over from one call to the next.
final class KeyedCipherContext {
    private let context: OpaquePointer
    private var key: [UInt8] = []

    init() {
        guard let context = EVP_CIPHER_CTX_new() else {
            preconditionFailure("EVP_CIPHER_CTX_new failed: out of memory")
        }
        self.context = context
    }

    /// Frees the context; `EVP_CIPHER_CTX_free` also wipes the key schedule in it.
    deinit { EVP_CIPHER_CTX_free(context) }

    /// Starts an encryption (`encrypt`) or decryption with `key` and `nonce`, and returns the context.
    func begin(encrypt: Bool, key: [UInt8], nonce: UnsafePointer<UInt8>) -> OpaquePointer {
        let sameKey = key.count == self.key.count && constantTimeEquals(key, self.key)
        let ok = key.withUnsafeBufferPointer { keyBuffer in
            let cipher = sameKey ? nil : Algorithms.shared.aes256GCM
            let keyPointer = sameKey ? nil : keyBuffer.baseAddress
            return encrypt
                ? EVP_EncryptInit_ex2(context, cipher, keyPointer, nonce, nil)
                : EVP_DecryptInit_ex2(context, cipher, keyPointer, nonce, nil)
        }
        precondition(ok == 1, "EVP_\(encrypt ? "Encrypt" : "Decrypt")Init_ex2(AES-256-GCM) failed: \(ok)")
        if !sameKey { self.key = key }
        return context
    }
}

/// What one thread keeps between seals and opens. Separate contexts for the two
/// directions, so that alternating seal and open never forces a new key set-up.
final class ThreadCipherState {
    let sealing = KeyedCipherContext()
    let opening = KeyedCipherContext()
    private var nonces = [UInt8](repeating: 0, count: AESGCM.nonceBytes * noncesPerRefill)
    private var nonceOffset: Int
    private var generation: UInt64
    fileprivate var busy = false

    init() {
        precondition(forkHandlerRegistered)
        nonceOffset = nonces.count
        generation = forkGeneration.load(ordering: .relaxed)
    }

    /// A fresh random 12-byte nonce, never handed out before by this process.
    func nextNonce() -> [UInt8] {
        let currentGeneration = forkGeneration.load(ordering: .relaxed)
        if nonceOffset == nonces.count || generation != currentGeneration {
            nonces.withUnsafeMutableBufferPointer { SecureRandom.fill($0) }
            nonceOffset = 0
            generation = currentGeneration
        }
        let nonce = Array(nonces[nonceOffset..<nonceOffset + AESGCM.nonceBytes])
        nonceOffset += AESGCM.nonceBytes
        return nonce
    }
}

/// Runs `body` with the calling thread's cipher state.
///
/// If the state is already in use on this thread (a re-entrant call, which Kami does
/// not make today), `body` gets a temporary state instead of sharing the busy one.
func withThreadCipherState<R>(_ body: (ThreadCipherState) -> R) -> R {
    let state: ThreadCipherState
    if let raw = pthread_getspecific(threadStateKey) {
        state = Unmanaged<ThreadCipherState>.fromOpaque(raw).takeUnretainedValue()
    } else {
        state = ThreadCipherState()
        let retained = Unmanaged.passRetained(state)
        // On failure (ENOMEM) the state simply is not cached; drop the extra retain.
        if pthread_setspecific(threadStateKey, retained.toOpaque()) != 0 { retained.release() }
    }
    if state.busy { return body(ThreadCipherState()) }
    state.busy = true
    defer { state.busy = false }
    return body(state)
}
