import Foundation
import KamiCore
import KamiRisk

/// `kami-bench risk-keys`: the risk gate's memory under a flood of distinct keys. Runs the
/// gate in this process with a rules file (Config/risk.rules by default) and `keys` events
/// whose user, IP, device and payment account are all new, half of them reserves that stay
/// unpaid, and reports RSS against the bound the gate computes from its configured sizes.
enum RiskBench {
    static func rssKiB() -> Int { UpstreamBench.rssKiB(getpid(), "VmRSS") }

    static func run(keys: Int, rulesPath: String) {
        let rules: RiskRules
        do { rules = try RulesFile.load(path: rulesPath) } catch {
            print("kami-bench: \(error)")
            exit(1)
        }
        let before = rssKiB()
        let gate = RiskGate(limits: RiskLimits(), rules: rules)
        // Touch every table once so their pages count from the start (Swift arrays are
        // zero-filled lazily by the kernel: an untouched page is not resident yet).
        let allocated = rssKiB()
        let bound = gate.memoryBytes
        print("risk-keys: \(rules.rules.count) rules, bound \(bound / 1_048_576) MiB, \(keys) distinct keys")
        let started = Date()
        var peak = allocated
        var denied = 0
        var afterFirstMillion = 0
        for index in 0..<keys {
            var signals = RiskSignals(event: index % 2 == 0 ? "reserve" : "issue")
            signals.user = "flood-user-\(index)"
            signals.ip = "\(index >> 24 & 255).\(index >> 16 & 255).\(index >> 8 & 255).\(index & 255)"
            signals.device = "flood-device-\(index)"
            signals.paymentAccount = "flood-pay-\(index)"
            signals.sku = "vip"
            signals.units = 1
            let verdict = gate.evaluate(signals, nowMs: Int64(index / 1_000)).verdict
            if verdict.decision != .allow { denied += 1 }
            if index % 2 == 0 { gate.holdPlaced(order: "flood-\(index)", signals, deadlineMs: 1 << 40) }
            if index % 1_000_000 == 999_999 {
                peak = max(peak, rssKiB())
                if afterFirstMillion == 0 { afterFirstMillion = rssKiB() }
                print("  \(index + 1) keys: RSS \(rssKiB() / 1_024) MiB")
            }
        }
        peak = max(peak, rssKiB())
        let seconds = Date().timeIntervalSince(started)
        let growth = (peak - before) * 1_024
        let tables = gate.tableFigures
        print("""

            | measure | value |
            |---|---|
            | distinct keys seen | \(keys) |
            | evaluations/s | \(Int(Double(keys) / seconds)) |
            | gate's bound (configured sizes) | \(bound / 1_048_576) MiB |
            | RSS before the gate | \(before / 1_024) MiB |
            | RSS at the peak | \(peak / 1_024) MiB |
            | growth over the run | \(growth / 1_048_576) MiB (\(String(format: "%.2f", Double(growth) / Double(bound))) of the bound) |
            | rate-table evictions | \(tables.rateEvictions) |
            | holds tracked / not tracked (table full) | \(tables.holdsTracked) / \(tables.holdsDropped) |
            | refused (not allowed) | \(denied) |
            | RSS after the first million keys → at the end | \(afterFirstMillion / 1_024) → \(rssKiB() / 1_024) MiB |
            """)
        // Bounded: no growth after the tables filled (1 MiB of noise allowed), and the whole
        // growth within the bound plus the allocator's working set (a quarter of the bound).
        let plateau = afterFirstMillion == 0 || rssKiB() - afterFirstMillion <= 1_024
        exit(plateau && growth <= bound + bound / 4 ? 0 : 1)
    }
}
