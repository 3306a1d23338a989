import KamiCore
import XCTest

@testable import KamiRisk

final class RulesFileTests: XCTestCase {
    func testParsesEveryKindWithDefaults() throws {
        let rules = try RulesFile.parse("""
            # a comment
            thresholds challenge=30 review=60 deny=90
            challenge_ttl 5m
            rule ip_burst rate on=reserve,issue key=ip rate=5/s burst=10 score=100   # trailing comment
            rule daily quota key=user,sku max=3 window=24h score=100 reason=daily_cap
            rule accounts distinct key=device count=user max=3 window=1h score=100
            rule hoard holds key=net max=20 score=100
            rule fresh attribute when=account_age_days<1 score=30 mode=shadow
            rule blocked list list=block action=deny
            list block ip 203.0.113.0/24
            list allow user vip-1
            """, file: "r.rules")
        XCTAssertEqual(rules.thresholds, Thresholds(challenge: 30, review: 60, deny: 90))
        XCTAssertEqual(rules.challengeTTLMs, 300_000)
        XCTAssertEqual(rules.rules.map(\.name), ["ip_burst", "daily", "accounts", "hoard", "fresh", "blocked"])
        XCTAssertEqual(rules.rules[0].kind, .rate(perSecond: 5, burst: 10))
        XCTAssertEqual(rules.rules[0].events, ["reserve", "issue"])
        XCTAssertEqual(rules.rules[0].origin, "r.rules:4")
        XCTAssertEqual(rules.rules[1].kind, .quota(max: 3, windowMs: 86_400_000))
        XCTAssertEqual(rules.rules[1].reason, "daily_cap")
        XCTAssertEqual(rules.rules[1].key, [.user, .sku])
        XCTAssertEqual(rules.rules[2].kind, .distinct(count: .user, max: 3, windowMs: 3_600_000))
        XCTAssertEqual(rules.rules[2].reason, "velocity")
        XCTAssertEqual(rules.rules[3].events, ["reserve"], "holds rules look at reserve unless told")
        XCTAssertTrue(rules.rules[4].shadow)
        XCTAssertEqual(rules.rules[5].action, .deny)
        XCTAssertNil(rules.rules[5].events)
        XCTAssertEqual(rules.entries.map(\.description), ["block ip 203.0.113.0/24", "allow user vip-1"])
    }

    func testEveryErrorNamesFileAndLine() {
        let cases: [(String, String)] = [
            ("rule a rate key=ip rate=5/s", "needs score= or action="),
            ("rule a rate key=ip rate=5/x score=1", "rate must be N/s"),
            ("rule a rate key=ip rate=5/s score=1 rat=3", "unknown key \"rat\""),
            ("rule a quota key=user max=3 score=1", "quota needs window="),
            ("rule a quota key=user max=3 window=3y score=1", "window must be a duration"),
            ("rule a distinct key=device count=user max=99 window=1h score=1", "max must be a whole number in 1...15"),
            ("rule a distinct key=user count=user max=3 window=1h score=1", "cannot be part of key="),
            ("rule a rate key=ipv9 rate=1/s score=1", "unknown signal \"ipv9\""),
            ("rule a attribute when=age<1 score=1", "unknown attribute \"age\""),
            ("rule a attribute when=units~1 score=1", "needs a comparison"),
            ("rule a list list=grey score=1", "list must be block or allow"),
            ("rule a bogus score=1", "unknown kind \"bogus\""),
            ("rule a rate key=ip rate=1/s score=1 score=2", "score given twice"),
            ("rule a rate key=ip rate=1/s action=maybe", "action must be"),
            ("rule bad/name rate key=ip rate=1/s score=1", "rule name"),
            ("thresholds challenge=80 review=60 deny=90", "thresholds must rise"),
            ("list block ip 999.1.1.1", "is not an IP address or CIDR"),
            ("list grey user bob", "list must be block or allow"),
            ("frobnicate", "unknown statement"),
        ]
        for (line, expected) in cases {
            let text = "# header\n\n" + line
            XCTAssertThrowsError(try RulesFile.parse(text, file: "x.rules"), line) { error in
                let error = error as! RulesFileError
                XCTAssertEqual(error.location, "x.rules:3", line)
                XCTAssertTrue(error.message.contains(expected), "\(line): \(error.message)")
            }
        }
        XCTAssertThrowsError(try RulesFile.parse("rule a rate key=ip rate=1/s score=1\nrule a rate key=ip rate=1/s score=1")) {
            XCTAssertEqual(($0 as! RulesFileError).description, "rules:2: rule a is defined twice")
        }
    }

    func testLoadReadsListFilesBesideItAndNamesTheirLines() throws {
        let folder = NSTemporaryDirectory() + "risk-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "dev-1\n# comment\n\ndev-2\n".write(toFile: folder + "/devices.txt", atomically: true, encoding: .utf8)
        try "list block device file=devices.txt\n".write(toFile: folder + "/r.rules", atomically: true, encoding: .utf8)
        let rules = try RulesFile.load(path: folder + "/r.rules")
        XCTAssertEqual(rules.entries.map(\.value), ["dev-1", "dev-2"])
        try "10.0.0.1\nnot-an-ip\n".write(toFile: folder + "/ips.txt", atomically: true, encoding: .utf8)
        try "list block ip file=ips.txt\n".write(toFile: folder + "/r.rules", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RulesFile.load(path: folder + "/r.rules")) {
            XCTAssertEqual(($0 as! RulesFileError).location, "ips.txt:2")
        }
        XCTAssertThrowsError(try RulesFile.load(path: folder + "/missing.rules")) {
            XCTAssertTrue(($0 as! RulesFileError).description.contains("missing.rules: cannot open"))
        }
    }

    func testExampleRulesFileInConfigParses() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/risk.rules").path
        let rules = try RulesFile.load(path: path)
        XCTAssertGreaterThanOrEqual(rules.rules.count, 20, "the example is the benchmark's realistic file")
    }

    func testAddressesAndNetworks() {
        XCTAssertEqual(IPAddress("192.168.1.77")?.network, IPAddress("192.168.1.0")?.bytes)
        XCTAssertNil(IPAddress("192.168.1"))
        XCTAssertNil(IPAddress("01.2.3.4"))
        XCTAssertEqual(IPAddress("2001:db8::1")?.network, IPAddress("2001:db8::")?.bytes)
        XCTAssertEqual(IPAddress("::ffff:10.0.0.1")?.bytes, IPAddress("10.0.0.1")?.bytes)
        XCTAssertNil(IPAddress("2001:db8:::1"))
        XCTAssertTrue(CIDR("10.0.0.0/8")!.contains(IPAddress("10.200.3.4")!))
        XCTAssertFalse(CIDR("10.0.0.0/8")!.contains(IPAddress("11.0.0.1")!))
        XCTAssertTrue(CIDR("2001:db8::/32")!.contains(IPAddress("2001:db8:ffff::9")!))
        XCTAssertFalse(CIDR("2001:db8::/32")!.contains(IPAddress("10.0.0.1")!))
        XCTAssertNil(CIDR("10.0.0.0/33"))
    }
}
