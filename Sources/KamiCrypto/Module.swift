// KamiCrypto: hashing, MACs, randomness and sealing of card-key secrets over OpenSSL.
//
// This is the only Kami module that calls libcrypto, so that the domain modules
// never touch a C pointer. Everything here is either stateless or immutable after
// init, which is what lets every type be `Sendable` without a lock on the hot path.
