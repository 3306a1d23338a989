// KamiCrypto: see module documentation.
