import KamiCore
public import Foundation
public import KamiHTTP
import CKamiLinux
import KamiWebhooks
import Synchronization

/// A webhook receiver on a loopback port, as a storefront would run one: it checks each
/// delivery's signature and timestamp, answers 500 to a share of them (`failEvery`: every
/// n-th request; 0 never; 1 always), and records the events it accepted.
public final class WebhookReceiver: Sendable {
    public struct Seen: Sendable {
        public var id: Int64
        public var type: String
        public var body: [String: String]
        public var raw: String
    }

    public let loop = IOLoop(name: "test-receiver")
    private let server: Locked<HTTPServer?> = Locked(nil)
    private let state = Locked<(requests: Int, accepted: [Seen], badSignatures: Int)>((0, [], 0))
    private let failEvery: Atomic<Int>
    public let secret: [UInt8]

    /// `nice`: the receiver stands for a storefront on another machine; on a benchmark's
    /// shared cores it runs at the lowest priority so that it takes only what is left over.
    public init(secret: String, failEvery: Int, nice: Bool = false) throws {
        self.secret = Array(secret.utf8)
        self.failEvery = Atomic(failEvery)
        if nice { loop.execute { _ = kami_thread_nice(19) } }
        let made = HTTPServer(host: "127.0.0.1", port: 0, loop: loop) { [self] request, responder in
            responder.respond(handle(request))
        }
        try made.start()
        server.withLock { $0 = made }
    }

    public var port: UInt16 { server.withLock { $0?.port ?? 0 } }

    public func setFailEvery(_ n: Int) { failEvery.store(n, ordering: .relaxed) }

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        let n = state.withLock { state -> Int in
            state.requests += 1
            return state.requests
        }
        guard let timestamp = request.headers[WebhookSignature.timestampHeader].flatMap({ Int64($0) }),
              let signature = request.headers[WebhookSignature.signatureHeader],
              WebhookSignature.verify(secret: secret, timestamp: timestamp, body: request.body, signature: signature,
                                      nowSeconds: Int64(Date().timeIntervalSince1970))
        else {
            state.withLock { $0.badSignatures += 1 }
            return HTTPResponse(status: 400, text: "bad signature\n")
        }
        let every = failEvery.load(ordering: .relaxed)
        if every > 0 && n % every == 0 { return HTTPResponse(status: 500, text: "try again\n") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any],
              let id = (object["id"] as? NSNumber)?.int64Value, let type = object["type"] as? String,
              let data = object["data"] as? [String: Any],
              request.headers[WebhookSignature.eventIDHeader] == String(id)
        else { return HTTPResponse(status: 422, text: "unreadable\n") }
        var body: [String: String] = [:]
        for (key, value) in data { body[key] = "\(value)" }
        state.withLock { $0.accepted.append(Seen(id: id, type: type, body: body, raw: request.bodyText)) }
        return HTTPResponse(status: 204, text: "")
    }

    public var accepted: [Seen] { state.withLock { $0.accepted } }
    public var requests: Int { state.withLock { $0.requests } }
    public var badSignatures: Int { state.withLock { $0.badSignatures } }

    /// Waits until `done(accepted)` holds or `seconds` pass; whether it held.
    public func wait(seconds: Double, until done: ([Seen]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if done(accepted) { return true }
            usleep(20_000)
        }
        return done(accepted)
    }

    public func stop() {
        server.withLock { $0?.stop() }
        loop.stop()
    }
}
