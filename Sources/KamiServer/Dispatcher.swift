import Dispatch
import KamiCore
import KamiEngine
import KamiProtocol
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

    init(engine: Engine, controls: DaemonControls) {
        self.engine = engine
        self.operators = OperatorOperations(engine: engine, controls: controls)
    }

    typealias Done = @Sendable (Reply) -> Void

    /// Handles a storefront or operator request that passed authentication; `client` is the
    /// connection's hello name (`operator` on the Unix socket), recorded on order events.
    func handle(_ request: Request, client: String? = nil, done: @escaping Done) {
        let id = request.id
        let finish: OrderCompletion = { result in
            done(Reply(id: id, result: result.map { .order(WireMapping.wire($0)) }))
        }
        do throws(KamiError) {
            switch request.op {
            case .hello:
                done(Reply(id: id, result: .success(.hello(WireHello.current))))
            case .ping:
                done(Reply(id: id, result: .success(.empty)))
            case .reserve:
                engine.storefront.reserve(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1, ttlMs: request.ttlMs.flatMap { $0 == 0 ? nil : $0 },
                    client: client, completion: finish)
            case .commit:
                engine.storefront.commit(order: try need(request.order, "order"), paymentRef: try need(request.paymentRef, "payment_ref"),
                              client: client, waitMs: request.waitMs, completion: finish)
            case .issue:
                engine.storefront.issue(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1,
                    paymentRef: try need(request.paymentRef, "payment_ref"), client: client, waitMs: request.waitMs,
                    completion: finish)
            case .wait:
                engine.storefront.wait(order: try need(request.order, "order"), timeoutMs: try need(request.waitMs, "wait_ms"),
                                       completion: finish)
            case .release:
                engine.storefront.release(order: try need(request.order, "order"), client: client, completion: finish)
            case .order:
                done(Reply(id: id, result: .success(.order(WireMapping.wire(try engine.queries.order(try need(request.order, "order")))))))
            case .entitlements:
                let page = try engine.queries.entitlements(
                    user: try need(request.user, "user"), withSecrets: true, limit: request.limit, cursor: request.cursor)
                done(Reply(id: id, result: .success(.codes(page.items.map(WireMapping.wire), nextCursor: page.nextCursor))))
            case .stock:
                let stock = try engine.queries.stock(sku: try need(request.sku, "sku"))
                done(Reply(id: id, result: .success(.stock(WireStock(
                    sku: stock.skuKey, available: Int64(stock.available), reserved: Int64(stock.reserved),
                    issued: Int64(stock.issued), voided: Int64(stock.voided), imported: Int64(stock.imported))))))
            case .refund:
                engine.storefront.refund(order: try need(request.order, "order"), client: client, completion: finish)
            case .jobs:
                // Answered at once, never queued behind the import it reports on.
                done(Reply(id: id, result: .success(.fields([("jobs", .array(engine.queries.currentJob.map {
                    [WireMapping.wire($0, nowMs: engine.nowMs)] } ?? []))]))))
            case .skuSet, .importCSV, .void, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew,
                 .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry:
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
