import Foundation
import KamiCore
import KamiEngine
import KamiHTTP
import KamiStore

/// Suppliers' callbacks: checked (signature, window, replay), answered, and handed to the
/// order they are about; a delivery for an order kamid has moved on from is kept.
extension UpstreamService {
    // MARK: callbacks

    func callback(_ request: HTTPRequest, responder: HTTPResponder) {
        let parts = request.path.split(separator: "/").map(String.init)
        guard request.method == "POST", parts.count == 3, parts[0] == "upstream", parts[1] == "callback" else {
            return responder.respond(HTTPResponse(status: 404, text: "no such path\n"))
        }
        let id = parts[2]
        guard let endpoint = suppliers[id] else {
            counters.callbacksRejected += 1
            return responder.respond(HTTPResponse(status: 404, text: "no supplier \(id)\n"))
        }
        let now = nowMs()
        switch SupplierWire.verifyCallback(request, style: endpoint.config.style, credentials: endpoint.credentials,
                                           nowSeconds: now / 1_000) {
        case .failure(let problem):
            counters.callbacksRejected += 1
            publish()
            log("warning", "upstream-callback-refused", [("supplier", id), ("reason", problem.description)])
            responder.respond(HTTPResponse(status: 401, text: "refused: \(problem.description)\n"))
        case .success(let callback):
            // Replays within the window are answered as before and change nothing.
            let window = SupplierWire.windowSeconds(endpoint.config.style) * 2_000
            seenCallbacks = seenCallbacks.count > 100_000 ? seenCallbacks.filter { now - $0.value < window } : seenCallbacks
            if let seen = seenCallbacks[callback.replayKey], now - seen < window {
                counters.callbacksReplayed += 1
                publish()
                return responder.respond(SupplierWire.callbackAck(endpoint.config.style))
            }
            seenCallbacks[callback.replayKey] = now
            counters.callbacksAccepted += 1
            responder.respond(SupplierWire.callbackAck(endpoint.config.style))
            if let item = work[callback.customerOrderNo], item.current == id {
                if case .notFound = callback.reply { return }
                if let timer = item.timer { loop.cancel(timer) }
                handle(item, supplier: id, reply: callback.reply, fromPlace: false)
            } else if case .delivered(let ref, let items) = callback.reply {
                if let item = work[callback.customerOrderNo], item.current == nil, !item.settling,
                   !item.attempts.values.contains(where: { !$0.state.isFinal }), let attempt = item.attempts[id],
                   attempt.state == .failed, items.count == item.order.units {
                    // Refused, then delivered after all, while nothing else is open: the
                    // order takes these codes rather than buy again.
                    if let timer = item.timer { loop.cancel(timer) }
                    item.attempts[id] = attempt.moved(to: .unknown, detail: "delivered after a refusal", atMs: nowMs())
                    item.refused.remove(id)
                    item.current = id
                    handle(item, supplier: id, reply: callback.reply, fromPlace: false)
                } else {
                    lateDelivery(callback.customerOrderNo, supplier: id, ref: ref, items: items)
                }
            }
            publish()
        }
    }

    /// A supplier says it delivered an order kamid no longer waits on it for (settled
    /// already, or failed over after an answer that proved no sale). Its attempt is journaled
    /// as succeeded, so `verify` and reconciliation show the purchase; the codes it delivered
    /// (paid for) are kept in the SKU's pool as available, never thrown away; and it is logged
    /// (never the codes) for the operator to take up with the supplier.
    func lateDelivery(_ orderID: String, supplier id: String, ref: String?, items: [WireItem]) {
        guard let order = engine.upstream.order(orderID),
              let attempt = (try? engine.upstream.attempts(orderSeq: order.seq))?.first(where: { $0.supplier == id }),
              attempt.state != .succeeded else { return }
        var late = attempt.moved(to: .succeeded, detail: "late delivery of \(items.count) item(s) after kamid moved on", atMs: nowMs())
        late.supplierRef = ref ?? late.supplierRef
        engine.upstream.recordAttempt(late) { _ in }
        let skuKey = engine.queries.skus().first { $0.id == order.sku }?.key
        let delivered = items.map { DeliveredItem(secret: Secret($0.secret), cardNumber: $0.cardNumber, expiresAtMs: $0.expiresAtMs) }
        let cost = late.costCents
        // The import blocks on the writer thread: off the loop.
        DispatchQueue.global().async { [self] in
            var kept = 0
            if let skuKey, !delivered.isEmpty {
                kept = (try? engine.upstream.addToPool(sku: skuKey, items: delivered, supplier: id, costCents: cost).imported) ?? 0
            }
            log("error", "upstream-late-delivery", [("order", orderID), ("supplier", id), ("ref", ref ?? "-"),
                                                    ("order_state", "\(order.state)"), ("items", String(items.count)),
                                                    ("kept_in_pool", String(kept))])
        }
    }
}
