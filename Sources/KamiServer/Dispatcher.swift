import Dispatch
import KamiCore
import KamiEngine
import KamiProtocol
import KamiStore

/// Turns decoded requests into engine calls and engine answers into replies. Knows nothing of
/// sockets: the event loop hands it a request and a `done` callback, called exactly once,
/// either right away (validation errors, queries) or from the commit writer's thread once the
/// write is durable.
final class Dispatcher: Sendable {
    let engine: Engine
    /// Operator operations (imports, exports, verify) can take seconds: never on a loop thread.
    private let operatorQueue = DispatchQueue(label: "kami-operator")

    let controls: DaemonControls

    init(engine: Engine, controls: DaemonControls) {
        self.engine = engine
        self.controls = controls
    }

    typealias Done = @Sendable (Reply) -> Void

    /// Handles a storefront or operator request that passed authentication.
    func handle(_ request: Request, done: @escaping Done) {
        let id = request.id
        let finish: OrderCompletion = { result in
            done(Reply(id: id, result: result.map { .order(Dispatcher.wire($0)) }))
        }
        do throws(KamiError) {
            switch request.op {
            case .hello, .ping:
                done(Reply(id: id, result: .success(.empty)))
            case .reserve:
                engine.reserve(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1, ttlMs: request.ttlMs.flatMap { $0 == 0 ? nil : $0 },
                    completion: finish)
            case .commit:
                engine.commit(order: try need(request.order, "order"), paymentRef: try need(request.paymentRef, "payment_ref"),
                              completion: finish)
            case .issue:
                engine.issue(
                    order: try need(request.order, "order"), user: try need(request.user, "user"),
                    sku: try need(request.sku, "sku"), units: request.qty ?? 1,
                    paymentRef: try need(request.paymentRef, "payment_ref"), completion: finish)
            case .release:
                engine.release(order: try need(request.order, "order"), completion: finish)
            case .order:
                done(Reply(id: id, result: .success(.order(Dispatcher.wire(try engine.order(try need(request.order, "order")))))))
            case .entitlements:
                let items = try engine.entitlements(user: try need(request.user, "user"), withSecrets: true)
                done(Reply(id: id, result: .success(.codes(items.map(Dispatcher.wire)))))
            case .stock:
                let stock = try engine.stock(sku: try need(request.sku, "sku"))
                done(Reply(id: id, result: .success(.stock(WireStock(
                    sku: stock.skuKey, available: Int64(stock.available), reserved: Int64(stock.reserved),
                    issued: Int64(stock.issued), voided: Int64(stock.voided), imported: Int64(stock.imported))))))
            case .refund:
                engine.refund(order: try need(request.order, "order"), completion: finish)
            case .jobs:
                // Answered at once, never queued behind the import it reports on.
                done(Reply(id: id, result: .success(.fields([("jobs", .array(engine.currentJob.map {
                    [Dispatcher.wire($0, nowMs: engine.nowMs)] } ?? []))]))))
            case .skuSet, .importCSV, .void, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew:
                operatorQueue.async { [self] in
                    let result: Result<ReplyBody, KamiError>
                    do throws(KamiError) { result = .success(try operate(request)) } catch { result = .failure(error) }
                    done(Reply(id: id, result: result))
                }
            }
        } catch {
            done(Reply(id: id, result: .failure(error)))
        }
    }

    private func need<T>(_ value: T?, _ field: String) throws(KamiError) -> T {
        guard let value else { throw KamiError(.badRequest, "missing field \(field)") }
        return value
    }

