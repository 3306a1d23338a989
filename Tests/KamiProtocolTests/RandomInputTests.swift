import KamiCore
import KamiProtocol
import XCTest

final class RandomInputTests: XCTestCase {
    /// Inputs per run; `KAMI_PROTO_INPUTS` raises it for a longer soak.
    private static let inputCount = ProcessInfo.processInfo.environment["KAMI_PROTO_INPUTS"].flatMap { Int($0) }
        ?? 100_000

    /// Checks the contract every decoder result must keep on `count` input bytes, and
    /// returns a description of the violation, if any.
    private func violation<T>(_ result: DecodeResult<T>, count: Int) -> String? {
        switch result {
        case .needMore:
            return nil
        case .item(_, let consumed):
            return consumed > 0 && consumed <= count ? nil : "item consumed \(consumed) of \(count)"
        case .failure(_, _, let consumed, let fatal):
            if consumed <= 0 || consumed > count { return "failure consumed \(consumed) of \(count)" }
            if fatal && consumed != count { return "fatal failure consumed \(consumed) of \(count)" }
            return nil
        }
    }

    /// A binary request that decoded must encode back to exactly the bytes it came from
    /// (the layout has one spelling per request).
    private func reencodingProblem(_ result: DecodeResult<Request>, _ input: [UInt8]) -> String? {
        guard case .item(let request, let consumed) = result else { return nil }
        var out: [UInt8] = []
        do {
            try BinaryCodec.encode(request, into: &out)
        } catch {
            return "decoded request does not encode: \(error)"
        }
        if out == Array(input[..<consumed]) { return nil }
        // A frame may spell a request in a longer form than the encoder writes (optional
        // trailing blocks with their "absent" values, such as an entitlements frame with a
        // zero limit and no cursor). Then the encoder's form must decode to the same request
        // and encode to itself: one canonical form, nothing lost.
        guard out.count < consumed else { return "re-encoding differs from the input frame and is not shorter" }
        guard case .item(let again, let againConsumed) = out.decode(BinaryCodec.decodeRequest), againConsumed == out.count else {
            return "the canonical re-encoding does not decode"
        }
        var twice: [UInt8] = []
        try? BinaryCodec.encode(again, into: &twice)
        return again == request && twice == out ? nil : "re-encoding differs from the input frame and changes the request"
    }

    /// A JSON request that decoded must survive encode and decode unchanged.
    private func reencodingProblem(_ result: DecodeResult<Request>) -> String? {
        guard case .item(let request, _) = result else { return nil }
        var out: [UInt8] = []
        do {
            try JSONCodec.encode(request, into: &out)
        } catch {
            return "decoded request does not encode: \(error)"
        }
        guard case .item(let again, let consumed) = out.decode(JSONCodec.decodeRequest) else {
            return "re-encoded request does not decode"
        }
        return again == request && consumed == out.count ? nil : "request changed through encode and decode"
    }

    /// Valid messages to mutate, so that random inputs also reach past the first bytes.
    private func seeds() throws -> [[UInt8]] {
        var list: [[UInt8]] = []
        for request in Fixtures.storefrontRequests {
            var out: [UInt8] = []
            try BinaryCodec.encode(request, into: &out)
            list.append(out)
            out = []
            try JSONCodec.encode(request, into: &out)
            list.append(out)
        }
        for (reply, op) in Fixtures.binaryReplies {
            var out: [UInt8] = []
            BinaryCodec.encode(reply, op: op, into: &out)
            list.append(out)
        }
        for reply in Fixtures.jsonReplies {
            var out: [UInt8] = []
            JSONCodec.encode(reply, into: &out)
            list.append(out)
        }
        return list
    }

    /// One random input: pure noise, noise behind a plausible first byte, or a valid
    /// message with a few bytes changed, cut short or extended.
    private func input(_ rng: inout SplitMix64, seeds: [[UInt8]]) -> [UInt8] {
        let length = Int.random(in: 0...(Bool.random(using: &rng) ? 64 : 600), using: &rng)
        var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
        switch Int.random(in: 0..<4, using: &rng) {
        case 0:
            break
        case 1:
            if !bytes.isEmpty { bytes[0] = Bool.random(using: &rng) ? 0xB1 : UInt8(ascii: "{") }
            if bytes.count > 1 && bytes[0] == 0xB1 { bytes[1] = 1 }
            if bytes.count > 11 && bytes[0] == 0xB1 {
                // A length that fits what follows often enough to reach the payload decoder.
                let payload = UInt32(Int.random(in: 0...(bytes.count - 12), using: &rng))
                withUnsafeBytes(of: payload.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
            }
        default:
            var message = seeds.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 0...3, using: &rng) where !message.isEmpty {
                message[Int.random(in: 0..<message.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) {
                message = Array(message.prefix(Int.random(in: 0...message.count, using: &rng)))
            }
            bytes = message + (Bool.random(using: &rng) ? bytes.prefix(8) : [])
        }
        return bytes
    }

    func testRandomInputsAlwaysYieldAWellFormedResult() throws {
        let seed = ProcessInfo.processInfo.environment["KAMI_PROTO_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        print("RandomInputTests seed: \(seed) (replay with KAMI_PROTO_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let seeds = try seeds()
        var kinds = [0, 0, 0]  // needMore, item, failure over all decoders
        for n in 0..<Self.inputCount {
            let bytes = input(&rng, seeds: seeds)
            var problems: [String] = []
            func check<T>(_ name: String, _ result: DecodeResult<T>) {
                switch result {
                case .needMore: kinds[0] += 1
                case .item: kinds[1] += 1
                case .failure: kinds[2] += 1
                }
                if let problem = violation(result, count: bytes.count) { problems.append("\(name): \(problem)") }
            }
            bytes.withUnsafeBytes { raw in
                let binary = BinaryCodec.decodeRequest(raw)
                check("binary request", binary)
                if let problem = reencodingProblem(binary, bytes) { problems.append("binary request: \(problem)") }
                let json = JSONCodec.decodeRequest(raw)
                check("json request", json)
                if let problem = reencodingProblem(json) { problems.append("json request: \(problem)") }
                check("binary reply", BinaryCodec.decodeReply(raw))
                check("json reply", JSONCodec.decodeReply(raw))
            }
            if !problems.isEmpty {
                XCTFail("seed \(seed), input \(n) \(bytes): \(problems)")
                return
            }
        }
        // Every kind of result must have been reached, or the inputs are too narrow to
        // mean anything.
        XCTAssertTrue(kinds.allSatisfy { $0 > 1_000 }, "result kinds \(kinds), seed \(seed)")
        print("RandomInputTests results: needMore \(kinds[0]), item \(kinds[1]), failure \(kinds[2])")
    }
}
