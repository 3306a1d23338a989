public import KamiCore

/// One payment in a provider's bill: a sale or a refund, of an amount, with the provider's
/// transaction id and the merchant's order number.
public struct PaymentRecord: Sendable, Hashable {
    public var line: Int
    public var transactionID: String
    public var merchantOrderNo: String
    public var amountCents: Int64
    public var isRefund: Bool
    /// When it happened, Unix ms (the bill's local time read as China Standard Time), if given.
    public var atMs: Int64?
}

/// A payment provider's bill: Alipay's 业务明细 and WeChat Pay's 交易账单 as merchants download
/// them (GBK or UTF-8, `#` comment and summary lines, fields wrapped in tabs, backticks or
/// `="…"`), or a generic CSV with a documented column mapping (docs/money.md).
public enum PaymentBill {
    public enum Format: String, Sendable, CaseIterable {
        case alipay, wechat, generic
    }

    /// The payments of a bill read as records (`CSVTable`). The format is found from the
    /// header when not given. Errors name the line and what is wrong.
    public static func parse(_ records: [(line: Int, fields: [String])], format given: Format? = nil) throws(KamiError)
        -> (format: Format, payments: [PaymentRecord])
    {
        // The header: the first record naming the columns this format needs.
        for (index, record) in records.enumerated() {
            let names = record.fields.map(clean)
            let format: Format
            if names.contains("支付宝交易号") { format = .alipay } else if names.contains("微信订单号") { format = .wechat } else if
                names.contains("payment_ref") { format = .generic } else { continue }
            if let given, given != format { continue }
            let rows = records[(index + 1)...]
            return (format, try payments(rows, names: names, format: format, headerLine: record.line))
        }
        throw KamiError(.badRequest, "no \(given.map { "\($0.rawValue) " } ?? "")bill header found: expected a row naming "
            + "支付宝交易号 (Alipay), 微信订单号 (WeChat Pay) or payment_ref (generic)")
    }

    private static func payments(_ rows: ArraySlice<(line: Int, fields: [String])>, names: [String], format: Format, headerLine: Int)
        throws(KamiError) -> [PaymentRecord]
    {
        func column(_ candidates: [String], required: Bool = true) throws(KamiError) -> Int? {
            for candidate in candidates { if let index = names.firstIndex(of: candidate) { return index } }
            guard !required else {
                throw KamiError(.badRequest, "line \(headerLine): the \(format.rawValue) bill has no column \(candidates[0])")
            }
            return nil
        }
        let transaction: Int, merchant: Int, amount: Int
        var kind: Int?, refund: Int?, time: Int?, status: Int?
        var amountIsCents = false
        switch format {
        case .alipay:
            transaction = try column(["支付宝交易号"])!
            merchant = try column(["商户订单号"])!
            amount = try column(["订单金额（元）", "订单金额(元)"])!
            kind = try column(["业务类型"], required: false)
            time = try column(["完成时间", "创建时间"], required: false)
        case .wechat:
            transaction = try column(["微信订单号"])!
            merchant = try column(["商户订单号"])!
            amount = try column(["订单金额", "应结订单金额"])!
            status = try column(["交易状态"], required: false)
            refund = try column(["退款金额"], required: false)
            time = try column(["交易时间"], required: false)
        case .generic:
            transaction = try column(["payment_ref"])!
            merchant = try column(["order"], required: false) ?? transaction
            if let cents = try column(["amount_cents"], required: false) {
                amount = cents
                amountIsCents = true
            } else {
                amount = try column(["amount"])!
            }
            kind = try column(["type"], required: false)
            time = try column(["time"], required: false)
        }
        var result: [PaymentRecord] = []
        for row in rows {
            let fields = row.fields.map(clean)
            // Comment and summary lines: Alipay's `#…` lines, WeChat's totals after its rows.
            if fields.first?.hasPrefix("#") == true || fields.allSatisfy(\.isEmpty) { continue }
            if fields.first == "总交易单数" { break }
            guard fields.count > max(transaction, merchant, amount) else {
                throw KamiError(.badRequest, "line \(row.line): \(fields.count) fields, the header has \(names.count)")
            }
            var isRefund = false
            if let kind, kind < fields.count { isRefund = fields[kind].contains("退款") || fields[kind].lowercased() == "refund" }
            if let status, status < fields.count, fields[status] == "REFUND" { isRefund = true }
            var amountText = fields[amount]
            if isRefund, let refund, refund < fields.count, !fields[refund].isEmpty { amountText = fields[refund] }
            guard let cents = amountIsCents ? Int64(amountText) : yuanToCents(amountText),
                  cents >= -Limits.amountCentsMax && cents <= Limits.amountCentsMax else {
                throw KamiError(.badRequest, "line \(row.line): amount \"\(amountText.prefix(32))\" is not a sum of money")
            }
            result.append(PaymentRecord(
                line: row.line, transactionID: fields[transaction], merchantOrderNo: fields[merchant], amountCents: abs(cents),
                isRefund: isRefund, atMs: time.flatMap { $0 < fields.count ? chinaTime(fields[$0]) : nil }))
        }
        return result
    }

