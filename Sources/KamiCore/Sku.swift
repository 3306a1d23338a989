/// One component of a bundle SKU: `units` codes of `sku` per unit of the bundle.
public struct BundleComponent: Sendable, Hashable {
    /// The component SKU (never itself a bundle).
    public var sku: SkuID
    /// Codes of `sku` in one unit of the bundle.
    public var units: Int

    /// Makes a component.
    public init(sku: SkuID, units: Int) {
        self.sku = sku
        self.units = units
    }
}

/// A product: catalog data kept in the database and edited by an operator, not config.
public struct Sku: Sendable, Hashable {
    /// Internal id (row id).
    public var id: SkuID
    /// The storefront's product code, unique.
    public var key: String
    /// Display name.
    public var name: String
    /// Price in minor units (cents, fen).
    public var priceCents: Int64
    /// Most units one user may hold (reserved or committed) at once; 0 = no limit.
    public var perUserLimit: Int
    /// Activation link template; `{code_id}` and `{card_number}` are substituted. Never the secret.
    public var activationURLTemplate: String?
    /// Non-empty for a bundle: the SKUs one unit of it takes. A bundle has no codes of its own.
    public var components: [BundleComponent]
    /// Manual delivery (手动发货): a paid order takes nothing from the pool but waits in the
    /// review queue until an operator delivers a code by hand or from the pool.
    public var manualDelivery: Bool
    /// How long an order of this SKU may wait in the review queue (risk hold or manual
    /// delivery) before it is released; 0 = the daemon's `review_ttl_ms`.
    public var reviewTTLMs: Int64
    /// How to use a code (shown on the buyer's entitlements page, 我的权益); nil: none.
    public var usageGuide: String?

    /// Makes a SKU.
    public init(
        id: SkuID, key: String, name: String, priceCents: Int64, perUserLimit: Int,
        activationURLTemplate: String?, components: [BundleComponent] = [], manualDelivery: Bool = false,
        reviewTTLMs: Int64 = 0, usageGuide: String? = nil
    ) {
        self.usageGuide = usageGuide
        self.id = id
        self.key = key
        self.name = name
        self.priceCents = priceCents
        self.perUserLimit = perUserLimit
        self.activationURLTemplate = activationURLTemplate
        self.components = components
        self.manualDelivery = manualDelivery
        self.reviewTTLMs = reviewTTLMs
    }

    /// Whether this SKU is a bundle of others.
    public var isBundle: Bool { !components.isEmpty }

    /// How many codes one unit takes: 1, or the sum of a bundle's component units.
    public var codesPerUnit: Int { isBundle ? components.reduce(0) { $0 + $1.units } : 1 }

    /// The codes one unit of this SKU takes, per real SKU: itself once, or its components.
    public var unitComposition: [BundleComponent] {
        isBundle ? components : [BundleComponent(sku: id, units: 1)]
    }
}

/// What an operator sends to create or change a SKU; nil fields keep their value.
public struct SkuDefinition: Sendable, Hashable {
    public var key: String
    public var name: String?
    public var priceCents: Int64?
    public var perUserLimit: Int?
    public var activationURLTemplate: String?
    /// Bundle components by SKU key and units; nil keeps them, empty is not allowed to turn a
    /// bundle back into a plain SKU (that would orphan its orders' meaning).
    public var components: [(key: String, units: Int)]?
    /// Manual delivery on or off.
    public var manualDelivery: Bool?
    /// The SKU's review TTL in ms (0: the daemon's default).
    public var reviewTTLMs: Int64?
    /// The usage guide (empty: none).
    public var usageGuide: String?

    /// Makes a definition.
    public init(
        key: String, name: String? = nil, priceCents: Int64? = nil, perUserLimit: Int? = nil,
        activationURLTemplate: String? = nil, components: [(key: String, units: Int)]? = nil,
        manualDelivery: Bool? = nil, reviewTTLMs: Int64? = nil, usageGuide: String? = nil
    ) {
        self.usageGuide = usageGuide
        self.key = key
        self.name = name
        self.priceCents = priceCents
        self.perUserLimit = perUserLimit
        self.activationURLTemplate = activationURLTemplate
        self.components = components
        self.manualDelivery = manualDelivery
        self.reviewTTLMs = reviewTTLMs
    }

    public static func == (a: SkuDefinition, b: SkuDefinition) -> Bool {
        a.key == b.key && a.name == b.name && a.priceCents == b.priceCents && a.perUserLimit == b.perUserLimit
            && a.activationURLTemplate == b.activationURLTemplate
            && a.components?.map(\.key) == b.components?.map(\.key)
            && a.components?.map(\.units) == b.components?.map(\.units)
            && a.manualDelivery == b.manualDelivery && a.reviewTTLMs == b.reviewTTLMs && a.usageGuide == b.usageGuide
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(key) }
}
