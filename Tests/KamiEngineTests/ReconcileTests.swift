import Foundation
import KamiCore
import KamiEngine
import KamiLedger
import XCTest

/// Payment reconciliation against bills in the providers' published layouts: Alipay's
/// 业务明细 in GBK with its `#` lines and a WeChat Pay 交易账单 with backticks and totals.
final class ReconcileTests: XCTestCase {
    private func write(_ text: String, to path: String, gbk: Bool) throws {
        try text.write(toFile: path + ".utf8", atomically: true, encoding: .utf8)
        guard gbk else { return try FileManager.default.moveItem(atPath: path + ".utf8", toPath: path) }
        let iconv = Process()
        iconv.executableURL = URL(fileURLWithPath: "/usr/bin/iconv")
        iconv.arguments = ["-f", "UTF-8", "-t", "GBK", "-o", path, path + ".utf8"]
        try iconv.run()
        iconv.waitUntilExit()
        XCTAssertEqual(iconv.terminationStatus, 0)
    }

    /// Orders o1 (990, paid T1), o2 (990, paid T2), o3 (990, refunded, paid T3), o4 (990,
    /// paid T4, never in a bill), o5 (a hold, never paid).
    private func shop() throws -> Harness {
        let h = Harness()
        h.stockSku("vip", count: 10)
        for n in 1...4 {
            _ = try h.engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "T\(n)").get()
        }
        _ = try h.engine.storefront.refundSync(order: "o3").get()
        _ = try h.engine.storefront.reserveSync(order: "o5", user: "u5", sku: "vip").get()
        return h
    }

    func testAnAlipayBillInGBKIsMatchedAndEveryKindOfMismatchReported() throws {
        let h = try shop()
        let path = h.directory + "/alipay.csv"
        try write("""
            #支付宝业务明细查询
            #账号：[20880000000000000156]
            #起始日期：[2026年12月01日 00:00:00]   终止日期：[2026年12月02日 00:00:00]
            #-----------------------------------------业务明细列表----------------------------------------
            支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
            T1\t,o1\t,交易,VIP,2026-12-01 10:00:00,2026-12-01 10:00:05,,,,,buyer1,9.90,9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.06,0.00,
            T2\t,o2\t,交易,VIP,2026-12-01 10:01:00,2026-12-01 10:01:05,,,,,buyer2,9.00,9.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.05,0.00,
            T3\t,o3\t,交易,VIP,2026-12-01 10:02:00,2026-12-01 10:02:05,,,,,buyer3,9.90,9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.06,0.00,
            T3\t,o3\t,退款,VIP,2026-12-01 11:00:00,2026-12-01 11:00:05,,,,,buyer3,-9.90,-9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,R3,0.06,0.00,
            T9\t,o9\t,交易,VIP,2026-12-01 12:00:00,2026-12-01 12:00:05,,,,,buyer9,9.90,9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.06,0.00,
            T1\t,o1\t,交易,VIP,2026-12-01 10:00:00,2026-12-01 10:00:05,,,,,buyer1,9.90,9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.06,0.00,
            #-----------------------------------------业务明细列表结束------------------------------------
            #交易合计：5笔，商家实收共48.50元
            #退款合计：1笔，商家实收共-9.90元
            #导出时间：[2026年12月02日 09:00:00]

            """, to: path, gbk: true)
        let report = try h.engine.admin.reconcilePayments(path: path, format: nil, sinceMs: nil, untilMs: nil)
        XCTAssertEqual(report.format, .alipay)
        XCTAssertEqual(report.payments, 6)
        XCTAssertEqual(report.matched, 2, "o1 and o3")
        let found = Set(report.mismatches.map { "\($0.kind.rawValue) \($0.order ?? "-") \($0.paymentRef)" })
        XCTAssertEqual(found, ["amount_mismatch o2 T2", "paid_not_delivered - T9", "duplicate o1 T1"])
        XCTAssertEqual(report.mismatches.first { $0.kind == .amountMismatch }?.here, "990")
        XCTAssertEqual(report.mismatches.first { $0.kind == .amountMismatch }?.there, "900")
        // With the period named, o4 (delivered, in no bill) is reported too.
        let windowed = try h.engine.admin.reconcilePayments(path: path, format: .alipay, sinceMs: 0, untilMs: Int64.max)
        XCTAssertTrue(windowed.mismatches.contains { $0.kind == .deliveredNotPaid && $0.order == "o4" })
        XCTAssertFalse(windowed.mismatches.contains { $0.order == "o5" }, "a hold was never delivered")
        XCTAssertThrowsError(try h.engine.admin.reconcilePayments(path: path, format: .wechat, sinceMs: nil, untilMs: nil)) { error in
            XCTAssertTrue((error as? KamiError)?.message.contains("no wechat bill header") ?? false, "\(error)")
        }
        h.assertInvariants()
    }

    func testAWeChatBillWithBackticksAndTotals() throws {
        let h = try shop()
        let path = h.directory + "/wechat.csv"
        try write("""
            \u{FEFF}交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
            `2026-12-01 10:00:00,`wx123,`1900000001,`0,`,`W1,`o1,`oUser1,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`VIP,`,`0.06000,`0.60%,`9.90,`0.00,`
            `2026-12-01 10:02:00,`wx123,`1900000001,`0,`,`W3,`o3,`oUser3,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`VIP,`,`0.06000,`0.60%,`9.90,`0.00,`
            `2026-12-01 10:03:00,`wx123,`1900000001,`0,`,`W4,`o4,`oUser4,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`VIP,`,`0.06000,`0.60%,`9.90,`0.00,`
            `2026-12-01 10:04:00,`wx123,`1900000001,`0,`,`W5,`o5,`oUser5,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`VIP,`,`0.06000,`0.60%,`9.90,`0.00,`
            总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
            `4,`39.60,`0.00,`0.00,`0.24000,`39.60,`0.00

            """, to: path, gbk: false)
        // The storefront's payment_ref is our own order id here (T1...); WeChat's merchant
        // order number is the order id: matched by it.
        let report = try h.engine.admin.reconcilePayments(path: path, format: nil, sinceMs: nil, untilMs: nil)
        XCTAssertEqual(report.format, .wechat)
        XCTAssertEqual(report.payments, 4, "the totals are not payments")
        XCTAssertEqual(report.matched, 3, "o1, o3 (its payment; its refund disagrees) and o4")
        let found = Set(report.mismatches.map { "\($0.kind.rawValue) \($0.order ?? "-")" })
        XCTAssertEqual(found, ["paid_not_delivered o5", "refund_mismatch o3"], "o5 is an unpaid hold; o3 refunded but the bill shows no refund")
    }

    func testABrokenBillIsRefusedNamingTheLine() throws {
        let h = try shop()
        let path = h.directory + "/generic.csv"
        try write("payment_ref,amount,order\nT1,9.90,o1\nT2,nine,o2\n", to: path, gbk: false)
        XCTAssertThrowsError(try h.engine.admin.reconcilePayments(path: path, format: nil, sinceMs: nil, untilMs: nil)) { error in
            XCTAssertTrue((error as? KamiError)?.message.hasPrefix("line 3: amount \"nine\"") ?? false, "\(error)")
        }
        try write("payment_ref,amount_cents\nT1,990\nT2,990\n", to: path + "2", gbk: false)
        let report = try h.engine.admin.reconcilePayments(path: path + "2", format: .generic, sinceMs: nil, untilMs: nil)
        XCTAssertEqual(report.matched, 2, "payment_ref is the order's payment reference; amount_cents as given")
        XCTAssertEqual(report.mismatches, [])
    }

    func testHugeAmountsAndImpossibleTimesAreRefusedNotACrash() throws {
        let h = try shop()
        let path = h.directory + "/evil.csv"
        try write("payment_ref,amount_cents,time\nT1,-9223372036854775808,2026-12-01 10:00:00\n", to: path, gbk: false)
        XCTAssertThrowsError(try h.engine.admin.reconcilePayments(path: path, format: nil, sinceMs: nil, untilMs: nil)) { error in
            XCTAssertTrue((error as? KamiError)?.message.hasPrefix("line 2: amount") ?? false, "\(error)")
        }
        try write("payment_ref,amount,time\nT1,9.90,99999999999999999-01-01 00:00:00\nT2,9.90,2026-12-01 99999999999999:00\n",
                  to: path + "2", gbk: false)
        let report = try h.engine.admin.reconcilePayments(path: path + "2", format: nil, sinceMs: nil, untilMs: nil)
        XCTAssertEqual(report.payments, 2, "an impossible time is no time, not a crash")
    }
}
