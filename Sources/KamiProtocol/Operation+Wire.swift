import KamiCore

/// The shape of a successful reply, which in binary follows from the operation alone
/// (frames carry no body tag).
enum ReplyKind: Sendable {
    case empty, hello, order, codes, stock, risk, fields

    /// The keys a JSON reply of this kind must have (it may have more).
    var requiredKeys: Set<String> {
        switch self {
        case .empty, .fields: []
        case .hello: ["protocol", "server", "features"]
        case .order: ["order", "state", "sku", "qty", "expires_at_ms", "codes"]
        case .codes: ["codes"]
        case .stock: ["sku", "available", "reserved", "issued", "voided", "imported"]
        case .risk: ["decision", "reason", "rules", "score"]
        }
    }
}

extension Operation {
    /// The body a successful reply to this operation carries.
    var replyKind: ReplyKind {
        switch self {
        case .hello: .hello
        case .ping: .empty
        case .reserve, .commit, .issue, .release, .order, .refund, .wait: .order
        case .entitlements, .activate: .codes
        case .stock: .stock
        case .risk: .risk
        case .skuSet, .importCSV, .void, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew, .jobs,
             .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry, .riskBlock, .riskUnblock, .riskList, .riskTest, .auditReveals, .reviewList, .reviewApprove, .reviewDeny, .deliver, .campaignSet, .campaignList, .couponAdd, .couponList, .distributorSet, .distributorList, .distributorStatement, .reconcilePayments, .report, .caseOpen, .caseList, .caseResolve, .webhookList, .webhookReplay: .fields
        }
    }

    /// `name` as a static string, for comparing against raw bytes without building a
    /// `String`. A test checks that the two agree for every operation.
    var wireName: StaticString {
        switch self {
        case .hello: "hello"
        case .ping: "ping"
        case .reserve: "reserve"
        case .commit: "commit"
        case .issue: "issue"
        case .release: "release"
        case .order: "order"
        case .entitlements: "entitlements"
        case .stock: "stock"
        case .skuSet: "sku_set"
        case .importCSV: "import"
        case .void: "void"
        case .refund: "refund"
        case .export: "export"
        case .stats: "stats"
        case .verify: "verify"
        case .reload: "reload"
        case .skuList: "sku_list"
        case .auditVerify: "audit_verify"
        case .tokenNew: "token_new"
        case .jobs: "jobs"
        case .wait: "wait"
        case .supplierList: "supplier_list"
        case .supplierShow: "supplier_show"
        case .supplierMap: "supplier_map"
        case .supplierUnmap: "supplier_unmap"
        case .supplierPause: "supplier_pause"
        case .supplierResume: "supplier_resume"
        case .supplierSync: "supplier_sync"
        case .supplierReconcile: "supplier_reconcile"
        case .skuSource: "sku_source"
        case .upstreamFailed: "upstream_failed"
        case .upstreamRetry: "upstream_retry"
        case .risk: "risk"
        case .riskBlock: "risk_block"
        case .riskUnblock: "risk_unblock"
        case .activate: "activate"
        case .riskList: "risk_list"
        case .riskTest: "risk_test"
        case .auditReveals: "audit_reveals"
        case .reviewList: "review_list"
        case .reviewApprove: "review_approve"
        case .reviewDeny: "review_deny"
        case .deliver: "deliver"
        case .campaignSet: "campaign_set"
        case .campaignList: "campaign_list"
        case .couponAdd: "coupon_add"
        case .couponList: "coupon_list"
        case .distributorSet: "distributor_set"
        case .distributorList: "distributor_list"
        case .distributorStatement: "distributor_statement"
        case .reconcilePayments: "reconcile_payments"
        case .report: "report"
        case .caseOpen: "case_open"
        case .caseList: "case_list"
        case .webhookList: "webhook_list"
        case .webhookReplay: "webhook_replay"
        case .caseResolve: "case_resolve"
        }
    }

    /// The operation whose JSON name is the `count` bytes at `p`. The first byte picks
    /// the candidates (no `allCases` array is built per request), then the bytes are
    /// compared.
    static func named(_ p: UnsafeRawPointer, count: Int) -> Operation? {
        guard count > 0 else { return nil }
        func pick(_ a: Operation, _ b: Operation? = nil, _ c: Operation? = nil, _ d: Operation? = nil) -> Operation? {
            if a.wireName.matches(p, count: count) { return a }
            if let b, b.wireName.matches(p, count: count) { return b }
            if let c, c.wireName.matches(p, count: count) { return c }
            if let d, d.wireName.matches(p, count: count) { return d }
            return nil
        }
        // Operator operations only (never on the storefront's hot path).
        func pickAny(_ candidates: [Operation]) -> Operation? {
            candidates.first { $0.wireName.matches(p, count: count) }
        }
        switch p.load(as: UInt8.self) {
        case UInt8(ascii: "h"): return pick(.hello)
        case UInt8(ascii: "p"): return pick(.ping)
        case UInt8(ascii: "r"):
            return pick(.reserve, .release, .refund, .risk) ?? pickAny([.reload, .riskBlock, .riskUnblock, .riskList, .riskTest, .auditReveals, .reviewList, .reviewApprove, .reviewDeny, .reconcilePayments, .report])
        case UInt8(ascii: "c"): return pick(.commit) ?? pickAny([.campaignSet, .campaignList, .couponAdd, .couponList, .caseOpen, .caseList, .caseResolve])
        case UInt8(ascii: "i"): return pick(.issue, .importCSV)
        case UInt8(ascii: "o"): return pick(.order)
        case UInt8(ascii: "e"): return pick(.entitlements, .export)
        case UInt8(ascii: "s"):
            return pick(.stock, .skuSet, .stats, .skuList) ?? pickAny([.supplierList, .supplierShow, .supplierMap,
                .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource])
        case UInt8(ascii: "u"): return pick(.upstreamFailed, .upstreamRetry)
        case UInt8(ascii: "w"): return pick(.wait) ?? pickAny([.webhookList, .webhookReplay])
        case UInt8(ascii: "a"): return pick(.activate, .auditVerify, .auditReveals)
        case UInt8(ascii: "t"): return pick(.tokenNew)
        case UInt8(ascii: "d"): return pick(.deliver) ?? pickAny([.distributorSet, .distributorList, .distributorStatement])
        case UInt8(ascii: "j"): return pick(.jobs)
        case UInt8(ascii: "v"): return pick(.void, .verify)
        default: return nil
        }
    }

    /// All JSON names, for error messages that tell a client what it could have sent.
    static let namesList: String = allCases.map(\.name).joined(separator: ", ")
}

extension ReplyBody {
    /// The shape of this body.
    var kind: ReplyKind {
        switch self {
        case .empty: .empty
        case .hello: .hello
        case .order: .order
        case .codes: .codes
        case .stock: .stock
        case .risk: .risk
        case .fields: .fields
        }
    }
}