    /// The operator operations (Unix socket only; the loop checked that).
    private func operate(_ request: Request) throws(KamiError) -> ReplyBody {
        switch request.op {
        case .skuSet:
            let sku = try engine.setSku(SkuDefinition(
                key: try need(request.sku, "sku"), name: request.name, priceCents: request.priceCents,
                perUserLimit: request.perUserLimit, activationURLTemplate: request.activationURL))
            return .fields([
                ("sku", .string(sku.key)), ("name", .string(sku.name)), ("price_cents", .int(sku.priceCents)),
                ("per_user_limit", .int(Int64(sku.perUserLimit))),
                ("activation_url", sku.activationURLTemplate.map { .string($0) } ?? .null),
            ])
        case .importCSV:
            let report = try engine.importCSV(
                path: try need(request.path, "path"), sku: try need(request.sku, "sku"), batch: request.batch,
                dryRun: request.dryRun ?? false)
            let shown = report.rejected.prefix(Dispatcher.rejectedRowsShownMax).map { row -> JSONValue in
                .object([("line", .int(Int64(row.line))), ("reason", .string(row.reason))])
            }
            return .fields([
                ("imported", .int(Int64(report.imported))), ("rejected", .int(Int64(report.rejectedCount))),
                ("dry_run", .bool(report.dryRun)), ("rejected_rows", .array(Array(shown))),
                ("first_code_id", report.codeIDs.isEmpty ? .null : .int(report.codeIDs.lowerBound)),
                ("last_code_id", report.codeIDs.isEmpty ? .null : .int(report.codeIDs.upperBound - 1)),
            ])
        case .void:
            let report: VoidReport
            if let code = request.codeID {
                report = try engine.void(code: code)
            } else {
                report = try engine.void(batch: try need(request.batch, "code_id or batch"))
            }
            return .fields([
                ("voided", .int(Int64(report.voided))), ("already_voided", .int(Int64(report.alreadyVoided))),
                ("skipped_reserved", .int(Int64(report.skippedReserved))),
            ])
        case .export:
            let count = try engine.exportCSV(
                sku: try need(request.sku, "sku"), to: try need(request.path, "path"), withSecrets: request.withSecrets ?? false,
                replace: request.replace ?? false)
            return .fields([("exported", .int(Int64(count))), ("path", .string(request.path ?? ""))])
        case .stats:
            let writer = engine.storage.writer.stats
            let skus = try engine.skus().map { sku throws(KamiError) -> JSONValue in
                let stock = try engine.stock(sku: sku.key)
                return .object([
                    ("sku", .string(sku.key)), ("available", .int(Int64(stock.available))),
                    ("reserved", .int(Int64(stock.reserved))), ("issued", .int(Int64(stock.issued))),
                    ("voided", .int(Int64(stock.voided))),
                ])
            }
            return .fields([
                ("commit_batches", .int(Int64(writer.batches))), ("commit_mutations", .int(Int64(writer.mutations))),
                ("commit_failed_batches", .int(Int64(writer.failedBatches))),
                ("commit_largest_batch", .int(Int64(writer.largestBatch))), ("skus", .array(skus)),
            ])
        case .verify:
            let violations = try engine.verify()
            return .fields([
                ("violations", .array(violations.map { .object([("invariant", .string($0.invariant)), ("detail", .string($0.detail))]) })),
                ("clean", .bool(violations.isEmpty)),
            ])
        case .skuList:
            let skus = try engine.skus().map { sku throws(KamiError) -> JSONValue in
                let stock = try engine.stock(sku: sku.key)
                return .object([
                    ("sku", .string(sku.key)), ("name", .string(sku.name)), ("price_cents", .int(sku.priceCents)),
                    ("per_user_limit", .int(Int64(sku.perUserLimit))),
                    ("activation_url", sku.activationURLTemplate.map { .string($0) } ?? .null),
                    ("bundle", .bool(sku.isBundle)),
                    ("available", .int(Int64(stock.available))), ("reserved", .int(Int64(stock.reserved))),
                    ("issued", .int(Int64(stock.issued))), ("voided", .int(Int64(stock.voided))),
                    ("imported", .int(Int64(stock.imported))),
                ])
            }
            return .fields([("skus", .array(skus))])
        case .auditVerify:
            let walk = try engine.storage.walkAuditChain()
            return .fields([
                ("entries", .int(walk.entries)), ("clean", .bool(walk.broken == nil)),
                ("broken_seq", walk.broken.map { .int($0.seq) } ?? .null),
                ("reason", walk.broken.map { .string($0.reason) } ?? .null),
            ])
        case .tokenNew:
            let minted = try controls.newToken(try need(request.client, "client")).get()
            return .fields([
                ("client", .string(minted.client)), ("token", .string(minted.token.reveal())),
                ("path", .string(minted.path)), ("replaced", .bool(minted.replaced)),
            ])
        case .reload:
            let report = try controls.reload().get()
            return .fields([
                ("applied", .array(report.applied.map { .string($0) })),
                ("restart_required", .array(report.restartRequired.map { .string($0) })),
                ("duration_us", .int(report.durationUs)),
            ])
        default:
            throw KamiError(.badRequest, "\(request.op.name) is not an operator operation")
        }
    }

    static func wire(_ job: JobProgress, nowMs: Int64) -> JSONValue {
        .object([
            ("kind", .string(job.kind)), ("sku", .string(job.sku)), ("rows", .int(Int64(job.rows))),
            ("file_bytes", job.fileBytes.map { .int($0) } ?? .null),
            ("elapsed_ms", .int(max(0, nowMs - job.startedAtMs))),
        ])
    }

    /// Rejected import rows listed in a reply; the rest are counted.
    static let rejectedRowsShownMax = 100

    static func wire(_ reply: OrderReply) -> WireOrder {
        let codes: [WireCode] = reply.codes.isEmpty
            ? (reply.state == .reserved ? reply.codeIDs.map { WireCode(codeID: $0, sku: reply.skuKey) } : [])
            : reply.codes.map {
                WireCode(codeID: $0.codeID, sku: $0.skuKey, secret: $0.secret, cardNumber: $0.cardNumber,
                         activationURL: $0.activationURL)
            }
        return WireOrder(
            order: reply.orderID, state: reply.state, sku: reply.skuKey, qty: reply.units, expiresAtMs: reply.expiresAtMs,
            codes: codes)
    }

    static func wire(_ item: Entitlement) -> WireCode {
        WireCode(
            codeID: item.codeID, sku: item.skuKey, secret: item.secret, cardNumber: item.cardNumber,
            activationURL: item.activationURL, state: item.state.description, order: item.orderID)
    }
}
