import KamiCore
import XCTest

@testable import KamiRisk

final class RiskGateTests: XCTestCase {
    private func gate(_ text: String, limits: RiskLimits = RiskLimits(rateEntries: 1 << 12, distinctEntries: 1 << 12,
                                                                       sketchWidth: 1 << 12, holdEntries: 1 << 12))
        throws -> RiskGate
    {
        RiskGate(limits: limits, rules: try RulesFile.parse(text))
    }

    private func order(_ event: String = "issue", user: String, ip: String? = nil, device: String? = nil,
                       payment: String? = nil) -> RiskSignals {
        var signals = RiskSignals(event: event)
        signals.user = user
        signals.ip = ip
        signals.device = device
        signals.paymentAccount = payment
        signals.sku = "vip-month"
        return signals
    }

    func testRateLimitRefillsOverTime() throws {
        let gate = try gate("rule ip_burst rate key=ip rate=2/s burst=3 score=100")
        let signals = order(user: "u", ip: "10.0.0.1")
        let first = (0..<4).map { _ in gate.evaluate(signals, nowMs: 1_000).verdict.decision }
        XCTAssertEqual(first, [.allow, .allow, .allow, .deny])
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1_000).verdict.rules, ["ip_burst"])
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1_000).verdict.reason, "rate_limited")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1_500).verdict.decision, .allow, "half a second refills one token")
        XCTAssertEqual(gate.evaluate(order(user: "u", ip: "10.0.0.2"), nowMs: 1_000).verdict.decision, .allow,
                       "another IP has its own bucket")
    }

    func testNetworkKeyCountsABotnetInOneSlash24() throws {
        let gate = try gate("""
            rule per_ip rate key=ip rate=5/m burst=5 score=100
            rule per_net rate key=net rate=50/m burst=50 score=100
            """)
        var denied = 0
        for bot in 0..<200 {
            if gate.evaluate(order(user: "bot\(bot)", ip: "198.51.100.\(bot)"), nowMs: 0).verdict.decision == .deny { denied += 1 }
        }
        XCTAssertEqual(denied, 150, "each bot is under the per-IP limit; the /24 is not")
        XCTAssertEqual(gate.evaluate(order(user: "honest", ip: "198.51.101.9"), nowMs: 0).verdict.decision, .allow)
    }

    func testDistinctUsersPerDeviceAndPerPaymentAccount() throws {
        let gate = try gate("""
            rule device_accounts distinct key=device count=user max=3 window=1h score=100
            rule card_testing distinct key=payment count=user max=2 window=1h score=100
            """)
        let decisions = (0..<6).map { gate.evaluate(order(user: "acct\($0)", device: "phone-1"), nowMs: 0).verdict.decision }
        XCTAssertEqual(decisions, [.allow, .allow, .allow, .deny, .deny, .deny])
        XCTAssertEqual(gate.evaluate(order(user: "acct0", device: "phone-1"), nowMs: 0).verdict.decision, .deny,
                       "the device stays flagged for the window")
        XCTAssertEqual(gate.evaluate(order(user: "acct0", device: "phone-1"), nowMs: 3_600_001).verdict.decision, .allow,
                       "a new window starts over")
        XCTAssertEqual(gate.evaluate(order(user: "same", device: "phone-2"), nowMs: 0).verdict.decision, .allow)
        XCTAssertEqual(gate.evaluate(order(user: "same", device: "phone-2"), nowMs: 1).verdict.decision, .allow,
                       "one user again is not a second user")
        let card = (0..<4).map { gate.evaluate(order(user: "c\($0)", payment: "card-9"), nowMs: 0).verdict.decision }
        XCTAssertEqual(card, [.allow, .allow, .deny, .deny])
    }

    func testQuotaCountsOnlyAllowedEventsAndSlides() throws {
        let gate = try gate("rule daily quota key=user max=2 window=10s score=100")
        let signals = order(user: "u")
        XCTAssertEqual((0..<4).map { _ in gate.evaluate(signals, nowMs: 0).verdict.decision }, [.allow, .allow, .deny, .deny])
        // Half of the previous window still weighs: 2 * 0.5 = 1 < 2.
        XCTAssertEqual(gate.evaluate(signals, nowMs: 15_000).verdict.decision, .allow)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 15_000).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(order(user: "other"), nowMs: 0).verdict.decision, .allow)
    }

    func testHoldsCountUntilPaidReleasedOrExpired() throws {
        let gate = try gate("rule hoard holds key=user max=2 score=100")
        let signals = order("reserve", user: "h")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .allow)
        gate.holdPlaced(order: "o1", signals, deadlineMs: 10_000)
        gate.holdPlaced(order: "o2", signals, deadlineMs: 20_000)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(order("issue", user: "h"), nowMs: 0).verdict.decision, .allow, "paying is never held back")
        gate.holdEnded(order: "o1")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1).verdict.decision, .allow)
        gate.holdPlaced(order: "o3", signals, deadlineMs: 5_000)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 2).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 6_000).verdict.decision, .allow, "o3's deadline passed")
        // A review approved unpaid becomes an ordinary hold: its count ends at the new deadline.
        gate.holdPlaced(order: "o4", signals, deadlineMs: 600_000)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 6_001).verdict.decision, .deny)
        gate.holdRescheduled(order: "o4", deadlineMs: 8_000)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 7_500).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 9_500).verdict.decision, .allow, "o4's new deadline passed")
    }

    func testScoresAddUpToThresholdsAndChallengeTokensPass() throws {
        let gate = try gate("""
            thresholds challenge=30 review=60 deny=90
            rule new_account attribute when=account_age_days<1 score=35
            rule no_phone attribute when=phone_verified=false score=30
            rule big attribute when=amount_cents>=100000 score=30
            """)
        var signals = order(user: "n")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict, .allowed, "missing signals skip")
        signals.accountAgeDays = 0
        let challenged = gate.evaluate(signals, nowMs: 0).verdict
        XCTAssertEqual(challenged.decision, .challenge)
        XCTAssertEqual(challenged.reason, "suspicious_attributes")
        let token = try XCTUnwrap(challenged.challenge)
        signals.challengeToken = token
        let passed = gate.evaluate(signals, nowMs: 1)
        XCTAssertEqual(passed.verdict.decision, .allow)
        XCTAssertEqual(passed.verdict.reason, "challenge_passed")
        var other = signals
        other.user = "someone-else"
        XCTAssertEqual(gate.evaluate(other, nowMs: 1).verdict.decision, .challenge, "a token is bound to its user")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 600_001).verdict.decision, .challenge, "and expires")
        signals.challengeToken = "v1.99999999999.00"
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1).verdict.decision, .challenge, "a forged token is no token")
        signals.challengeToken = token
        signals.phoneVerified = false
        XCTAssertEqual(gate.evaluate(signals, nowMs: 1).verdict.decision, .review, "a token does not lift a review")
        signals.amountCents = 200_000
        let denied = gate.evaluate(signals, nowMs: 1).verdict
        XCTAssertEqual(denied.decision, .deny)
        XCTAssertEqual(denied.score, 95)
        XCTAssertEqual(denied.rules, ["new_account", "no_phone", "big"])
    }

    func testListsWithCIDRsAndAllowPrecedence() throws {
        let gate = try gate("""
            rule blocked list list=block action=deny
            rule trusted list list=allow action=allow
            rule fresh attribute when=account_age_days<1 score=500
            list block ip 203.0.113.0/24
            list allow user vip
            """)
        XCTAssertEqual(gate.evaluate(order(user: "x", ip: "203.0.113.77"), nowMs: 0).verdict.reason, "block_listed")
        XCTAssertEqual(gate.evaluate(order(user: "x", ip: "203.0.114.1"), nowMs: 0).verdict.decision, .allow)
        var vip = order(user: "vip")
        vip.accountAgeDays = 0
        XCTAssertEqual(gate.evaluate(vip, nowMs: 0).verdict.decision, .allow, "allow lists win over scores")
        vip.ip = "203.0.113.5"
        XCTAssertEqual(gate.evaluate(vip, nowMs: 0).verdict.decision, .deny, "but not over a block list's deny")
        gate.setStoredEntries([try ListEntry(list: "block", kind: .device, value: "emu-1"),
                               try ListEntry(list: "block", kind: .ip, value: "2001:db8::/48")])
        XCTAssertEqual(gate.evaluate(order(user: "y", device: "emu-1"), nowMs: 0).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(order(user: "y", ip: "2001:db8:0:5::1"), nowMs: 0).verdict.decision, .deny)
        XCTAssertEqual(gate.evaluate(order(user: "x", ip: "203.0.113.77"), nowMs: 0).verdict.decision, .deny,
                       "the file's entries stay beside the database's")
    }

    func testShadowRulesCountButDecideNothingAndDryRunsChangeNothing() throws {
        let gate = try gate("""
            rule strict rate key=user rate=1/m burst=1 score=100 mode=shadow
            rule loose rate key=user rate=1/m burst=3 score=100
            """)
        let signals = order(user: "s")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).shadowRules, [])
        let second = gate.evaluate(signals, nowMs: 0)
        XCTAssertEqual(second.verdict.decision, .allow)
        XCTAssertEqual(second.shadowRules, ["strict"])
        let dry = gate.evaluate(signals, nowMs: 0, dryRun: true)
        XCTAssertEqual(dry.verdict.decision, .allow)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .allow, "the dry run took no token")
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .deny)
        let figures = Dictionary(uniqueKeysWithValues: gate.ruleFigures.map { ($0.name, $0) })
        XCTAssertEqual(figures["strict"]?.shadowFired, 3)
        XCTAssertEqual(figures["strict"]?.fired, 0)
        XCTAssertEqual(figures["loose"]?.fired, 1)
        XCTAssertEqual(gate.decisionCounts.first { $0.0 == .deny }?.1, 1)
    }

    func testReloadKeepsCountersOfRulesThatStay() throws {
        let gate = try gate("rule daily quota key=user max=2 window=1h score=100")
        let signals = order(user: "r")
        _ = gate.evaluate(signals, nowMs: 0)
        _ = gate.evaluate(signals, nowMs: 0)
        gate.load(try RulesFile.parse("rule daily quota key=user max=2 window=1h score=100\nrule x attribute when=units>5 score=1"))
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .deny, "the user's count survived the reload")
        gate.load(try RulesFile.parse("rule daily quota key=user max=3 window=1h score=100"))
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict.decision, .allow, "a raised limit applies at once")
        gate.load(.none)
        XCTAssertEqual(gate.evaluate(signals, nowMs: 0).verdict, .allowed)
    }

    func testAFloodOfDistinctKeysStaysInItsTables() throws {
        let limits = RiskLimits(rateEntries: 4_096, distinctEntries: 1_024, sketchWidth: 1_024, holdEntries: 1_024)
        let gate = try gate("""
            rule per_user rate key=user rate=1/m burst=1 score=100
            rule per_device distinct key=device count=user max=3 window=1h score=100
            rule holds holds key=user max=1 score=100 on=*
            """, limits: limits)
        for index in 0..<100_000 {
            let signals = order(user: "flood\(index)", device: "d\(index)")
            _ = gate.evaluate(signals, nowMs: Int64(index))
            gate.holdPlaced(order: "o\(index)", signals, deadlineMs: 1 << 40)
        }
        let figures = gate.tableFigures
        XCTAssertGreaterThan(figures.rateEvictions, 90_000, "old keys make room")
        XCTAssertLessThanOrEqual(figures.holdsTracked, 1_024)
        XCTAssertEqual(figures.holdsTracked + figures.holdsDropped, 100_000)
        XCTAssertEqual(gate.memoryBytes, limits.memoryBytes(quotaRules: 0))
        // A key seen just now is still counted: recent attackers are not forgotten first.
        XCTAssertEqual(gate.evaluate(order(user: "flood99999", device: "x"), nowMs: 100_000).verdict.decision, .deny)
    }
}
