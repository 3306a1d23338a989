import Foundation
import KamiCore
import KamiEngine
import KamiHTTP

/// Price and stock sync: every supplier's product list on a schedule; each change of a
/// mapped product's cost or stock is journaled (the cost history).
extension UpstreamService {
    // MARK: sync

    func scheduleSync() {
        guard settings.syncMs > 0 else { return }
        loop.schedule(afterMs: settings.syncMs) { [weak self] in
            guard let self else { return }
            self.syncNow()
            self.scheduleSync()
        }
    }

    /// Asks every supplier for its products' prices and stock now; each change of a mapped
    /// product is journaled (the cost history).
    public func sync() { loop.execute { [self] in syncNow() } }

    func syncNow() {
        let mappings = engine.upstream.mappings()
        for endpoint in suppliers.values where endpoint.config.style != .kami {
            let id = endpoint.config.id
            let request = SupplierWire.request(.products, style: endpoint.config.style, base: endpoint.url,
                                               credentials: endpoint.credentials, nowSeconds: nowMs() / 1_000)
            var options = HTTPClientOptions()
            options.timeoutMs = endpoint.config.timeoutMs
            options.maxConnections = endpoint.config.maxConcurrent
            client.send(request, to: endpoint.url, tls: endpoint.tls, options: options) { [weak self] result in
                guard let self else { return }
                guard case .success(let response) = result,
                      let products = SupplierWire.parseProducts(response, style: endpoint.config.style) else {
                    self.log("warning", "upstream-sync", [("supplier", id), ("error", "no product list")])
                    return
                }
                let byProduct = Dictionary(products.map { ($0.productID, $0) }, uniquingKeysWith: { $1 })
                for (sku, list) in mappings {
                    for mapping in list where mapping.supplier == id {
                        guard let product = byProduct[mapping.productID] else { continue }
                        self.engine.upstream.updateCost(sku: sku, supplier: id, costCents: product.priceCents, stock: product.stock)
                    }
                }
            }
        }
    }
}
