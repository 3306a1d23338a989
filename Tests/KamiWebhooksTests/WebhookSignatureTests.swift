import KamiWebhooks
import XCTest

final class WebhookSignatureTests: XCTestCase {
    let secret = Array("whsec_test_0123456789abcdef".utf8)

    func testTheSignatureIsHMACSHA256OverTimestampDotBody() {
        // Computed independently: python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test_0123456789abcdef',
        // b'1733390000.{\"id\":1}', hashlib.sha256).hexdigest())"
        XCTAssertEqual(WebhookSignature.sign(secret: secret, timestamp: 1_733_390_000, body: Array(#"{"id":1}"#.utf8)),
                       "v1=ac2ca165f25a760320d4257c2242ef4fa79c047676046f46ce73646b8adb28b4")
    }

    func testVerificationRefusesATamperedBodyAWrongSecretAndAStaleTimestamp() {
        let body = Array(#"{"id":7,"type":"order.delivered"}"#.utf8)
        let signature = WebhookSignature.sign(secret: secret, timestamp: 1_000_000, body: body)
        XCTAssertTrue(WebhookSignature.verify(secret: secret, timestamp: 1_000_000, body: body, signature: signature,
                                              nowSeconds: 1_000_100))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, timestamp: 1_000_000, body: body + [0x20], signature: signature,
                                               nowSeconds: 1_000_000), "one byte more")
        XCTAssertFalse(WebhookSignature.verify(secret: Array("another-secret-0123".utf8), timestamp: 1_000_000, body: body,
                                               signature: signature, nowSeconds: 1_000_000))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, timestamp: 1_000_001, body: body, signature: signature,
                                               nowSeconds: 1_000_001), "the timestamp is signed")
        XCTAssertFalse(WebhookSignature.verify(secret: secret, timestamp: 1_000_000, body: body, signature: signature,
                                               nowSeconds: 1_000_000 + WebhookSignature.toleranceSeconds + 1), "a replay")
    }

    func testBackoffDoublesWithJitterUpToItsCap() {
        var settings = WebhookSettings()
        settings.backoffMs = 1_000
        settings.backoffMaxMs = 60_000
        XCTAssertEqual(settings.backoff(afterAttempts: 1, unit: 0), 500)
        XCTAssertEqual(settings.backoff(afterAttempts: 1, unit: 0.999_999), 999)
        XCTAssertEqual(settings.backoff(afterAttempts: 2, unit: 0), 1_000)
        XCTAssertEqual(settings.backoff(afterAttempts: 4, unit: 0.5), 6_000, "8 s: half fixed, half a random share")
        XCTAssertEqual(settings.backoff(afterAttempts: 30, unit: 0), 30_000, "capped")
        XCTAssertEqual(settings.backoff(afterAttempts: 10_000, unit: 1), 59_999, "no overflow")
        // A day of retries at the defaults is about 40 attempts (an hour apart at the end), not thousands.
        let defaults = WebhookSettings()
        var elapsed: Int64 = 0
        var attempts = 0
        while elapsed < defaults.retryForMs {
            attempts += 1
            elapsed += defaults.backoff(afterAttempts: attempts, unit: 0.5)
        }
        XCTAssertTrue((30...50).contains(attempts), "\(attempts)")
    }
}
