import KamiCore
import KamiProtocol
import XCTest

/// Decode throughput of one `issue` request in each encoding. Not a pass/fail check:
/// it runs only with `KAMI_PROTO_BENCH=1` (use a release build) and prints requests/s.
final class ThroughputTests: XCTestCase {
    private static let rounds = 2_000_000

    private func measure(_ name: String, _ bytes: [UInt8],
                         _ decode: (UnsafeRawBufferPointer) -> DecodeResult<Request>)
    {
        // A buffer of many back-to-back requests, as a pipelining client fills it.
        let perBuffer = 64
        let buffer = Array([[UInt8]](repeating: bytes, count: perBuffer).joined())
        var decoded = 0
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            buffer.withUnsafeBytes { raw in
                for _ in 0..<(Self.rounds / perBuffer) {
                    var offset = 0
                    while offset < raw.count {
                        let window = UnsafeRawBufferPointer(rebasing: raw[offset...])
                        guard case .item(let request, let consumed) = decode(window) else {
                            return XCTFail("\(name) did not decode")
                        }
                        decoded += request.qty ?? 0
                        offset += consumed
                    }
                }
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perSecond = Double(decoded) / seconds
        print("\(name): \(bytes.count) bytes, \(decoded) requests in \(seconds) s = \(Int(perSecond)) requests/s, "
            + "\(Int(seconds * 1e9 / Double(decoded))) ns each")
    }

    func testDecodeThroughput() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["KAMI_PROTO_BENCH"] == "1", "set KAMI_PROTO_BENCH=1")
        var request = Request(id: .number(123_456), op: .issue)
        request.order = "ORD-20240601-000123"
        request.user = "user-98765"
        request.sku = "vip-month"
        request.qty = 1
        request.paymentRef = "pay-4200000000202406011234567890"
        request.ip = "203.0.113.7"
        var binary: [UInt8] = []
        try BinaryCodec.encode(request, into: &binary)
        var json: [UInt8] = []
        try JSONCodec.encode(request, into: &json)
        measure("binary issue", binary, BinaryCodec.decodeRequest)
        measure("json issue", json, JSONCodec.decodeRequest)
    }
}