    /// A field without what providers wrap them in for Excel: spaces and tabs, a leading
    /// backtick, `="…"`, a currency sign.
    static func clean(_ field: String) -> String {
        var text = Substring(field)
        while let first = text.first, first == " " || first == "\t" || first == "`" || first == "¥" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        if text.hasPrefix("=\""), text.hasSuffix("\""), text.count >= 3 { text = text.dropFirst(2).dropLast() }
        return String(text)
    }

    /// `12.3`, `12.30`, `-0.01` → cents; nil for anything else.
    static func yuanToCents(_ text: String) -> Int64? {
        var body = Substring(text.replacingComma())
        var sign: Int64 = 1
        if body.first == "-" { sign = -1; body = body.dropFirst() } else if body.first == "+" { body = body.dropFirst() }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].count <= 12, let whole = Int64(parts[0]) else { return nil }
        var cents: Int64 = 0
        if parts.count == 2 {
            guard (1...2).contains(parts[1].count), parts[1].allSatisfy(\.isNumber), let value = Int64(parts[1]) else { return nil }
            cents = parts[1].count == 1 ? value * 10 : value
        }
        return sign * (whole * 100 + cents)
    }

    /// `2026-12-01 10:00:00` in China Standard Time (UTC+8) → Unix ms; nil otherwise.
    static func chinaTime(_ text: String) -> Int64? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "-" || $0 == ":" || $0 == "/" || $0 == "T" })
        guard parts.count >= 5, let year = Int64(parts[0]), let month = Int64(parts[1]), let day = Int64(parts[2]),
              let hour = Int64(parts[3]), let minute = Int64(parts[4]), (1...12).contains(month), (1...31).contains(day),
              (1970...9999).contains(year), (0...23).contains(hour), (0...59).contains(minute) else { return nil }
        let second = parts.count > 5 ? Int64(parts[5]) ?? 0 : 0
        guard (0...60).contains(second) else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return ((days * 86_400 + hour * 3_600 + minute * 60 + second) - 8 * 3_600) * 1_000
    }
}

private extension String {
    /// Thousands separators out (`1,234.50`).
    func replacingComma() -> String { String(filter { $0 != "," }) }
}

/// One disagreement between a bill and kamid's orders.
public struct PaymentMismatch: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// The provider took the money; kamid has no delivered order for it.
        case paidNotDelivered = "paid_not_delivered"
        /// kamid delivered an order in the bill's period the provider never shows paid.
        case deliveredNotPaid = "delivered_not_paid"
        case amountMismatch = "amount_mismatch"
        /// A payment in the bill twice, or two payments for one order.
        case duplicate
        /// A refund in the bill for an order kamid did not refund, or the other way round.
        case refundMismatch = "refund_mismatch"
    }
    public var kind: Kind
    public var order: String?
    public var paymentRef: String
    /// kamid's side and the bill's side, as text.
    public var here: String
    public var there: String
    public var line: Int?
}

