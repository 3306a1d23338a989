import Foundation
import KamiCore
import KamiEngine
import KamiHTTP
import KamiStore

extension UpstreamService {
    /// One buy-ahead purchase being worked on (on the loop).
    final class BuyAheadWork: @unchecked Sendable {
        var purchase: BuyAhead
        let sku: Sku
        var pollMs: Int64 = 0
        var lastSendMs: Int64 = 0
        var notFoundInARow = 0
        var busy = false
        /// Resumed after a restart: its first send may have left before the crash.
        var resumed = false

        init(purchase: BuyAhead, sku: Sku) {
            self.purchase = purchase
            self.sku = sku
        }
    }

    /// UTC midnight of `ms`, the start of a buy-ahead budget's day.
    static func dayStart(_ ms: Int64) -> Int64 { ms - ms % 86_400_000 }

    /// Resumes the purchases open at the last stop, and ticks every `buyAheadTickMs`.
    func startBuyAhead() {
        // Resumed before any new purchase: a failed read is tried again, never skipped.
        let open: [BuyAhead]
        do throws(KamiError) { open = try engine.upstream.openBuyAheads() } catch {
            log("warning", "buy-ahead-journal", [("error", error.message)])
            loop.schedule(afterMs: 1_000) { [weak self] in self?.startBuyAhead() }
            return
        }
        let skus = Dictionary(engine.queries.skus().map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for purchase in open {
            // Resolved even if its SKU has gone from the catalog (it was paid for).
            let sku = skus[purchase.sku] ?? Sku(id: purchase.sku, key: "#\(purchase.sku)", name: "", priceCents: 0,
                                                perUserLimit: 0, activationURLTemplate: nil)
            let work = BuyAheadWork(purchase: purchase, sku: sku)
            work.resumed = true
            buying[purchase.sku] = work
            log("notice", "buy-ahead-resume", [("sku", sku.key), ("no", purchase.customerOrderNo), ("state", "\(purchase.state)")])
            queryBuyAhead(work)
        }
        scheduleBuyAheadTick()
    }

    private func scheduleBuyAheadTick() {
        loop.schedule(afterMs: settings.buyAheadTickMs) { [weak self] in
            guard let self else { return }
            self.buyAheadTick()
            self.scheduleBuyAheadTick()
        }
    }

    /// Looks at every SKU with a low-water mark: under it, with no purchase open, it buys
    /// `buy_ahead_units` from the cheapest supplier that passes the margin guard, within the
    /// day's budget.
    func buyAheadTick() {
        let mappings = engine.upstream.mappings()
        let paused = engine.upstream.pausedSuppliers()
        let now = nowMs()
        for sku in engine.queries.skus() where !sku.isBundle && buying[sku.id] == nil {
            let sourcing = engine.upstream.sourcing(sku.id)
            guard sourcing.lowWater > 0, sourcing.buyAheadUnits > 0, sourcing.policy != .upstream,
                  engine.upstream.available(sku: sku.id) < sourcing.lowWater else { continue }
            let limit = Router.costLimit(priceCents: sku.priceCents, sourcing: sourcing)
            let candidates = (mappings[sku.id] ?? []).filter { mapping in
                suppliers[mapping.supplier] != nil && !paused.contains(mapping.supplier) && mapping.costCents <= limit
                    && mapping.stock != 0 && (breakers[mapping.supplier]?.wouldAllow(nowMs: now) ?? true)
            }.sorted { ($0.costCents, $0.priority, $0.supplier) < ($1.costCents, $1.priority, $1.supplier) }
            guard let chosen = candidates.first else { continue }
            // A budget that cannot be read is not spent: skip the SKU this time.
            guard let today = try? engine.upstream.buyAheads(sku: sku.id, sinceMs: UpstreamService.dayStart(now)) else { continue }
            let spent = today.filter { $0.state != .failed }.reduce(Int64(0)) { $0 + $1.costCents * Int64($1.units) }
            let cost = chosen.costCents * Int64(sourcing.buyAheadUnits)
            guard spent + cost <= sourcing.buyAheadBudgetCents else {
                if budgetLogged[sku.id] != UpstreamService.dayStart(now) {
                    budgetLogged[sku.id] = UpstreamService.dayStart(now)
                    log("notice", "buy-ahead-budget", [("sku", sku.key), ("spent_cents", String(spent)),
                                                       ("budget_cents", String(sourcing.buyAheadBudgetCents))])
                }
                continue
            }
            let purchase = BuyAhead(
                sku: sku.id, supplier: chosen.supplier, customerOrderNo: "buyahead-\(sku.key)-\(now)", units: sourcing.buyAheadUnits,
                costCents: chosen.costCents, state: .placing, createdAtMs: now, updatedAtMs: now)
            let work = BuyAheadWork(purchase: purchase, sku: sku)
            buying[sku.id] = work
            journal(work) { [self] in
                place(work, product: chosen.productID)
            }
        }
    }

    /// Journals the purchase as it is now, then `next` on the loop; a failed write is tried
    /// again (nothing is sent before it is durable).
    private func journal(_ work: BuyAheadWork, then next: @escaping @Sendable () -> Void) {
        engine.upstream.recordBuyAhead(work.purchase) { [self] result in
            loop.execute { [self] in
                switch result {
                case .success(let id):
                    work.purchase.id = id
                    next()
                case .failure:
                    loop.schedule(afterMs: 1_000) { [weak self] in self?.journal(work, then: next) }
                }
            }
        }
    }

    private func place(_ work: BuyAheadWork, product: String) {
        work.lastSendMs = nowMs()
        exchange(work, .place(PlaceOrder(customerOrderNo: work.purchase.customerOrderNo, productID: product, quantity: work.purchase.units)))
    }

    private func queryBuyAhead(_ work: BuyAheadWork) {
        exchange(work, .query(customerOrderNo: work.purchase.customerOrderNo))
    }

    private func exchange(_ work: BuyAheadWork, _ call: SupplierWire.Call) {
        guard let endpoint = suppliers[work.purchase.supplier] else {
            return later(work) { [self] in queryBuyAhead(work) }
        }
        let isPlace: Bool = if case .place = call { true } else { false }
        let number = work.purchase.customerOrderNo
        let units = work.purchase.units
        var options = HTTPClientOptions()
        options.connectTimeoutMs = endpoint.config.connectTimeoutMs
        options.timeoutMs = endpoint.config.timeoutMs
        options.maxConnections = endpoint.config.maxConcurrent
        // Completions of both clients run on the loop already.
        let finish: @Sendable (Result<SupplierReply, HTTPClientError>) -> Void = { [self] result in
            settle(work, result: result, isPlace: isPlace)
        }
        if endpoint.config.style == .kami {
            let waitMs = max(0, min(Limits.waitMsMax, endpoint.config.timeoutMs - 500))
            guard let line = KamiPeerWire.request(call, merchant: endpoint.credentials.merchantID, waitMs: waitMs) else {
                return finish(.success(.unknown("another kamid has no operation for this")))
            }
            let firstSend = work.purchase.sends == 1
            peer(endpoint, options: options).send(line) { result in
                finish(result.map {
                    KamiPeerWire.parse($0, isPlace: isPlace, customerOrderNo: number, merchant: endpoint.credentials.merchantID,
                                       firstSend: firstSend)
                })
            }
            return
        }
        let request = SupplierWire.request(call, style: endpoint.config.style, base: endpoint.url,
                                           credentials: endpoint.credentials, nowSeconds: nowMs() / 1_000)
        client.send(request, to: endpoint.url, tls: endpoint.tls, options: options) { result in
            finish(result.map { SupplierWire.parse($0, style: endpoint.config.style, quantity: units, customerOrderNo: number) })
        }
    }

    private func settle(_ work: BuyAheadWork, result: Result<SupplierReply, HTTPClientError>, isPlace: Bool) {
        // Only the first send of the place may prove no sale (a resend, or one resumed after a
        // restart, may follow a place that was taken).
        let first = isPlace && work.purchase.sends == 1 && !work.resumed
        var reply: SupplierReply
        switch result {
        case .success(let answer): reply = answer
        case .failure(let error): reply = !error.sent && first ? .failed(code: "not_sent", message: error.description) : .unknown(error.description)
        }
        if case .failed(let code, let message) = reply, SupplierWire.isRequestRefusal(code), !first {
            reply = .unknown("the supplier refused the request (\(code): \(message.prefix(100)))")
        }
        if case .notFound = reply {} else { work.notFoundInARow = 0 }
        let now = nowMs()
        switch reply {
        case .delivered(_, let items) where items.count == work.purchase.units:
            let sku = work.sku
            let supplier = work.purchase.supplier
            // The import runs on the writer thread and blocks: off the loop.
            DispatchQueue.global().async { [self] in
                let delivered = items.map { DeliveredItem(secret: Secret($0.secret), cardNumber: $0.cardNumber, expiresAtMs: $0.expiresAtMs) }
                let outcome: Result<(Int, Int), KamiError>
                do throws(KamiError) {
                    let report = try engine.upstream.addToPool(sku: sku.key, items: delivered, supplier: supplier,
                                                                costCents: work.purchase.costCents)
                    outcome = .success((report.imported, report.rejectedCount))
                } catch {
                    outcome = .failure(error)
                }
                loop.execute { [self] in
                    switch outcome {
                    case .success(let (imported, duplicates)):
                        // A repeat after a crash finds its codes imported already (duplicates).
                        work.purchase = work.purchase.moved(to: .succeeded, detail: "imported \(imported), duplicates \(duplicates)", atMs: nowMs())
                        journal(work) { [self] in
                            buying[work.purchase.sku] = nil
                            log("notice", "buy-ahead-delivered", [("sku", work.sku.key), ("supplier", supplier),
                                                                   ("imported", String(imported)), ("duplicates", String(duplicates))])
                        }
                    case .failure(let error):
                        log("warning", "buy-ahead-import", [("sku", work.sku.key), ("error", error.message)])
                        later(work) { [self] in queryBuyAhead(work) }
                    }
                }
            }
        case .failed(_, let message):
            work.purchase = work.purchase.moved(to: .failed, detail: String(message.prefix(200)), atMs: now)
            journal(work) { [self] in buying[work.purchase.sku] = nil }
        case .notFound:
            work.notFoundInARow += 1
            let grace = suppliers[work.purchase.supplier]?.config.notSoldAfterMs ?? 300_000
            let acknowledged = work.purchase.state == .processing
            if !acknowledged && work.notFoundInARow >= 2 && now - max(work.lastSendMs, work.purchase.updatedAtMs) >= grace {
                work.purchase = work.purchase.moved(to: .failed, detail: "not found: not sold", atMs: now)
                journal(work) { [self] in buying[work.purchase.sku] = nil }
            } else if !acknowledged, let mapping = engine.upstream.mappings()[work.purchase.sku]?.first(where: { $0.supplier == work.purchase.supplier }) {
                // Sent again under the same number, journaled first.
                var again = work.purchase
                again.sends += 1
                again.updatedAtMs = now
                work.purchase = again
                journal(work) { [self] in place(work, product: mapping.productID) }
            } else {
                later(work) { [self] in queryBuyAhead(work) }
            }
        default:
            let state: AttemptState = if case .processing = reply { .processing } else if case .partial = reply { .processing } else { .unknown }
            if work.purchase.state != state {
                work.purchase = work.purchase.moved(to: state, detail: reply.summary, atMs: now)
                journal(work) {}
            }
            later(work) { [self] in queryBuyAhead(work) }
        }
    }

    private func later(_ work: BuyAheadWork, _ next: @escaping () -> Void) {
        let config = suppliers[work.purchase.supplier]?.config
        work.pollMs = work.pollMs == 0 ? (config?.pollMs ?? 1_000) : min(work.pollMs * 2, config?.pollMaxMs ?? 30_000)
        loop.schedule(afterMs: work.pollMs) { next() }
    }
}
