import KamiCore
import XCTest

final class ActivationTemplateTests: XCTestCase {
    private let values = ActivationTemplate.Values(
        codeID: 42, cardNumber: "6200 01&x=1", order: "订单/7?#", user: "li lei+vip", sku: "vip.month")

    func testEveryPlaceholderIsFilledInAndPercentEncoded() {
        let link = ActivationTemplate.expand(
            "https://brand.example/r?id={code_id}&card={card_number}&o={order}&u={user}&s={sku}", values)
        XCTAssertEqual(link, "https://brand.example/r?id=42&card=6200%2001%26x%3D1&o=%E8%AE%A2%E5%8D%95%2F7%3F%23"
            + "&u=li%20lei%2Bvip&s=vip.month")
        // A value cannot add a query parameter or a path segment of its own.
        XCTAssertFalse(link.contains("&x=1"))
        XCTAssertEqual(ActivationTemplate.expand("{card_number}", .init(codeID: 1, cardNumber: nil, order: "o", user: "u", sku: "s")), "")
        XCTAssertEqual(ActivationTemplate.percentEncoded("AZaz09-._~"), "AZaz09-._~")
        XCTAssertEqual(ActivationTemplate.percentEncoded("%"), "%25")
    }

    func testUnknownPlaceholdersAndStrayBracesStayAsWritten() {
        XCTAssertEqual(ActivationTemplate.expand("a{nope}b{order}", values), "a{nope}b%E8%AE%A2%E5%8D%95%2F7%3F%23")
        XCTAssertEqual(ActivationTemplate.expand("a{order", values), "a{order")
        XCTAssertEqual(ActivationTemplate.expand("plain", values), "plain")
    }

    func testValidationRefusesTheSecretUnknownNamesBracesAndSpaces() {
        func refusal(_ template: String) -> String? {
            do throws(KamiError) { try ActivationTemplate.validate(template); return nil } catch { return error.message }
        }
        XCTAssertNil(refusal("https://b.example/r?c={code_id}&o={order}&u={user}&s={sku}&n={card_number}"))
        XCTAssertNil(refusal("https://b.example/static"))
        XCTAssertEqual(refusal("https://b.example/?s={secret}")?.contains("may not carry the secret ({secret})"), true)
        XCTAssertEqual(refusal("https://b.example/?s={code}")?.contains("may not carry the secret"), true)
        XCTAssertEqual(refusal("https://b.example/?x={orderid}")?.contains("unknown placeholder {orderid}"), true)
        XCTAssertEqual(refusal("https://b.example/?x={order")?.contains("'{' without its '}'"), true)
        XCTAssertEqual(refusal("https://b.example/?x={{order}}")?.contains("'{' without its '}'"), true)
        XCTAssertEqual(refusal("https://b.example/?x=order}")?.contains("'}' without its '{'"), true)
        XCTAssertEqual(refusal("https://b.example/a b")?.contains("space or control character (U+20)"), true)
        XCTAssertEqual(refusal("https://b.example/{user}/{user}")?.contains("uses {user} twice"), true)
        XCTAssertEqual(refusal("https://b.example/a\nb")?.contains("(U+A)"), true)
    }
}
