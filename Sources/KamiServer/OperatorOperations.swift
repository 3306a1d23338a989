import KamiCore
import KamiCrypto
import KamiLedger
import KamiEngine
import KamiProtocol
import KamiStore

/// The operator operations (Unix socket only; the event loop checked that): catalog, import,
/// export, void, stats, verify, audit, tokens, reload. Each can take seconds, so the
/// dispatcher runs them on its operator queue, never on a loop thread.
struct OperatorOperations: Sendable {
    let engine: Engine
    let controls: DaemonControls
    let risk: RiskDesk

    /// Rejected import rows listed in a reply; the rest are counted.
    static let rejectedRowsShownMax = 100

    /// The operator operations (Unix socket only; the loop checked that).
    func operate(_ request: Request) throws(KamiError) -> ReplyBody {
        switch request.op {
        case .skuSet:
            let sku = try engine.admin.setSku(SkuDefinition(
                key: try need(request.sku, "sku"), name: request.name, priceCents: request.priceCents,
                perUserLimit: request.perUserLimit, activationURLTemplate: request.activationURL,
                components: try request.bundle.map(OperatorOperations.bundleComponents),
                manualDelivery: request.manualDelivery, reviewTTLMs: request.reviewTTLMs, usageGuide: request.usageGuide))
            return .fields([
                ("sku", .string(sku.key)), ("name", .string(sku.name)), ("price_cents", .int(sku.priceCents)),
                ("per_user_limit", .int(Int64(sku.perUserLimit))),
                ("activation_url", sku.activationURLTemplate.map { .string($0) } ?? .null),
                ("manual_delivery", .bool(sku.manualDelivery)), ("review_ttl_ms", .int(engine.reviewTTLMs(sku: sku.key))),
                ("bundle", bundleText(sku).map { .string($0) } ?? .null),
                ("usage_guide", sku.usageGuide.map { .string($0) } ?? .null),
            ])
        case .importCSV:
            let report = try engine.admin.importCSV(
                path: try need(request.path, "path"), sku: try need(request.sku, "sku"), batch: request.batch,
                dryRun: request.dryRun ?? false, sheet: request.name)
            let shown = report.rejected.prefix(OperatorOperations.rejectedRowsShownMax).map { row -> JSONValue in
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
                report = try engine.admin.void(code: code)
            } else {
                report = try engine.admin.void(batch: try need(request.batch, "code_id or batch"))
            }
            return .fields([
                ("voided", .int(Int64(report.voided))), ("already_voided", .int(Int64(report.alreadyVoided))),
                ("skipped_reserved", .int(Int64(report.skippedReserved))),
            ])
        case .export:
            let count = try engine.admin.exportCSV(
                sku: try need(request.sku, "sku"), to: try need(request.path, "path"), withSecrets: request.withSecrets ?? false,
                replace: request.replace ?? false)
            return .fields([("exported", .int(Int64(count))), ("path", .string(request.path ?? ""))])
        case .stats:
            let writer = engine.storage.writer.stats
            let skus = try engine.queries.skus().map { sku throws(KamiError) -> JSONValue in
                let stock = try engine.queries.stock(sku: sku.key)
                return .object([
                    ("sku", .string(sku.key)), ("available", .int(Int64(stock.available))),
                    ("reserved", .int(Int64(stock.reserved))), ("issued", .int(Int64(stock.issued))),
                    ("used", .int(Int64(stock.used))), ("voided", .int(Int64(stock.voided))),
                ])
            }
            return .fields([
                ("commit_batches", .int(Int64(writer.batches))), ("commit_mutations", .int(Int64(writer.mutations))),
                ("commit_failed_batches", .int(Int64(writer.failedBatches))),
                ("commit_largest_batch", .int(Int64(writer.largestBatch))), ("skus", .array(skus)),
            ])
        case .verify:
            let violations = try engine.admin.verify()
            return .fields([
                ("violations", .array(violations.map { .object([("invariant", .string($0.invariant)), ("detail", .string($0.detail))]) })),
                ("clean", .bool(violations.isEmpty)),
            ])
        case .skuList:
            let skus = try engine.queries.skus().map { sku throws(KamiError) -> JSONValue in
                let stock = try engine.queries.stock(sku: sku.key)
                return .object([
                    ("sku", .string(sku.key)), ("name", .string(sku.name)), ("price_cents", .int(sku.priceCents)),
                    ("per_user_limit", .int(Int64(sku.perUserLimit))),
                    ("activation_url", sku.activationURLTemplate.map { .string($0) } ?? .null),
                    ("bundle", bundleText(sku).map { .string($0) } ?? .null), ("manual_delivery", .bool(sku.manualDelivery)),
                    ("review_ttl_ms", .int(engine.reviewTTLMs(sku: sku.key))),
                    ("available", .int(Int64(stock.available))), ("reserved", .int(Int64(stock.reserved))),
                    ("issued", .int(Int64(stock.issued))), ("used", .int(Int64(stock.used))), ("voided", .int(Int64(stock.voided))),
                    ("imported", .int(Int64(stock.imported))), ("usage_guide", sku.usageGuide.map { .string($0) } ?? .null),
                    ("source_policy", .string(engine.upstream.sourcing(sku.id).policy.description)),
                    ("suppliers", .array((engine.upstream.mappings()[sku.id] ?? []).map { .string($0.supplier) })),
                ])
            }
            return .fields([("skus", .array(skus))])
        case .auditVerify:
            let walk = try engine.storage.walkAuditChain()
            // The first problem: a live break, else the first disagreement recorded at a start.
            let first = walk.broken ?? walk.recorded.first
            return .fields([
                ("entries", .int(walk.entries)), ("clean", .bool(first == nil)),
                ("broken_seq", first.map { .int($0.seq) } ?? .null),
                ("reason", first.map { .string($0.reason) } ?? .null),
                ("recorded", .array(walk.recorded.map {
                    .object([("seq", .int($0.seq)), ("reason", .string($0.reason))])
                })),
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
        case .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync,
             .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry:
            return try SupplierOperations(engine: engine, controls: controls).operate(request)
        case .riskBlock:
            return .fields(try risk.setList(request, add: true))
        case .riskUnblock:
            return .fields(try risk.setList(request, add: false))
        case .riskList:
            return .fields(try risk.listing())
        case .auditReveals:
            let limit = min(max(request.limit ?? 100, 1), 10_000)
            let rows = try engine.storage.auditEntries(event: "reveal", user: request.user, limit: limit)
            return .fields([("reveals", .array(rows.map { row in
                .object([("seq", .int(row.seq)), ("at_ms", .int(row.atMs)), ("subject", .string(row.subject)),
                         ("detail", .string(row.detail))])
            }))])
        case .reviewList:
            return .fields([("orders", .array(engine.reviewQueue().map { order in
                .object([("order", .string(order.orderID)), ("user", .string(order.user)),
                         ("sku", .string(engine.queries.skus().first { $0.id == order.sku }?.key ?? "?")),
                         ("qty", .int(Int64(order.units))), ("paid", .bool(order.paymentRef != nil)),
                         ("codes", .int(Int64(order.codes.count))), ("created_at_ms", .int(order.createdAtMs)),
                         ("expires_at_ms", .int(order.expiresAtMs))])
            }))])
        case .reviewApprove, .reviewDeny:
            let orderID = try need(request.order, "order")
            let box = ResultBox<OrderReply>()
            if request.op == .reviewApprove {
                engine.approve(order: orderID, client: "operator") { box.set($0) }
            } else {
                engine.deny(order: orderID, client: "operator") { box.set($0) }
            }
            var reply = try box.wait().get()
            if reply.state == .reserved {
                // Approved unpaid: an ordinary hold now, with its own (shorter) deadline.
                risk.rescheduled(order: orderID, deadlineMs: reply.expiresAtMs)
            } else {
                risk.ended(order: orderID)
            }
            // The buyer's secrets are the buyer's: the operator sees the order, not its codes.
            reply.codes = []
            return .order(WireMapping.wire(reply))
        case .deliver:
            let orderID = try need(request.order, "order")
            let items = try OperatorOperations.deliveredItems(try need(request.secrets, "secrets"))
            let box = ResultBox<OrderReply>()
            engine.deliver(order: orderID, items: items, costCents: request.costCents ?? 0, client: "operator") { box.set($0) }
            var reply = try box.wait().get()
            risk.ended(order: orderID)
            // Delivered to the buyer: the operator's reply names the order, not the codes again.
            reply.codes = []
            return .order(WireMapping.wire(reply))
        case .campaignSet:
            let key = try need(request.campaign, "campaign")
            guard let sku = engine.queries.skus().first(where: { $0.key == request.sku }) else {
                throw KamiError(.notFound, "no SKU \(request.sku ?? "(none given)") for campaign \(key)")
            }
            guard (request.priceCents == nil) != (request.discountCents == nil) else {
                throw KamiError(.badRequest, "campaign \(key) takes exactly one of price_cents and discount_cents")
            }
            let campaign = Campaign(
                key: key, sku: sku.id, priceCents: request.priceCents, discountCents: request.discountCents ?? 0,
                startsAtMs: request.sinceMs ?? engine.nowMs, endsAtMs: try need(request.untilMs, "until_ms"),
                budgetCents: try need(request.budgetCents, "budget_cents"), perUserUses: request.perUserLimit ?? 0)
            try engine.admin.setCampaign(campaign)
            return .fields(campaignFields(campaign, spent: engine.admin.campaigns().first { $0.campaign.key == key }))
        case .campaignList:
            return .fields([("campaigns", .array(engine.admin.campaigns().map { .object(campaignFields($0.campaign, spent: $0)) }))])
        case .couponAdd:
            let batch = CouponBatch(key: try need(request.batch, "batch"), discountCents: try need(request.discountCents, "discount_cents"),
                                    perUserUses: request.perUserLimit ?? 0)
            var codes: [String]
            var generated = false
            switch (request.codes, request.count) {
            case (let text?, nil):
                codes = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { String(OperatorOperations.spaceTrimmed($0[...])) }
                    .filter { !$0.isEmpty }
            case (nil, let count?):
                guard count >= 1 && count <= Int64(Limits.couponsPerRequestMax) else {
                    throw KamiError(.badRequest, "count must be 1...\(Limits.couponsPerRequestMax)")
                }
                codes = (0..<count).map { _ in OperatorOperations.couponCode() }
                generated = true
            default:
                throw KamiError(.badRequest, "coupon_add takes codes (one per line) or count (how many to generate)")
            }
            let added = try engine.admin.addCoupons(batch, codes: codes)
            var fields: [(String, JSONValue)] = [("batch", .string(batch.key)), ("added", .int(Int64(added))),
                                                 ("given", .int(Int64(codes.count)))]
            if generated { fields.append(("codes", .string(codes.joined(separator: "\n")))) }
            return .fields(fields)
        case .distributorSet:
            let key = try need(request.distributor, "distributor")
            guard let rate = request.rateBps, let bps = Int(exactly: rate) else { throw KamiError(.badRequest, "rate_bps is required") }
            let distributor = try engine.admin.setDistributor(key, rateBps: bps, sku: request.sku)
            return .fields(distributorFields(distributor, owed: nil))
        case .distributorList:
            return .fields([("distributors", .array(try engine.admin.distributors().map { .object(distributorFields($0.distributor, owed: $0.owedCents)) }))])
        case .distributorStatement:
            let key = try need(request.distributor, "distributor")
            let since = request.sinceMs ?? 0
            let until = request.untilMs ?? Int64.max
            let statement = try engine.admin.distributorStatement(key, sinceMs: since, untilMs: until)
            return .fields([
                ("distributor", .string(key)), ("since_ms", .int(since)), ("until_ms", .int(until)),
                ("accrued_cents", .int(statement.accruedCents)), ("orders", .int(Int64(statement.orders))),
                ("reversed_cents", .int(statement.reversedCents)), ("reversals", .int(Int64(statement.reversals))),
                ("net_cents", .int(statement.accruedCents - statement.reversedCents)), ("owed_cents", .int(statement.owedCents)),
            ])
        case .reconcilePayments:
            var format: PaymentBill.Format?
            if let kind = request.kind {
                guard let known = PaymentBill.Format(rawValue: kind) else {
                    throw KamiError(.badRequest, "kind must be alipay, wechat or generic, got \(kind)")
                }
                format = known
            }
            let report = try engine.admin.reconcilePayments(path: try need(request.path, "path"), format: format,
                                                            sinceMs: request.sinceMs, untilMs: request.untilMs)
            return .fields([
                ("kind", .string(report.format.rawValue)), ("payments", .int(Int64(report.payments))),
                ("matched", .int(Int64(report.matched))),
                ("mismatches", .array(report.mismatches.map { item in
                    .object([("kind", .string(item.kind.rawValue)), ("order", item.order.map { .string($0) } ?? .null),
                             ("payment_ref", .string(item.paymentRef)), ("here", .string(item.here)), ("there", .string(item.there)),
                             ("line", item.line.map { .int(Int64($0)) } ?? .null)])
                })),
            ])
        case .caseOpen:
            guard let reason = AfterSalesCase.Reason(rawValue: request.kind ?? "") else {
                throw KamiError(.badRequest, "kind (the reason) must be invalid_code, not_received or other")
            }
            let item = try engine.admin.openCase(order: try need(request.order, "order"), code: request.codeID, reason: reason,
                                                 note: request.note ?? "")
            return .fields(caseFields(item))
        case .caseList:
            let all = try engine.admin.cases(openOnly: false)
            var bySku: [String: Int] = [:]
            var bySource: [String: Int] = [:]
            for item in all {
                bySku[skuKey(item.sku), default: 0] += 1
                bySource[item.source, default: 0] += 1
            }
            let shown = request.kind == "all" ? all : all.filter { $0.state == .open }
            return .fields([
                ("cases", .array(shown.map { .object(caseFields($0)) })),
                ("by_sku", .object(bySku.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
                ("by_source", .object(bySource.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ])
        case .caseResolve:
            let id = try need(request.caseID, "case")
            switch request.kind {
            case "replace":
                var reply = try engine.admin.replaceCase(id)
                // The buyer's codes are the buyer's: the operator sees the order, not its secrets.
                reply.codes = []
                return .order(WireMapping.wire(reply))
            case "refund": return .fields(caseFields(try engine.admin.refundCase(id)))
            case "reject": return .fields(caseFields(try engine.admin.rejectCase(id, note: request.note ?? "")))
            default: throw KamiError(.badRequest, "kind must be replace, refund or reject")
            }
        case .report:
            switch request.name ?? "sales" {
            case "sales":
                if let since = request.sinceMs, let until = request.untilMs, until <= since {
                    throw KamiError(.badRequest, "until_ms must be after since_ms")
                }
                if let until = request.untilMs, until <= 0 { throw KamiError(.badRequest, "until_ms must be after 1970") }
                guard let group = Store.ReportGroup(rawValue: request.by ?? "sku") else {
                    throw KamiError(.badRequest, "by must be one of \(Store.ReportGroup.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                let rows = try engine.admin.salesReport(group: group, sinceMs: request.sinceMs ?? 0, untilMs: request.untilMs ?? Int64.max,
                                                        sku: request.sku, channel: request.channel, campaign: request.campaign)
                return .fields([("report", .string("sales")), ("by", .string(group.rawValue)), ("rows", .array(rows.map { row in
                    .object([("key", .string(row.key)), ("orders", .int(row.orders)), ("paid_cents", .int(row.paidCents)),
                             ("subsidy_cents", .int(row.subsidyCents)), ("refunded_cents", .int(row.refundedCents)),
                             ("cost_cents", .int(row.costCents)), ("commission_cents", .int(row.commissionCents)),
                             ("profit_cents", .int(row.profitCents))])
                }))])
            case "payables":
                return .fields([("report", .string("payables")), ("rows", .array(try engine.admin.payables().map { row in
                    .object([("key", .string(row.account)), ("owed_cents", .int(row.owedCents))])
                }))])
            case "inventory":
                let days = request.limit ?? 30
                guard (0...3_650).contains(days) else { throw KamiError(.badRequest, "limit (days) must be 0...3650") }
                return .fields([("report", .string("inventory")), ("rows", .array(try engine.admin.inventoryReport(
                    expiringWithinMs: Int64(days) * 86_400_000).map { item in
                    .object([("key", .string(item.sku)), ("codes", .int(item.row.codes)), ("cost_cents", .int(item.row.costCents)),
                             ("age_under_7d", .int(item.row.ageBuckets[0])), ("age_7_30d", .int(item.row.ageBuckets[1])),
                             ("age_30_90d", .int(item.row.ageBuckets[2])), ("age_over_90d", .int(item.row.ageBuckets[3])),
                             ("expiring", .int(item.row.expiringSoon))])
                }))])
            case "activation":
                let rows = try engine.admin.activationReport(sinceMs: request.sinceMs ?? 0, untilMs: request.untilMs ?? Int64.max)
                return .fields([("report", .string("activation")), ("rows", .array(rows.map { item in
                    .object([("key", .string(item.sku)), ("sold", .int(item.row.sold)), ("used", .int(item.row.used)),
                             ("used_pct", .int(item.row.sold == 0 ? 0 : item.row.used * 100 / item.row.sold)),
                             ("activated", .int(item.row.activatedInWindow)), ("by_token", .int(item.row.byToken))])
                }))])
            case "flash-sale":
                let sku = try need(request.sku, "sku")
                let summary = try engine.admin.flashSaleSummary(sku: sku, sinceMs: request.sinceMs ?? 0, untilMs: request.untilMs ?? Int64.max)
                return .fields([("report", .string("flash-sale")), ("rows", .array([.object([
                    ("key", .string(sku)), ("orders", .int(Int64(summary.orders))), ("peak_per_second", .int(Int64(summary.peakPerSecond))),
                    ("first_ms", summary.firstMs.map { .int($0) } ?? .null), ("last_ms", summary.lastMs.map { .int($0) } ?? .null),
                    ("sold_out_ms", summary.soldOutMs.map { .int($0) } ?? .null), ("rejected_sold_out", .int(Int64(summary.soldOut))),
                    ("rejected_limit", .int(Int64(summary.limitReached))), ("rejected_risk", .int(Int64(summary.denied))),
                ])]))])
            case "repeat":
                return .fields([("report", .string("repeat")), ("rows", .array(engine.admin.repeatBuyers().map { item in
                    .object([("key", .string(item.sku)), ("buyers", .int(Int64(item.buyers))), ("repeat_buyers", .int(Int64(item.repeat))),
                             ("repeat_share_pct", .int(item.buyers == 0 ? 0 : Int64(item.repeat * 100 / item.buyers))),
                             ("mean_interval_hours", item.meanIntervalDays.map { .int(Int64(($0 * 24).rounded())) } ?? .null)])
                }))])
            default:
                throw KamiError(.badRequest, "report must be sales, payables, inventory, repeat, activation or flash-sale, got \(request.name ?? "")")
            }
        case .webhookList:
            let state: OutboxRow.State
            switch request.kind ?? "dead" {
            case "dead", "failed": state = .dead
            case "pending": state = .pending
            case "delivered": state = .delivered
            default: throw KamiError(.badRequest, "kind must be dead, pending or delivered, got \(request.kind ?? "")")
            }
            let limit = request.limit ?? 100
            guard (1...Limits.webhookEventsPerCallMax).contains(limit) else {
                throw KamiError(.badRequest, "limit must be 1...\(Limits.webhookEventsPerCallMax)")
            }
            let rows = try engine.webhooks.rows(state: state, endpoint: request.name, limit: limit)
            var totals: [String: Int] = [:]
            for count in try engine.webhooks.counts() { totals["\(count.endpoint) \(count.state)", default: 0] += count.count }
            return .fields([
                ("events", .array(rows.map { row in
                    .object([("id", .int(row.id)), ("endpoint", .string(row.endpoint)), ("type", .string(row.type)),
                             ("state", .string(row.state.description)), ("attempts", .int(Int64(row.attempts))),
                             ("created_ms", .int(row.createdAtMs)), ("next_ms", .int(row.nextAtMs)),
                             ("done_ms", row.doneAtMs.map { .int($0) } ?? .null), ("last_error", .string(row.lastError)),
                             ("data", .string(row.data))])
                })),
                ("totals", .object(totals.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ])
        case .webhookReplay:
            var ids: [Int64] = []
            if let text = request.value, text != "all" {
                for part in text.split(separator: ",") {
                    guard let id = Int64(OperatorOperations.spaceTrimmed(part[...])), id > 0 else {
                        throw KamiError(.badRequest, "value must be event ids separated by commas, or all")
                    }
                    ids.append(id)
                }
                guard !ids.isEmpty, ids.count <= Limits.webhookEventsPerCallMax else {
                    throw KamiError(.badRequest, "give 1...\(Limits.webhookEventsPerCallMax) event ids, or all")
                }
            } else if request.value == nil {
                throw KamiError(.badRequest, "value must be event ids separated by commas, or all")
            }
            let count = try engine.webhooks.replay(ids: ids, endpoint: request.name, who: "operator")
            return .fields([("replayed", .int(count))])
        case .couponList:
            return .fields([("batches", .array(engine.admin.couponBatches().map { entry in
                .object([("batch", .string(entry.batch.key)), ("discount_cents", .int(entry.batch.discountCents)),
                         ("per_user_limit", .int(Int64(entry.batch.perUserUses))), ("codes", .int(Int64(entry.codes))),
                         ("held", .int(Int64(entry.held)))])
            }))])
        case .riskTest:
            let (verdict, shadow) = risk.test(request)
            return .fields([
                ("decision", .string(verdict.decision.rawValue)), ("reason", .string(verdict.reason)),
                ("rules", .array(verdict.rules.map { .string($0) })), ("score", .int(Int64(verdict.score))),
                ("shadow_rules", .array(shadow.map { .string($0) })),
            ])
        default:
            throw KamiError(.badRequest, "\(request.op.name) is not an operator operation")
        }
    }

    /// A bundle's components as `key:units,key:units` (what `sku_set` takes), nil for a
    /// plain SKU.
    private func bundleText(_ sku: Sku) -> String? {
        guard sku.isBundle else { return nil }
        let keys = Dictionary(engine.queries.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        return sku.components.map { "\(keys[$0.sku] ?? "#\($0.sku)"):\($0.units)" }.joined(separator: ",")
    }

    /// `bundle` of `sku_set`: `key:units,key:units` (units default 1), each key a plain SKU.
    /// The engine checks the keys, the counts and the bounds.
    static func bundleComponents(_ spec: String) throws(KamiError) -> [(key: String, units: Int)] {
        var components: [(key: String, units: Int)] = []
        for part in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            let key = String(spaceTrimmed(fields[0]))
            guard !key.isEmpty, fields.count <= 2 else {
                throw KamiError(.badRequest, "bundle \"\(spec)\": write key:units,key:units (for example video:1,music:1)")
            }
            var units = 1
            if fields.count == 2 {
                guard let value = Int(spaceTrimmed(fields[1])), value >= 1 else {
                    throw KamiError(.badRequest, "bundle \"\(spec)\": units of \(key) must be a whole number of at least 1")
                }
                units = value
            }
            components.append((key, units))
        }
        return components
    }

    private func skuKey(_ id: SkuID) -> String { engine.queries.skus().first { $0.id == id }?.key ?? "#\(id)" }

    /// A case as reply fields, with its age.
    private func caseFields(_ item: AfterSalesCase) -> [(String, JSONValue)] {
        [("case", .int(item.id)), ("order", .string(item.orderID)), ("sku", .string(skuKey(item.sku))),
         ("code_id", item.codeID.map { .int($0) } ?? .null), ("reason", .string(item.reason.rawValue)),
         ("state", .string(item.state.description)), ("source", .string(item.source)), ("opened_at_ms", .int(item.openedAtMs)),
         ("age_ms", .int((item.resolvedAtMs ?? engine.nowMs) - item.openedAtMs)), ("note", .string(item.note))]
    }

    /// A distributor as reply fields.
    private func distributorFields(_ distributor: Distributor, owed: Int64?) -> [(String, JSONValue)] {
        let keys = Dictionary(engine.queries.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        var fields: [(String, JSONValue)] = [
            ("distributor", .string(distributor.key)), ("rate_bps", .int(Int64(distributor.rateBps))),
            ("sku_rates", .object(distributor.skuRatesBps.sorted { $0.key < $1.key }.map { (keys[$0.key] ?? "#\($0.key)", .int(Int64($0.value))) })),
        ]
        if let owed { fields.append(("owed_cents", .int(owed))) }
        return fields
    }

    /// A campaign as reply fields, with what it has given away.
    private func campaignFields(_ campaign: Campaign, spent: (campaign: Campaign, spentCents: Int64, orders: Int)?) -> [(String, JSONValue)] {
        [("campaign", .string(campaign.key)),
         ("sku", .string(engine.queries.skus().first { $0.id == campaign.sku }?.key ?? "#\(campaign.sku)")),
         ("price_cents", campaign.priceCents.map { .int($0) } ?? .null), ("discount_cents", .int(campaign.discountCents)),
         ("since_ms", .int(campaign.startsAtMs)), ("until_ms", .int(campaign.endsAtMs)), ("budget_cents", .int(campaign.budgetCents)),
         ("per_user_limit", .int(Int64(campaign.perUserUses))), ("spent_cents", .int(spent?.spentCents ?? 0)),
         ("orders", .int(Int64(spent?.orders ?? 0)))]
    }

    /// A generated coupon code: 12 characters a person can read aloud (no 0/O, 1/I/L), 59
    /// bits of randomness.
    static func couponCode() -> String {
        let alphabet = Array("23456789ABCDEFGHJKMNPQRSTUVWXYZ".utf8)
        let bytes = SecureRandom.bytes(count: 12)
        return String(decoding: bytes.map { alphabet[Int($0) % alphabet.count] }, as: UTF8.self)
    }

    static func spaceTrimmed(_ text: Substring) -> Substring {
        var part = text
        while part.first == " " { part = part.dropFirst() }
        while part.last == " " { part = part.dropLast() }
        return part
    }

    /// The codes of a `deliver` request: one per line, `secret` or `card_number<TAB>secret`;
    /// blank lines are skipped and each part is trimmed of spaces and a trailing CR. Errors
    /// name the line, never its text.
    static func deliveredItems(_ secrets: Secret) throws(KamiError) -> [DeliveredItem] {
        var items: [DeliveredItem] = []
        var bytes = secrets.bytes[...]
        // A byte order mark (Notepad, Excel) is not part of the first code.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        for (index, raw) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let line = trimmed(raw)
            if line.isEmpty { continue }
            // Control characters (a UTF-16 file's NULs, stray escapes) and text that is not
            // UTF-8 would be stored as a code nobody can type: refused, by line.
            guard !line.contains(where: { ($0 < 0x20 && $0 != UInt8(ascii: "\t")) || $0 == 0x7F }),
                  String(validating: line, as: UTF8.self) != nil, !line.starts(with: [0xEF, 0xBF, 0xBD]) else {
                throw KamiError(.badRequest, "secrets line \(index + 1) has control characters or is not UTF-8 text")
            }
            let parts = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
            guard parts.count <= 2 else {
                throw KamiError(.badRequest, "secrets line \(index + 1) has \(parts.count - 1) tabs; write secret or card<TAB>secret")
            }
            let secret = trimmed(parts[parts.count - 1])
            guard !secret.isEmpty else { throw KamiError(.badRequest, "secrets line \(index + 1) has no secret") }
            var card: String?
            if parts.count == 2 {
                let number = trimmed(parts[0])
                guard !number.isEmpty, let text = String(validating: number, as: UTF8.self) else {
                    throw KamiError(.badRequest, "secrets line \(index + 1) has an empty or non-UTF-8 card number")
                }
                card = text
            }
            items.append(DeliveredItem(secret: Secret(bytes: Array(secret)), cardNumber: card))
        }
        guard !items.isEmpty else { throw KamiError(.badRequest, "secrets holds no codes") }
        return items
    }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var part = bytes
        while let last = part.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\r") { part = part.dropLast() }
        while let first = part.first, first == UInt8(ascii: " ") { part = part.dropFirst() }
        return part
    }
}
