import Foundation
import KamiCore
import KamiProtocol
import KamiXLSX
import XCTest

/// Money through a live kamid: a campaign whose budget covers exactly N orders in a flash
/// sale over 64 connections, coupons generated and raced for, all through kamictl and the
/// storefront protocol (docs/money.md).
final class MoneyDaemonTests: XCTestCase {
    func testAFlashSaleCampaignGivesExactlyItsBudgetAndACouponIsUsedOnce() throws {
        let directory = NSTemporaryDirectory() + "kamid-money-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var kamid = try Kamid(directory: directory + "/data", arguments: [])
        try kamid.stock(sku: "vip", count: 400)
        XCTAssertEqual(try kamid.kamictl(["sku", "set", "vip", "--price", "1000"]).status, 0)
        // 300 off: 15,000 is exactly 50 discounted orders.
        let set = try kamid.kamictl(["campaign", "set", "618", "--sku", "vip", "--discount", "300", "--to", "+1h",
                                     "--budget", "15000"])
        XCTAssertEqual(set.status, 0, set.output)
        XCTAssertEqual(set.output, "campaign 618 set: budget 15000 cents, 0 given away so far\n")
        XCTAssertEqual(try kamid.kamictl(["campaign", "set", "bad", "--sku", "vip", "--to", "+1h", "--budget", "1"]).status, 2,
                       "a price or a discount")
        XCTAssertNotEqual(try kamid.kamictl(["campaign", "set", "x", "--sku", "nope", "--discount", "1", "--to", "+1h",
                                             "--budget", "1"]).status, 0)

        let port = kamid.port
        let token = kamid.token
        let outcomes = Locked<[String: Int]>([:])
        let group = DispatchGroup()
        for connection in 0..<64 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                guard let client = try? RawClient(port: port),
                      client.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else { return }
                for n in 0..<3 {
                    let reply = client.call(#""id":\#(n + 1),"op":"issue","order":"f\#(connection)-\#(n)","user":"u\#(connection)-\#(n)","sku":"vip","qty":1,"payment_ref":"p","campaign":"618","channel":"app""#)
                    let key = reply?.order?.state == .committed ? "ok" : reply?.error?.code.rawValue ?? "none"
                    outcomes.withLock { $0[key, default: 0] += 1 }
                }
            }
        }
        group.wait()
        XCTAssertEqual(outcomes.withLock { $0 }, ["ok": 50, "LIMIT_REACHED": 142], "exactly the budget's 50 orders")
        let list = try kamid.kamictl(["campaign", "list"])
        XCTAssertTrue(list.output.contains("618  vip      -       300   15000  15000      50"), list.output)

