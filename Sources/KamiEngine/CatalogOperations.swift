public import KamiCore
import KamiPool
import Synchronization
import KamiStore

/// The catalog: SKUs and bundles (the admin room's `setSku`).
extension EngineCore {
    /// Creates or updates a SKU (catalog data, journaled and audited like everything else).
    func setSku(_ definition: SkuDefinition) throws(KamiError) -> Sku {
        if let problem = IdentifierRules.problem(definition.key, field: "sku", maxBytes: Limits.skuKeyBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        adminLock.lock()
        defer { adminLock.unlock() }
        let (existing, count) = catalog.withLock { ($0.byKey[definition.key], $0.byID.count) }
        if existing == nil && count >= Limits.skusMax - 1 {
            throw KamiError(.tooLarge, "the catalog holds \(count) SKUs, the most kamid supports")
        }
        var sku = existing ?? Sku(
            id: 0, key: definition.key, name: definition.key, priceCents: 0, perUserLimit: 0,
            activationURLTemplate: nil)
        if let name = definition.name {
            guard !name.isEmpty, name.utf8.count <= Limits.skuNameBytesMax else {
                throw KamiError(.badRequest, "name must be 1...\(Limits.skuNameBytesMax) bytes")
            }
            sku.name = name
        }
        if let price = definition.priceCents {
            guard price >= 0 else { throw KamiError(.badRequest, "price \(price) is negative") }
            guard price <= Limits.costCentsMax else { throw KamiError(.badRequest, "price \(price) is over \(Limits.costCentsMax)") }
            sku.priceCents = price
        }
        if let limit = definition.perUserLimit {
            guard limit >= 0 && limit <= 1_000_000 else { throw KamiError(.badRequest, "per-user limit \(limit) out of range") }
            sku.perUserLimit = limit
        }
        if let url = definition.activationURLTemplate {
            guard url.utf8.count <= Limits.activationURLBytesMax else {
                throw KamiError(.badRequest, "activation URL longer than \(Limits.activationURLBytesMax) bytes")
            }
            try ActivationTemplate.validate(url)
            sku.activationURLTemplate = url.isEmpty ? nil : url
        }
        if let components = definition.components {
            sku.components = try resolveComponents(components, bundleKey: definition.key, existing: existing)
        }
        if var guide = definition.usageGuide {
            // A guide pasted through a web form has CRLF line ends: kept as LF.
            guide = guide.replacing("\r\n", with: "\n")
            guard guide.utf8.count <= Limits.usageGuideBytesMax else {
                throw KamiError(.badRequest, "usage guide longer than \(Limits.usageGuideBytesMax) bytes")
            }
            if let bad = guide.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\n") || $0.value == 0x7F }) {
                throw KamiError(.badRequest, "usage guide has a control character (U+"
                    + String(bad.value, radix: 16, uppercase: true) + "); only line breaks are allowed")
            }
            sku.usageGuide = guide.isEmpty ? nil : guide
        }
        if let manual = definition.manualDelivery { sku.manualDelivery = manual }
        if let ttl = definition.reviewTTLMs {
            guard ttl == 0 || (ttl >= Limits.holdTTLMsMin && ttl <= Limits.reviewTTLMsMax) else {
                throw KamiError(.badRequest, "review TTL \(ttl) ms is outside \(Limits.holdTTLMsMin)...\(Limits.reviewTTLMsMax) (0: the daemon's review_ttl_ms)")
            }
            sku.reviewTTLMs = ttl
        }
        if sku.manualDelivery && sku.isBundle {
            throw KamiError(.badRequest, "\(sku.key) is a bundle: its codes come from its components' pools and cannot be delivered by hand")
        }
        let event = AuditEvent(
            existing == nil ? "sku-create" : "sku-update", subject: "sku:\(sku.key)",
            detail: "price=\(sku.priceCents) limit=\(sku.perUserLimit) components=\(sku.components.map { "\($0.sku)x\($0.units)" })"
                + " manual=\(sku.manualDelivery) review_ttl_ms=\(sku.reviewTTLMs) usage_guide_bytes=\(sku.usageGuide?.utf8.count ?? 0)")
        let outcome = try submitAndWait(.writeSku(sku, audit: event))
        if case .skuID(let id) = outcome { sku.id = id }
        let stored = sku
        catalog.withLock { $0.insert(stored) }
        return stored
    }

    private func resolveComponents(
        _ components: [(key: String, units: Int)], bundleKey: String, existing: Sku?
    ) throws(KamiError) -> [BundleComponent] {
        guard !components.isEmpty, components.count <= Limits.bundleComponentsMax else {
            throw KamiError(.badRequest, "a bundle needs 1...\(Limits.bundleComponentsMax) components")
        }
        if let existing, !existing.isBundle, (stock.withLock { $0[existing.id] }?.total ?? 0) > 0 {
            throw KamiError(.invalidState, "\(bundleKey) has codes of its own and cannot become a bundle")
        }
        var result: [BundleComponent] = []
        var codesPerUnit = 0
        for (key, units) in components {
            let component = try sku(key: key)
            guard !component.isBundle, key != bundleKey else {
                throw KamiError(.badRequest, "bundle component \(key) must be a plain SKU, not a bundle")
            }
            guard units >= 1 && units <= Limits.unitsPerOrderMax else {
                throw KamiError(.badRequest, "component \(key) units \(units) out of range")
            }
            guard !result.contains(where: { $0.sku == component.id }) else {
                throw KamiError(.badRequest, "component \(key) listed twice")
            }
            codesPerUnit += units
            result.append(BundleComponent(sku: component.id, units: units))
        }
        guard codesPerUnit <= Limits.codesPerOrderMax else {
            throw KamiError(.badRequest, "a bundle unit takes \(codesPerUnit) codes, more than \(Limits.codesPerOrderMax)")
        }
        return result
    }

    func submitAndWait(_ mutation: Mutation) throws(KamiError) -> MutationOutcome {
        let waiter = Waiter<MutationOutcome>()
        store.writer.submit(mutation) { waiter.set($0) }
        return try waiter.wait().get()
    }
}
