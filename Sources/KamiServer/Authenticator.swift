import KamiCore
import KamiCrypto
import Synchronization

/// Checks `hello` tokens in constant time and rate-limits failures per source address.
public final class Authenticator: Sendable {
    private struct Failures {
        var count: Int
        var windowStartMs: Int64
    }

    private let tokens: Locked<[String: [UInt8]]>
    private let failures = Locked<[String: Failures]>([:])

    /// Makes an authenticator for the given client → token map.
    public init(tokens: [String: String]) {
        self.tokens = Locked(tokens.mapValues { Array($0.utf8) })
    }

    /// The tokens accepted now, client → token.
    public var currentTokens: [String: String] {
        tokens.withLock { $0.mapValues { String(decoding: $0, as: UTF8.self) } }
    }

    /// Replaces the tokens (reload).
    public func setTokens(_ newTokens: [String: String]) {
        tokens.withLock { $0 = newTokens.mapValues { Array($0.utf8) } }
    }

    /// Checks a hello from `peer`. Unknown client and wrong token get the same answer, so a
    /// prober learns nothing about which client names exist.
    func check(client: String, token: String, peer: String, nowMs: Int64) -> KamiError? {
        let limited = failures.withLock { map -> Bool in
            guard let entry = map[peer] else { return false }
            if nowMs - entry.windowStartMs > ServerLimits.helloFailureWindowMs {
                map[peer] = nil
                return false
            }
            return entry.count >= ServerLimits.helloFailuresMax
        }
        if limited {
            return KamiError(.unauthorized, "too many failed hellos from this address; wait a minute")
        }
        let expected = tokens.withLock { $0[client] }
        // Compare against something of the same length even for an unknown client, so the time
        // taken does not tell whether the client exists.
        let given = Array(token.utf8)
        let matches = constantTimeEquals(given, expected ?? given.map { $0 ^ 0xFF })
        if matches && expected != nil { return nil }
        failures.withLock { map in
            if map.count >= ServerLimits.helloFailureAddressesMax, map[peer] == nil {
                // Forget the oldest window rather than grow without bound.
                if let oldest = map.min(by: { $0.value.windowStartMs < $1.value.windowStartMs })?.key { map[oldest] = nil }
            }
            var entry = map[peer] ?? Failures(count: 0, windowStartMs: nowMs)
            entry.count += 1
            map[peer] = entry
        }
        return KamiError(.unauthorized, "unknown client or wrong token")
    }
}