/// Matches a bill with kamid's orders: reports, never changes anything.
public enum PaymentReconciliation {
    /// `orders`: kamid's orders (id, state, payment reference, amount, created). An order
    /// matches a payment whose transaction id or merchant order number is its payment
    /// reference, or whose merchant order number is its order id. With `sinceMs` and
    /// `untilMs`, every order delivered in that period must be in the bill.
    public static func reconcile(
        _ payments: [PaymentRecord], orders: [(id: String, state: OrderState, paymentRef: String?, amountCents: Int64?, createdAtMs: Int64)],
        sinceMs: Int64?, untilMs: Int64?
    ) -> (matched: Int, mismatches: [PaymentMismatch]) {
        var byRef: [String: Int] = [:]
        var byID: [String: Int] = [:]
        for (index, order) in orders.enumerated() {
            if let ref = order.paymentRef { byRef[ref] = index }
            byID[order.id] = index
        }
        var mismatches: [PaymentMismatch] = []
        var matched = 0
        var seenTransactions: Set<String> = []
        var paidOrders: [Int: Int] = [:]
        var refundedOrders: Set<Int> = []
        for payment in payments {
            let index = byRef[payment.transactionID] ?? byRef[payment.merchantOrderNo] ?? byID[payment.merchantOrderNo]
            let ref = payment.transactionID
            if payment.isRefund {
                guard let index else {
                    mismatches.append(PaymentMismatch(kind: .refundMismatch, order: nil, paymentRef: ref, here: "no such order",
                                                      there: "refund \(payment.amountCents)", line: payment.line))
                    continue
                }
                refundedOrders.insert(index)
                if orders[index].state != .refunded && orders[index].state != .released && orders[index].state != .expired {
                    mismatches.append(PaymentMismatch(kind: .refundMismatch, order: orders[index].id, paymentRef: ref,
                                                      here: "\(orders[index].state)", there: "refund \(payment.amountCents)",
                                                      line: payment.line))
                }
                continue
            }
            guard seenTransactions.insert(ref).inserted else {
                mismatches.append(PaymentMismatch(kind: .duplicate, order: index.map { orders[$0].id }, paymentRef: ref,
                                                  here: "-", there: "payment listed twice", line: payment.line))
                continue
            }
            guard let index else {
                mismatches.append(PaymentMismatch(kind: .paidNotDelivered, order: nil, paymentRef: ref, here: "no such order",
                                                  there: "paid \(payment.amountCents)", line: payment.line))
                continue
            }
            let order = orders[index]
            if let first = paidOrders[index] {
                mismatches.append(PaymentMismatch(kind: .duplicate, order: order.id, paymentRef: ref,
                                                  here: "one order", there: "paid again (line \(first))", line: payment.line))
                continue
            }
            paidOrders[index] = payment.line
            if order.state != .committed && order.state != .refunded {
                mismatches.append(PaymentMismatch(kind: .paidNotDelivered, order: order.id, paymentRef: ref, here: "\(order.state)",
                                                  there: "paid \(payment.amountCents)", line: payment.line))
            } else if let amount = order.amountCents, amount != payment.amountCents {
                mismatches.append(PaymentMismatch(kind: .amountMismatch, order: order.id, paymentRef: ref, here: "\(amount)",
                                                  there: "\(payment.amountCents)", line: payment.line))
            } else {
                matched += 1
            }
        }
        // Only with a period the operator names: a shop paid through two providers has, in
        // each bill, only that provider's payments.
        if let since = sinceMs, let until = untilMs {
            for (index, order) in orders.enumerated()
            where (order.state == .committed || order.state == .refunded) && order.paymentRef != nil
                && order.createdAtMs >= since && order.createdAtMs < until && paidOrders[index] == nil {
                mismatches.append(PaymentMismatch(kind: .deliveredNotPaid, order: order.id, paymentRef: order.paymentRef ?? "",
                                                  here: "\(order.state) \(order.amountCents.map(String.init) ?? "-")",
                                                  there: "not in the bill", line: nil))
            }
        }
        for (index, order) in orders.enumerated() where order.state == .refunded && paidOrders[index] != nil && !refundedOrders.contains(index) {
            mismatches.append(PaymentMismatch(kind: .refundMismatch, order: order.id, paymentRef: order.paymentRef ?? "",
                                              here: "refunded", there: "paid, no refund", line: paidOrders[index]))
        }
        return (matched, mismatches)
    }
}
