import Dispatch
import KamiCore
import KamiEngine
import KamiProtocol
import KamiRisk
import KamiStore

/// Routes decoded requests: storefront operations and queries to the engine (here), operator
/// operations to `OperatorOperations` on their own queue; `WireMapping` turns engine answers
/// into wire messages. Knows nothing of sockets: the event loop hands it a request and a
/// `done` callback, called exactly once, either right away (validation errors, queries) or
/// from the thread that finished the durable write.
final class Dispatcher: Sendable {
    let engine: Engine
    /// Operator operations (imports, exports, verify) can take seconds: never on a loop thread.
    private let operatorQueue = DispatchQueue(label: "kami-operator")

    /// The operator operations, run on `operatorQueue`.
    private let operators: OperatorOperations

    /// The risk gate's side of each request.
    let risk: RiskDesk

    init(engine: Engine, controls: DaemonControls, risk: RiskDesk) {
        self.engine = engine
        self.risk = risk
        self.operators = OperatorOperations(engine: engine, controls: controls, risk: risk)
    }

    typealias Done = @Sendable (Reply) -> Void

    /// Handles a storefront or operator request that passed authentication; `client` is the
    /// connection's hello name (`operator` on the Unix socket), recorded on order events.
    ///
    /// `trusted` is the operator's Unix socket: it may look up any order without naming its user.
    ///
    /// `screened`: the order came back from an unscreened try (`RiskDesk.skipsSoldOut`) that
    /// found stock; it goes through the gate now.
    func handle(_ request: Request, client: String? = nil, trusted: Bool = false, screened: Bool = false, done: @escaping Done) {
        let id = request.id
        let finish: OrderCompletion = { result in
            done(Reply(id: id, result: result.map { .order(WireMapping.wire($0)) }))
        }
        let risk = self.risk
        // Holds end (for the gate's hold counts) when paid or released.
        let ending: OrderCompletion = { result in
            if case .success(let reply) = result, reply.state != .reserved { risk.ended(order: reply.orderID) }
            finish(result)
        }
        do throws(KamiError) {
            switch request.op {
            case .hello:
                done(Reply(id: id, result: .success(.hello(WireHello.current))))
            case .ping:
                done(Reply(id: id, result: .success(.empty)))
            case .reserve where !screened && risk.skipsSoldOut(request):
                // The pool looks empty: tried without the gate; only SOLD_OUT (or a limit) comes
                // back that way, and an order that finds stock after all is screened as usual.
                engine.storefront.reserve(
                    order: try need(request.order, "order"), user: try need(request.user, "user"), sku: try need(request.sku, "sku"),
                    units: request.qty ?? 1, ttlMs: request.ttlMs.flatMap { $0 == 0 ? nil : $0 }, client: client,
                    terms: WireMapping.terms(request), unscreened: true, completion: { [self] result in
                        if case .failure(let error) = result, error.needsScreening {
                            handle(request, client: client, trusted: trusted, screened: true, done: done)
                        } else {
                            finish(result)
                        }
                    })
            case .reserve:
                // Fields first: a request refused as malformed is never counted.
                _ = (try need(request.order, "order"), try need(request.user, "user"), try need(request.sku, "sku"))
                let (verdict, placedHold) = risk.screen(request, client: client)
                guard verdict.decision == .allow || verdict.decision == .review else {
                    if verdict.decision == .deny, let sku = request.sku { engine.admin.noteDenied(sku: sku) }
                    return done(Reply(id: id, result: .failure(RiskDesk.refusal(verdict))))
                }
                engine.storefront.reserve(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1, ttlMs: request.ttlMs.flatMap { $0 == 0 ? nil : $0 },
                    client: client, risk: verdict.rules.isEmpty ? nil : verdict.description, review: verdict.decision == .review,
                    terms: WireMapping.terms(request), completion: { result in
                        risk.reserved(request, result, placedHold: placedHold)
                        finish(result)
                    })
            case .commit:
                // With `user`, only the order's own buyer may pay it (and see its codes): another
                // user's order is NOT_FOUND, like an unknown one.
                if !trusted, let user = request.user, let order = request.order,
                   let existing = engine.upstream.order(order), existing.user != user {
                    risk.lookups.failed(user: user, ip: request.ip, nowMs: engine.nowMs)
                    throw KamiError(.notFound, "no order \(order)")
                }
                engine.storefront.commit(order: try need(request.order, "order"), paymentRef: try need(request.paymentRef, "payment_ref"),
                              client: client, waitMs: request.waitMs, owner: trusted ? nil : request.user, completion: ending)
            case .issue where !screened && risk.skipsSoldOut(request):
                engine.storefront.issue(
                    order: try need(request.order, "order"), user: try need(request.user, "user"), sku: try need(request.sku, "sku"),
                    units: request.qty ?? 1, paymentRef: try need(request.paymentRef, "payment_ref"), client: client,
                    waitMs: request.waitMs, terms: WireMapping.terms(request), unscreened: true, completion: { [self] result in
                        if case .failure(let error) = result, error.needsScreening {
                            handle(request, client: client, trusted: trusted, screened: true, done: done)
                        } else {
                            ending(result)
                        }
                    })
            case .issue:
                _ = (try need(request.order, "order"), try need(request.user, "user"), try need(request.sku, "sku"),
                     try need(request.paymentRef, "payment_ref"))
                let verdict = risk.screen(request, client: client).verdict
                guard verdict.decision == .allow || verdict.decision == .review else {
                    if verdict.decision == .deny, let sku = request.sku { engine.admin.noteDenied(sku: sku) }
                    return done(Reply(id: id, result: .failure(RiskDesk.refusal(verdict))))
                }
                engine.storefront.issue(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1,
                    paymentRef: try need(request.paymentRef, "payment_ref"), client: client, waitMs: request.waitMs,
                    risk: verdict.rules.isEmpty ? nil : verdict.description, review: verdict.decision == .review,
                    terms: WireMapping.terms(request), completion: ending)
            case .wait where trusted:
                engine.storefront.wait(order: try need(request.order, "order"), timeoutMs: try need(request.waitMs, "wait_ms"),
                                       completion: finish)
            case .wait:
                try risk.wait(request, client: client, done: finish)
            case .release:
                engine.storefront.release(order: try need(request.order, "order"), client: client, completion: ending)
            case .order:
                let reply = trusted ? try engine.queries.order(try need(request.order, "order")) : try risk.lookUp(request, client: client)
                done(Reply(id: id, result: .success(.order(WireMapping.wire(reply)))))
            case .entitlements:
                let user = try need(request.user, "user")
                guard trusted || risk.lookups.allows(user: nil, ip: request.ip, nowMs: engine.nowMs) else {
                    throw KamiError(.limitReached, "too many failed lookups from this IP; wait a minute")
                }
                let page = try engine.queries.entitlements(user: user, withSecrets: true, limit: request.limit, cursor: request.cursor)
                if !trusted {
                    // A user with nothing is what an enumerator of user ids finds most: it counts
                    // against the IP as a failed lookup.
                    if page.items.isEmpty && request.cursor == nil { risk.lookups.failed(user: nil, ip: request.ip, nowMs: engine.nowMs) }
                    risk.revealed(page.items.filter { $0.secret != nil }.map(\.codeID), user: user, ip: request.ip,
                                  subject: "entitlements:\(user)", client: client)
                }
                done(Reply(id: id, result: .success(.codes(page.items.map(WireMapping.wire), nextCursor: page.nextCursor))))
            case .risk:
                done(Reply(id: id, result: .success(.risk(try risk.decide(request, client: client)))))
            case .activate:
                try risk.activate(request, client: client, trusted: trusted) { result in
                    done(Reply(id: id, result: result.map { .codes(WireMapping.wire($0), nextCursor: nil) }))
                }
            case .stock:
                let stock = try engine.queries.stock(sku: try need(request.sku, "sku"))
                done(Reply(id: id, result: .success(.stock(WireStock(
                    sku: stock.skuKey, available: Int64(stock.available), reserved: Int64(stock.reserved),
                    issued: Int64(stock.issued + stock.used), voided: Int64(stock.voided), imported: Int64(stock.imported))))))
            case .refund:
                engine.storefront.refund(order: try need(request.order, "order"), client: client, completion: ending)
            case .caseOpen where !trusted:
                // A storefront opens a case for its buyer: only on that buyer's own order (another
                // user's order is NOT_FOUND, like an unknown one, and counts as a failed lookup).
                let user = try need(request.user, "user")
                let orderID = try need(request.order, "order")
                guard risk.lookups.allows(user: user, ip: request.ip, nowMs: engine.nowMs) else {
                    throw KamiError(.limitReached, "too many failed lookups; try again later")
                }
                guard let order = engine.upstream.order(orderID), order.user == user else {
                    risk.lookups.failed(user: user, ip: request.ip, nowMs: engine.nowMs)
                    throw KamiError(.notFound, "no order \(orderID)")
                }
                operatorQueue.async { [self] in
                    let result: Result<ReplyBody, KamiError>
                    do throws(KamiError) {
                        // Where the code came from (a supplier's name) is the operator's business.
                        guard case .fields(let fields) = try operators.operate(request) else { throw KamiError(.unavailable, "case_open answered in an unexpected shape") }
                        result = .success(.fields(fields.filter { $0.0 != "source" }))
                    } catch {
                        result = .failure(error)
                    }
                    done(Reply(id: id, result: result))
                }
            case .jobs:
                // Answered at once, never queued behind the import it reports on.
                done(Reply(id: id, result: .success(.fields([("jobs", .array(engine.queries.currentJob.map {
                    [WireMapping.wire($0, nowMs: engine.nowMs)] } ?? []))]))))
            case .skuSet, .importCSV, .void, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew,
                 .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry, .riskBlock, .riskUnblock, .riskList, .riskTest, .auditReveals, .reviewList, .reviewApprove, .reviewDeny, .deliver, .campaignSet, .campaignList, .couponAdd, .couponList, .distributorSet, .distributorList, .distributorStatement, .reconcilePayments, .report, .caseOpen, .caseList, .caseResolve, .webhookList, .webhookReplay:
                operatorQueue.async { [self] in
                    let result: Result<ReplyBody, KamiError>
                    do throws(KamiError) { result = .success(try operators.operate(request)) } catch {
                        result = .failure(error)
                    }
                    done(Reply(id: id, result: result))
                }
            }
        } catch {
            done(Reply(id: id, result: .failure(error)))
        }
    }
}

/// A field a request must have.
func need<T>(_ value: T?, _ field: String) throws(KamiError) -> T {
    guard let value else { throw KamiError(.badRequest, "missing field \(field)") }
    return value
}
