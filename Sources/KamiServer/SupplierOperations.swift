import Foundation
import KamiCore
import KamiEngine
import KamiProtocol
import KamiStore
import KamiUpstream

/// The operator's supplier operations: sourcing, mappings, pause and resume, the dead-letter
/// list, sync and reconciliation. Run on the operator queue like the rest.
struct SupplierOperations: Sendable {
    let engine: Engine
    let controls: DaemonControls

    private func service() throws(KamiError) -> UpstreamService {
        guard let service = controls.upstream() else {
            throw KamiError(.badRequest, "no supplier is configured (supplier.ID.url and friends in the config file)")
        }
        return service
    }

    private func skuKey(_ id: SkuID) -> String {
        engine.queries.skus().first { $0.id == id }?.key ?? "#\(id)"
    }

    func operate(_ request: Request) throws(KamiError) -> ReplyBody {
        switch request.op {
        case .supplierList:
            let service = try service()
            let mappings = engine.upstream.mappings()
            return .fields([("suppliers", .array(service.statuses.map { status in
                let mapped = mappings.values.reduce(0) { $0 + $1.filter { $0.supplier == status.id }.count }
                return SupplierOperations.wire(status, mapped: mapped)
            }))])
        case .supplierShow:
            let service = try service()
            let id = try need(request.supplier, "supplier")
            guard let status = service.statuses.first(where: { $0.id == id }) else {
                throw KamiError(.notFound, "no supplier \(id) in the config")
            }
            let mappings = engine.upstream.mappings().flatMap { $0.value }.filter { $0.supplier == id }
                .sorted { $0.sku < $1.sku }
            // The cost history of each mapped SKU at this supplier, newest last (at most 20 each).
            var history: [JSONValue] = []
            for mapping in mappings {
                let changes = try engine.upstream.costHistory(sku: mapping.sku).filter { $0.supplier == id }.suffix(20)
                for change in changes {
                    history.append(.object([
                        ("sku", .string(skuKey(change.sku))), ("cost_cents", .int(change.costCents)),
                        ("stock", change.stock.map { .int(Int64($0)) } ?? .null), ("at_ms", .int(change.atMs)),
                    ]))
                }
            }
            return .fields([
                ("supplier", SupplierOperations.wire(status, mapped: mappings.count)),
                ("mappings", .array(mappings.map { wire($0) })),
                ("cost_history", .array(history)),
            ])
        case .supplierMap:
            let known = try service().supplierIDs
            let mapping = try engine.upstream.map(
                sku: try need(request.sku, "sku"), supplier: try need(request.supplier, "supplier"),
                productID: try need(request.product, "product"), costCents: try need(request.costCents, "cost_cents"),
                priority: Int(request.priority ?? 0), weight: Int(request.weight ?? 1), knownSuppliers: known)
            return .fields([("mapping", wire(mapping))])
        case .supplierUnmap:
            let removed = try engine.upstream.unmap(sku: try need(request.sku, "sku"), supplier: try need(request.supplier, "supplier"))
            return .fields([("removed", .bool(removed))])
        case .supplierPause, .supplierResume:
            let id = try need(request.supplier, "supplier")
            guard try service().supplierIDs.contains(id) else { throw KamiError(.notFound, "no supplier \(id) in the config") }
            try engine.upstream.setPaused(id, paused: request.op == .supplierPause)
            return .fields([("supplier", .string(id)), ("paused", .bool(request.op == .supplierPause))])
        case .supplierSync:
            try service().sync()
            return .fields([("started", .bool(true))])
        case .supplierReconcile:
            let statement = try request.path.map { path throws(KamiError) -> [StatementRow] in
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw KamiError(.notFound, "cannot read statement \(path)")
                }
                do throws(ConfigValueError) { return try StatementRow.parse(csv: String(decoding: data, as: UTF8.self)) } catch {
                    throw KamiError(.badRequest, error.description)
                }
            }
            let report = try service().reconcile(
                supplier: try need(request.supplier, "supplier"), fromMs: request.sinceMs ?? 0,
                toMs: request.untilMs ?? Int64.max, statement: statement)
            let mismatches: [JSONValue] = report.mismatches.map { mismatch -> JSONValue in
                let fields: [(String, JSONValue)] = [
                    ("order", .string(mismatch.customerOrderNo)), ("kind", .string(mismatch.kind)),
                    ("here", .string(mismatch.here)), ("there", .string(mismatch.there)),
                ]
                return .object(fields)
            }
            return .fields([
                ("supplier", .string(report.supplier)), ("attempts", .int(Int64(report.attempts))),
                ("matched", .int(Int64(report.matched))), ("mismatches", .array(mismatches)),
            ])
        case .skuSource:
            func parse<T>(_ text: String?, _ field: String, _ make: (String) -> T?, _ names: String) throws(KamiError) -> T? {
                guard let text else { return nil }
                guard let value = make(text) else { throw KamiError(.badRequest, "\(field) must be one of \(names), got \(text)") }
                return value
            }
            let sourcing = try engine.upstream.setSourcing(
                sku: try need(request.sku, "sku"),
                policy: try parse(request.sourcePolicy, "source_policy", SourcePolicy.init(name:),
                                  SourcePolicy.allCases.map(\.description).joined(separator: ", ")),
                strategy: try parse(request.strategy, "strategy", RoutingStrategy.init(name:),
                                    RoutingStrategy.allCases.map(\.description).joined(separator: ", ")),
                minMarginCents: request.minMarginCents,
                noCandidate: try parse(request.noCandidate, "no_candidate", NoCandidatePolicy.init(name:), "fail, wait"),
                lowWater: request.lowWater.map { Int($0) }, buyAheadUnits: request.buyAheadUnits.map { Int($0) },
                buyAheadBudgetCents: request.buyAheadBudgetCents)
            return .fields([("sourcing", wire(sourcing))])
        case .upstreamFailed:
            let failed = engine.upstream.failedOrders()
            return .fields([("orders", .array(try failed.map { order throws(KamiError) -> JSONValue in
                let attempts = try engine.upstream.attempts(orderSeq: order.seq)
                return .object([
                    ("order", .string(order.orderID)), ("user", .string(order.user)), ("sku", .string(skuKey(order.sku))),
                    ("qty", .int(Int64(order.units))), ("failed_at_ms", .int(order.updatedAtMs)),
                    ("attempts", .array(attempts.map {
                        .object([("supplier", .string($0.supplier)), ("state", .string("\($0.state)")),
                                 ("detail", .string($0.detail))])
                    })),
                ])
            }))])
        case .upstreamRetry:
            let waiter = ResultBox<OrderReply>()
            engine.upstream.retry(orderID: try need(request.order, "order")) { waiter.set($0) }
            let reply = try waiter.wait().get()
            return .fields([("order", .string(reply.orderID)), ("state", .string(reply.state.description))])
        default:
            throw KamiError(.badRequest, "\(request.op.name) is not a supplier operation")
        }
    }

    static func wire(_ status: SupplierStatus, mapped: Int) -> JSONValue {
        .object([
            ("supplier", .string(status.id)), ("style", .string(status.style.rawValue)), ("url", .string(status.url)),
            ("breaker", .string(status.breaker.rawValue)), ("breaker_openings", .int(Int64(status.breakerOpenings))),
            ("paused", .bool(status.paused)), ("in_flight", .int(Int64(status.inFlight))),
            ("attempts", .int(Int64(status.attempts))), ("failures", .int(Int64(status.failures))),
            ("p95_ms", status.p95Ms.map { .int($0) } ?? .null),
            ("success_rate_pct", .int(Int64((status.successRate * 100).rounded()))), ("mapped_skus", .int(Int64(mapped))),
        ])
    }

    func wire(_ mapping: SupplierMapping) -> JSONValue {
        .object([
            ("sku", .string(skuKey(mapping.sku))), ("supplier", .string(mapping.supplier)), ("product", .string(mapping.productID)),
            ("cost_cents", .int(mapping.costCents)), ("priority", .int(Int64(mapping.priority))),
            ("weight", .int(Int64(mapping.weight))), ("stock", mapping.stock.map { .int(Int64($0)) } ?? .null),
            ("updated_at_ms", .int(mapping.updatedAtMs)),
        ])
    }

    func wire(_ sourcing: SkuSourcing) -> JSONValue {
        .object([
            ("sku", .string(skuKey(sourcing.sku))), ("source_policy", .string(sourcing.policy.description)),
            ("strategy", .string(sourcing.strategy.description)), ("min_margin_cents", .int(sourcing.minMarginCents)),
            ("no_candidate", .string(sourcing.noCandidate.description)), ("low_water", .int(Int64(sourcing.lowWater))),
            ("buy_ahead_units", .int(Int64(sourcing.buyAheadUnits))), ("buy_ahead_budget_cents", .int(sourcing.buyAheadBudgetCents)),
        ])
    }
}
