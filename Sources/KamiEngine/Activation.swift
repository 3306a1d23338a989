import Dispatch
public import KamiCore
import KamiCrypto
import KamiStore

/// What `activate` did: each code asked for, when it was activated and by whom, and whether
/// this call did it (false: it already was; activating twice is not an error).
public struct ActivationReply: Sendable, Hashable {
    public struct Item: Sendable, Hashable {
        public var codeID: CodeID
        public var cardNumber: String?
        public var usedAtMs: Int64
        public var via: String
        public var now: Bool
        /// The code's own expiry, Unix ms.
        public var expiresAtMs: Int64? = nil
    }

    public var orderID: String
    public var skuKey: String
    public var items: [Item]
    /// What the buyer's page shows beside each line (as `entitlements` does).
    public var skuName = ""
    public var usageGuide: String?
    public var orderedAtMs: Int64 = 0
}

extension EngineCore {
    /// Activates codes of a committed order: `codeIDs` (every code of the order when empty)
    /// move from issued to used, each with its time and `via` (the storefront client or
    /// `token`). `user`, when given, must own the order: another user's order is NOT_FOUND,
    /// as an unknown one is. A used code stays used (never back to issued); a voided one is
    /// refused. Repeating it answers the same, with `now` false.
    func activate(
        order orderID: String, user: String?, codeIDs: [CodeID], via: String,
        completion: @escaping @Sendable (Result<ActivationReply, KamiError>) -> Void
    ) {
        do throws(KamiError) { try EngineCore.validate(orderID: orderID) } catch { return completion(.failure(error)) }
        let retry: @Sendable () -> Void = { [self] in
            activate(order: orderID, user: user, codeIDs: codeIDs, via: via, completion: completion)
        }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            if let user, user != order.user {
                orders.end(orderID)
                return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
            }
            guard order.state == .committed else {
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not committed")))
            }
            let owned = Set(order.codes.map(\.codeID))
            if let stranger = codeIDs.first(where: { !owned.contains($0) }) {
                orders.end(orderID)
                return completion(.failure(KamiError(.notFound, "order \(orderID) has no code \(stranger)")))
            }
            let asked = codeIDs.isEmpty ? order.codes : order.codes.filter { codeIDs.contains($0.codeID) }
            let rows: [CodeID: CodeWithState]
            do throws(KamiError) { rows = try store.codesWithState(asked.map(\.codeID)) } catch {
                orders.end(orderID)
                return completion(.failure(error))
            }
            if let voided = asked.first(where: { rows[$0.codeID]?.state == .voided }) {
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "code \(voided.codeID) of order \(orderID) is voided")))
            }
            let fresh = asked.filter { rows[$0.codeID]?.state == .issued }
            let answer: @Sendable () -> Result<ActivationReply, KamiError> = { [self] in
                do throws(KamiError) {
                    let times = try store.activations(asked.map(\.codeID))
                    let now = Set(fresh.map(\.codeID))
                    let sku = self.sku(id: order.sku)
                    var reply = ActivationReply(orderID: orderID, skuKey: skuKey(order.sku), items: asked.map { code in
                        ActivationReply.Item(codeID: code.codeID, cardNumber: rows[code.codeID]?.code.cardNumber,
                                             usedAtMs: times[code.codeID]?.atMs ?? 0, via: times[code.codeID]?.via ?? "",
                                             now: now.contains(code.codeID), expiresAtMs: rows[code.codeID]?.code.expiresAtMs)
                    })
                    reply.skuName = sku?.name ?? reply.skuKey
                    reply.usageGuide = sku?.usageGuide
                    reply.orderedAtMs = order.createdAtMs
                    return .success(reply)
                } catch {
                    return .failure(error)
                }
            }
            guard !fresh.isEmpty else {
                orders.end(orderID)
                return completion(answer())
            }
            let changes = fresh.map { CodeChange(codeID: $0.codeID, from: .issued, to: .used, orderSeq: order.seq) }
            let event = AuditEvent("activate", subject: "order:\(orderID)",
                                   detail: "seq=\(order.seq) codes=\(EngineCore.codeIDList(fresh)) via=\(via)")
            store.writer.submit(.activate(order, codes: changes, via: via, audit: event)) { [self] result in
                orders.end(orderID)
                switch result {
                case .failure(let error): completion(.failure(error))
                case .success:
                    count(fresh, from: .issued, to: .used)
                    // The answer reads the activation times: not on the writer's thread.
                    DispatchQueue.global().async { completion(answer()) }
                }
            }
        }
    }

    /// Activates the one code an activation token names (from a brand's page): refused as
    /// NOT_FOUND when forged or naming no code, EXPIRED when its time is past.
    func activate(token: String, via: String, completion: @escaping @Sendable (Result<ActivationReply, KamiError>) -> Void) {
        let invalid = KamiError(.notFound, "no code for this activation token")
        guard let parsed = ActivationTokens.parse(token) else { return completion(.failure(invalid)) }
        let found: (state: CodeState, orderSeq: OrderSeq?)?
        let orderID: String?
        do throws(KamiError) {
            found = try store.codeStates([parsed.codeID])[parsed.codeID]
            orderID = try found?.orderSeq.map { seq throws(KamiError) in try store.orderID(seq: seq) } ?? nil
        } catch {
            return completion(.failure(error))
        }
        guard let seq = found?.orderSeq, let orderID,
              sealer.activationTokens.verify(tag: parsed.tag, codeID: parsed.codeID, orderSeq: seq,
                                             expiresAtSeconds: parsed.expiresAtSeconds)
        else { return completion(.failure(invalid)) }
        guard parsed.expiresAtSeconds * 1_000 >= clock.nowMs() else {
            return completion(.failure(KamiError(.expired, "the activation token has expired; open the link again from the order")))
        }
        activate(order: orderID, user: nil, codeIDs: [parsed.codeID], via: via, completion: completion)
    }

    /// A fresh activation token for a code of order `orderSeq`.
    func activationToken(codeID: CodeID, orderSeq: OrderSeq) -> String {
        sealer.activationTokens.mint(codeID: codeID, orderSeq: orderSeq,
                                     expiresAtSeconds: (clock.nowMs() + Limits.activationTokenTTLMs) / 1_000)
    }
}

extension Storefront {
    /// Activates codes of `order` (all when `codeIDs` is empty); `user` must own it when given.
    public func activate(
        order: String, user: String?, codeIDs: [CodeID] = [], client: String? = nil,
        completion: @escaping @Sendable (Result<ActivationReply, KamiError>) -> Void
    ) {
        core.activate(order: order, user: user, codeIDs: codeIDs, via: client.map { "client:\($0)" } ?? "storefront",
                      completion: completion)
    }

    /// Activates the code an activation token names (the brand's page hands it back).
    public func activate(token: String, client: String? = nil,
                         completion: @escaping @Sendable (Result<ActivationReply, KamiError>) -> Void) {
        core.activate(token: token, via: "token" + (client.map { " client:\($0)" } ?? ""), completion: completion)
    }

    /// `activate(order:...)`, waiting for the answer.
    public func activateSync(order: String, user: String?, codeIDs: [CodeID] = []) -> Result<ActivationReply, KamiError> {
        let waiter = Waiter<ActivationReply>()
        activate(order: order, user: user, codeIDs: codeIDs) { waiter.set($0) }
        return waiter.wait()
    }

    /// `activate(token:)`, waiting for the answer.
    public func activateSync(token: String) -> Result<ActivationReply, KamiError> {
        let waiter = Waiter<ActivationReply>()
        activate(token: token) { waiter.set($0) }
        return waiter.wait()
    }
}