        // Coupons: generated into a file, then 8 buyers race for one code.
        let generated = try kamid.kamictl(["coupon", "add", "welcome", "--discount", "200", "--per-user", "1", "--generate", "5",
                                           "--out", "codes.txt"], directory: directory)
        XCTAssertEqual(generated.status, 0, generated.output)
        XCTAssertTrue(generated.output.hasPrefix("batch welcome: 5 of 5 codes added\n"), generated.output)
        let codes = try String(contentsOfFile: directory + "/codes.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(codes.count, 5)
        XCTAssertTrue(codes.allSatisfy { $0.count == 12 })
        let winners = Locked<Int>(0)
        let racers = DispatchGroup()
        for racer in 0..<8 {
            racers.enter()
            Thread.detachNewThread {
                defer { racers.leave() }
                guard let client = try? RawClient(port: port),
                      client.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else { return }
                let reply = client.call(#""id":1,"op":"issue","order":"c\#(racer)","user":"c\#(racer)","sku":"vip","qty":1,"payment_ref":"p","coupon":"\#(codes[0])""#)
                if reply?.order?.state == .committed { winners.withLock { $0 += 1 } }
            }
        }
        racers.wait()
        XCTAssertEqual(winners.withLock { $0 }, 1, "a coupon is used once")
        let file = directory + "/mine.txt"
        try "\u{FEFF}OWN-1\nOWN-2\n\nOWN-1\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertTrue(try kamid.kamictl(["coupon", "add", "own", "--discount", "100", "--file", file]).output
                        .hasPrefix("batch own: 2 of 3 codes added"))
        XCTAssertTrue(try kamid.kamictl(["coupon", "list"]).output.contains("welcome       200         1      5     1"))
        XCTAssertEqual(try kamid.violations(), [])

        // A distributor: 5% (10% on vip), a referred order, its refund, the statement.
        XCTAssertEqual(try kamid.kamictl(["distributor", "set", "d7", "--rate", "5%"]).output, "distributor d7 set: default rate 500 bps\n")
        XCTAssertEqual(try kamid.kamictl(["distributor", "set", "d7", "--rate", "10.5%", "--sku", "vip"]).status, 0)
        XCTAssertEqual(try kamid.kamictl(["distributor", "set", "d7", "--rate", "abc"]).status, 2)
        let shop = try kamid.storefront()
        XCTAssertEqual(shop.call(#""id":1,"op":"issue","order":"ref-1","user":"r1","sku":"vip","qty":2,"payment_ref":"p","distributor":"d7""#)?.order?.state,
                       .committed)
        XCTAssertEqual(shop.call(#""id":2,"op":"issue","order":"ref-2","user":"r2","sku":"vip","qty":1,"payment_ref":"p","distributor":"d7","amount_cents":800"#)?.order?.state,
                       .committed)
        XCTAssertEqual(try kamid.kamictl(["refund", "ref-2"]).status, 0)
        let statement = try kamid.kamictl(["distributor", "statement", "d7", "--from", "0"])
        XCTAssertEqual(statement.output, "distributor d7: 2 orders, commission 294 cents, reversed by 1 refunds 84, net 210; owed in all 210\n",
                       "10.5% of 2,000 and of 800")
        let distributors = try kamid.kamictl(["distributor", "list"])
        XCTAssertTrue(distributors.output.contains("d7") && distributors.output.contains("d7                500  vip:1050    210"), distributors.output)
        XCTAssertEqual(try kamid.violations(), [])

        // A payment bill: ref-1 paid as booked, a payment for an order kamid never had.
        try "payment_ref,amount,order\nTX-1,20.00,ref-1\nX-9,5.00,nobody\n".write(toFile: directory + "/bill.csv", atomically: true,
                                                                                 encoding: .utf8)
        let reconciled = try kamid.kamictl(["reconcile", "payments", "bill.csv", "--format", "generic"], directory: directory)
        XCTAssertEqual(reconciled.status, 4, reconciled.output)
        XCTAssertTrue(reconciled.output.hasPrefix("generic bill: 2 payments, 1 matched, 1 mismatches\n"), reconciled.output)
        XCTAssertTrue(reconciled.output.contains("paid_not_delivered      -  X-9          no such order  paid 500     3"), reconciled.output)

        // Reports: the flash sale's 50 orders came through the app channel at 700 with 300 off.
        let report = try kamid.kamictl(["report", "sales", "--by", "channel", "--csv"])
        XCTAssertEqual(report.status, 0, report.output)
        XCTAssertTrue(report.output.hasPrefix("key,orders,paid_cents,subsidy_cents,refunded_cents,cost_cents,commission_cents,profit_cents\n"),
                      report.output)
        XCTAssertTrue(report.output.contains("\napp,50,35000,15000,0,0,0,35000\n"), report.output)
        XCTAssertEqual(try kamid.kamictl(["report", "sales", "--by", "year"]).status, 2)
        // The same report as an Excel workbook, figures as numbers.
        let workbook = try kamid.kamictl(["report", "sales", "--by", "channel", "--xlsx", "sales.xlsx"], directory: directory)
        XCTAssertEqual(workbook.output, "wrote \(report.output.split(separator: "\n").count - 1) rows of the sales report to sales.xlsx\n")
        let sheet = try XLSXWorkbook(path: directory + "/sales.xlsx")
        XCTAssertEqual(sheet.sheets.map(\.name), ["sales"])
        let reader = try sheet.rows()
        var sheetRows: [[XLSXCell]] = []
        while let row = try reader.next() { sheetRows.append(row.cells) }
        XCTAssertEqual(sheetRows.first?.map(\.text), ["key", "orders", "paid_cents", "subsidy_cents", "refunded_cents", "cost_cents",
                                                      "commission_cents", "profit_cents"])
        XCTAssertTrue(sheetRows.contains([XLSXCell(.string, "app")] + ["50", "35000", "15000", "0", "0", "0", "35000"].map { XLSXCell(.number, $0) }),
                      "\(sheetRows)")
        XCTAssertEqual(sheetRows.map { $0.map(\.text).joined(separator: ",") }.joined(separator: "\n") + "\n", report.output,
                       "the workbook holds what --csv prints")
        XCTAssertEqual(try kamid.kamictl(["report", "sales", "--xlsx", "sales.csv"], directory: directory).status, 2)

        // After-sales: a code of ref-1 does not work; replaced from the pool.
        guard case .success(.order(let refOrder))? = try RawClient(unixPath: kamid.socketPath)
            .call(#""id":1,"op":"order","order":"ref-1""#)?.result, let badCode = refOrder.codes.first?.codeID else {
            return XCTFail("order ref-1")
        }
        let opened = try kamid.kamictl(["case", "open", "ref-1", "--reason", "invalid_code", "--code", String(badCode)])
        XCTAssertTrue(opened.output.hasPrefix("case 1 opened on order ref-1 (invalid_code, code from pool)"), opened.output)
        XCTAssertTrue(try kamid.kamictl(["case", "list"]).output.contains("cases by SKU: vip 1"))
        XCTAssertEqual(try kamid.kamictl(["case", "replace", "1"]).output, "case 1 replaced\n")
        XCTAssertEqual(try kamid.kamictl(["case", "list"]).output, "no cases\ncases by SKU: vip 1\ncases by source: pool 1\n")
        XCTAssertNotEqual(try kamid.kamictl(["case", "replace", "1"]).status, 0, "resolved once")
        guard case .success(.order(let after))? = try kamid.storefront().call(#""id":2,"op":"order","order":"ref-1","user":"r1""#)?.result else {
            return XCTFail("order ref-1 after")
        }
        XCTAssertFalse(after.codes.contains { $0.codeID == badCode })
        XCTAssertEqual(after.codes.count, 2)
        // The storefront opens a case for its own buyer; a stranger's attempt is NOT_FOUND.
        let storefront = try kamid.storefront()
        XCTAssertEqual(storefront.call(#""id":3,"op":"case_open","order":"ref-1","user":"someone","kind":"other""#)?.error?.code, .notFound)
        guard case .success(.fields(let caseFields))? = storefront.call(#""id":4,"op":"case_open","order":"ref-1","user":"r1","kind":"not_received","note":"never arrived""#)?.result else {
            return XCTFail("storefront case_open")
        }
        XCTAssertEqual(caseFields.first { $0.0 == "case" }?.1, .int(2))
        XCTAssertEqual(storefront.call(#""id":5,"op":"case_list""#)?.error?.code, .unauthorized, "listing is the operator's")
        XCTAssertEqual(try kamid.kamictl(["case", "reject", "2"]).output, "case 2 rejected\n")
        XCTAssertEqual(try kamid.violations(), [])

        // The spend is rebuilt from the orders after a restart.
        XCTAssertEqual(kamid.stop(), 0)
        kamid = try Kamid(directory: directory + "/data", arguments: [])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let listed = try kamid.kamictl(["campaign", "list"])
        XCTAssertTrue(listed.output.contains("15000  15000      50"), "\(listed.status) \(listed.output) \(kamid.log.suffix(5))")
        let again = try kamid.storefront().call(#""id":1,"op":"issue","order":"after","user":"after","sku":"vip","qty":1,"payment_ref":"p","campaign":"618""#)
        XCTAssertEqual(again?.error?.code, .limitReached)
        XCTAssertEqual(try kamid.violations(), [])
    }
}
