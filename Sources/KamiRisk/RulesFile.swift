import Foundation
import KamiCore

/// A rules file that cannot be used, with where: `risk.rules:12: rule ip_burst: unknown key "rat"`.
public struct RulesFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `path:line` (or the path alone when the file cannot be read at all).
    public let location: String
    public let message: String

    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }
}

/// Reads the rules file format of `docs/risk.md`:
///
///     thresholds challenge=40 review=70 deny=100
///     challenge_ttl 10m
///     rule ip_burst rate on=reserve,issue key=ip rate=5/s burst=10 score=100
///     list block ip 203.0.113.0/24
///     list block device file=bad-devices.txt
///
/// One statement a line, `#` to the end of a line is a comment. Every problem is reported
/// as `file:line` with what was wrong; nothing of a bad file is used.
public enum RulesFile {
    /// Largest rules file read, bytes.
    public static let fileBytesMax = 1 << 20
    /// Largest list file named by `file=`, bytes.
    public static let listFileBytesMax = 16 << 20
    /// Most rules in one file: each costs its counters' memory and time on every request.
    public static let rulesMax = 256
    /// Most distinct values a `distinct` rule can count up to (it keeps `max + 1` per key).
    public static let distinctMax = 15

    /// Reads and parses `path`; list files it names are read relative to its folder.
    public static func load(path: String) throws(RulesFileError) -> RiskRules {
        let text = try read(path, limit: fileBytesMax)
        return try parse(text, file: path, readList: { (name: String) throws(RulesFileError) -> String in
            let resolved = name.hasPrefix("/") ? name : (path as NSString).deletingLastPathComponent + "/" + name
            return try read(resolved, limit: listFileBytesMax)
        })
    }

    private static func read(_ path: String, limit: Int) throws(RulesFileError) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw RulesFileError(location: path, message: "cannot open (missing or not readable)")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: limit + 1) ?? Data() } catch {
            throw RulesFileError(location: path, message: "cannot read: \(error.localizedDescription)")
        }
        guard data.count <= limit else {
            throw RulesFileError(location: path, message: "is over \(limit) bytes")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RulesFileError(location: path, message: "is not UTF-8")
        }
        return text
    }

    /// Parses rules text; `file` names it in errors. `readList` reads a `file=` list.
    public static func parse(
        _ text: String, file: String = "rules",
        readList: (String) throws(RulesFileError) -> String = { (name: String) throws(RulesFileError) -> String in
            throw RulesFileError(location: name, message: "list files are not read here")
        }
    ) throws(RulesFileError) -> RiskRules {
        var rules = RiskRules()
        var names: Set<String> = []
        var sawThresholds = false
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let location = "\(file):\(index + 1)"
            func fail(_ message: String) -> RulesFileError { RulesFileError(location: location, message: message) }
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            if line.last == "\r" { line = line.dropLast() }
            guard line.unicodeScalars.allSatisfy({ $0.value >= 0x20 || $0 == "\t" }) else {
                throw fail("control character in the line")
            }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let verb = words.first else { continue }
            switch verb {
            case "thresholds":
                guard !sawThresholds else { throw fail("thresholds given twice") }
                sawThresholds = true
                let pairs = try options(words.dropFirst(), fail)
                var thresholds = Thresholds.standard
                for (key, value) in pairs {
                    guard let number = Int(value), number > 0 else { throw fail("\(key) must be a positive whole number, got \(value.debugDescription)") }
                    switch key {
                    case "challenge": thresholds.challenge = number
                    case "review": thresholds.review = number
                    case "deny": thresholds.deny = number
                    default: throw fail("unknown threshold \(key.debugDescription) (challenge, review, deny)")
                    }
                }
                guard thresholds.challenge <= thresholds.review && thresholds.review <= thresholds.deny else {
                    throw fail("thresholds must rise: challenge \(thresholds.challenge) <= review \(thresholds.review) <= deny \(thresholds.deny)")
                }
                rules.thresholds = thresholds
            case "challenge_ttl":
                guard words.count == 2, let ms = duration(words[1]), ms >= 10_000, ms <= 86_400_000 else {
                    throw fail("challenge_ttl takes one duration between 10s and 24h (10m, 600s)")
                }
                rules.challengeTTLMs = ms
            case "rule":
                guard words.count >= 3 else { throw fail("a rule is: rule NAME KIND key=value ...") }
                let name = words[1]
                guard isName(name) else {
                    throw fail("rule name \(name.debugDescription) must be 1 to 64 letters, digits, '_', '-' or '.'")
                }
                guard names.insert(name).inserted else { throw fail("rule \(name) is defined twice") }
                guard rules.rules.count < rulesMax else { throw fail("more than \(rulesMax) rules") }
                do throws(RulesFileError) {
                    rules.rules.append(try rule(name: name, kind: words[2], options: options(words.dropFirst(3), fail),
                                                origin: location))
                } catch {
                    throw fail("rule \(name): \(error.message)")
                }
            case "list":
                guard words.count == 4 else { throw fail("a list line is: list block|allow user|ip|device|payment VALUE (or file=PATH)") }
                guard let kind = ListEntry.Kind(rawValue: words[2] == "payment_account" ? "payment" : words[2]) else {
                    throw fail("unknown list kind \(words[2].debugDescription) (user, ip, device, payment)")
                }
                if words[3].hasPrefix("file=") {
                    let listFile = String(words[3].dropFirst(5))
                    let listText = try readList(listFile)
                    for (listIndex, listLine) in listText.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                        var value = Substring(listLine)
                        if let hash = value.firstIndex(of: "#") { value = value[..<hash] }
                        let trimmed = value.trimmingCharacters(in: .whitespaces)
                        if trimmed.isEmpty { continue }
                        do throws(KamiError) {
                            rules.entries.append(try ListEntry(list: words[1], kind: kind, value: trimmed))
                        } catch {
                            throw RulesFileError(location: "\(listFile):\(listIndex + 1)", message: error.message)
                        }
                    }
                } else {
                    do throws(KamiError) {
                        rules.entries.append(try ListEntry(list: words[1], kind: kind, value: words[3]))
                    } catch {
                        throw fail(error.message)
                    }
                }
            default:
                throw fail("unknown statement \(verb.debugDescription) (thresholds, challenge_ttl, rule, list)")
            }
        }
        return rules
    }

    private static func isName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "_-.".unicodeScalars.contains($0) }
    }

    private static func options(_ words: ArraySlice<String>, _ fail: (String) -> RulesFileError) throws(RulesFileError) -> [(String, String)] {
        var seen: Set<String> = []
        var out: [(String, String)] = []
        for word in words {
            guard let equals = word.firstIndex(of: "="), equals != word.startIndex else {
                throw fail("expected key=value, got \(word.debugDescription)")
            }
            let key = String(word[..<equals])
            guard seen.insert(key).inserted else { throw fail("\(key) given twice") }
            out.append((key, String(word[word.index(after: equals)...])))
        }
        return out
    }

    /// `250ms`, `30s`, `10m`, `2h`, `1d` in ms.
    static func duration(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let digits = text.dropLast(suffix.count)
            if suffix == "s" && text.hasSuffix("ms") { continue }
            guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let value = Int64(digits), value > 0,
                  value <= Int64.max / scale else { return nil }
            return value * scale
        }
        return nil
    }

    private static func rule(name: String, kind kindName: String, options: [(String, String)], origin: String)
        throws(RulesFileError) -> RiskRule
    {
        func bad(_ message: String) -> RulesFileError { RulesFileError(location: origin, message: message) }
        var values: [String: String] = [:]
        for (key, value) in options { values[key] = value }
        var used: Set<String> = []
        func take(_ key: String) -> String? {
            used.insert(key)
            return values[key]
        }
        func need(_ key: String, _ what: String) throws(RulesFileError) -> String {
            guard let value = take(key) else { throw bad("\(kindName) needs \(key)= (\(what))") }
            return value
        }
        func count(_ key: String, _ text: String, _ range: ClosedRange<Int>) throws(RulesFileError) -> Int {
            guard let value = Int(text), range.contains(value) else {
                throw bad("\(key) must be a whole number in \(range.lowerBound)...\(range.upperBound), got \(text.debugDescription)")
            }
            return value
        }
        func window() throws(RulesFileError) -> Int64 {
            let text = try need("window", "a duration: 30s, 10m, 24h")
            guard let ms = duration(text), ms >= 1_000, ms <= 30 * 86_400_000 else {
                throw bad("window must be a duration from 1s to 30d (30s, 10m, 24h), got \(text.debugDescription)")
            }
            return ms
        }
        func parts(_ text: String, _ key: String) throws(RulesFileError) -> [SignalPart] {
            var out: [SignalPart] = []
            for piece in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let part = SignalPart.named(String(piece)) else {
                    throw bad("unknown signal \(String(piece).debugDescription) in \(key)= (user, ip, net, device, sku, payment, event, global)")
                }
                guard !out.contains(part) else { throw bad("\(part.rawValue) twice in \(key)=") }
                out.append(part)
            }
            if out.contains(.global) && out.count > 1 { throw bad("key=global stands alone") }
            return out
        }

        let kind: RuleKind
        var key: [SignalPart] = []
        switch kindName {
        case "rate":
            let text = try need("rate", "events per second, minute or hour: 5/s, 100/m")
            let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
            let per: [Substring: Double] = ["s": 1, "m": 60, "h": 3_600]
            guard pieces.count == 2, let amount = Double(pieces[0]), amount > 0, amount <= 1_000_000,
                  let seconds = per[pieces[1]] else {
                throw bad("rate must be N/s, N/m or N/h with N > 0, got \(text.debugDescription)")
            }
            let perSecond = amount / seconds
            var burst = max(1, amount.rounded(.up))
            if let text = take("burst") { burst = Double(try count("burst", text, 1...1_000_000)) }
            kind = .rate(perSecond: perSecond, burst: burst)
            key = try parts(try need("key", "the signals counted together: ip, user,sku, global"), "key")
        case "quota":
            let maximum = try count("max", try need("max", "events allowed per window"), 1...100_000_000)
            kind = .quota(max: maximum, windowMs: try window())
            key = try parts(try need("key", "the signals counted together: user, user,sku"), "key")
        case "distinct":
            let counted = try parts(try need("count", "the signal whose distinct values are counted: user, device"), "count")
            guard counted.count == 1, counted[0] != .global, counted[0] != .event else {
                throw bad("count= names one signal: user, ip, net, device, sku or payment")
            }
            let maximum = try count("max", try need("max", "distinct values allowed per window"), 1...distinctMax)
            kind = .distinct(count: counted[0], max: maximum, windowMs: try window())
            key = try parts(try need("key", "what the values are counted per: device, ip, payment"), "key")
            guard !key.contains(counted[0]) else { throw bad("count=\(counted[0].rawValue) cannot be part of key=") }
        case "holds":
            let maximum = try count("max", try need("max", "unpaid holds allowed per key at once"), 1...1_000_000)
            kind = .holds(max: maximum)
            key = try parts(try need("key", "what holds are counted per: user, ip, net, device"), "key")
        case "attribute":
            let text = try need("when", "a comparison: account_age_days<1, phone_verified=false")
            kind = .attribute(try condition(text, bad))
        case "list":
            let list = try need("list", "block or allow")
            guard list == "block" || list == "allow" else { throw bad("list must be block or allow, got \(list.debugDescription)") }
            kind = .list(name: list)
            if let text = take("key") {
                key = try parts(text, "key")
                guard key.allSatisfy({ [.user, .ip, .device, .payment].contains($0) }) else {
                    throw bad("a list rule's key= is some of user, ip, device, payment")
                }
            }
        default:
            throw bad("unknown kind \(kindName.debugDescription) (rate, quota, distinct, holds, attribute, list)")
        }

        var events: Set<String>? = nil
        if case .holds = kind { events = ["reserve"] }
        if let text = take("on") {
            if text == "*" {
                events = nil
            } else {
                var set: Set<String> = []
                for piece in text.split(separator: ",", omittingEmptySubsequences: false) {
                    guard isName(String(piece)) else { throw bad("bad event name \(String(piece).debugDescription) in on=") }
                    set.insert(String(piece))
                }
                events = set
            }
        }
        var score = 0
        if let text = take("score") {
            guard let value = Int(text), abs(value) <= 1_000_000 else {
                throw bad("score must be a whole number within ±1000000, got \(text.debugDescription)")
            }
            score = value
        }
        var action: RiskVerdict.Decision? = nil
        if let text = take("action") {
            guard let decision = RiskVerdict.Decision(rawValue: text) else {
                throw bad("action must be allow, challenge, review or deny, got \(text.debugDescription)")
            }
            action = decision
        }
        guard score != 0 || action != nil else { throw bad("it needs score= or action=, else it decides nothing") }
        var reason = kind.reason
        if let text = take("reason") {
            guard (1...40).contains(text.utf8.count),
                  text.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }) else {
                throw bad("reason must be 1 to 40 of a-z, 0-9, '_', got \(text.debugDescription)")
            }
            reason = text
        }
        var shadow = false
        if let text = take("mode") {
            switch text {
            case "shadow": shadow = true
            case "enforce": shadow = false
            default: throw bad("mode must be enforce or shadow, got \(text.debugDescription)")
            }
        }
        if let unknown = options.map(\.0).first(where: { !used.contains($0) }) {
            throw bad("unknown key \(unknown.debugDescription) for a \(kindName) rule")
        }
        return RiskRule(name: name, kind: kind, key: key, events: events, score: score, action: action, reason: reason,
                        shadow: shadow, origin: origin)
    }

    private static func condition(_ text: String, _ bad: (String) -> RulesFileError) throws(RulesFileError) -> Condition {
        // Longest operators first, so `<=` is not read as `<`.
        let ordered: [Condition.Comparison] = [.lessOrEqual, .greaterOrEqual, .notEqual, .less, .greater, .equal]
        for comparison in ordered {
            guard let range = text.range(of: comparison.rawValue) else { continue }
            let name = String(text[..<range.lowerBound])
            let valueText = String(text[range.upperBound...])
            guard let attribute = Attribute(rawValue: name) else {
                throw bad("unknown attribute \(name.debugDescription) in when= (\(Attribute.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let value: Int64
            switch valueText {
            case "true": value = 1
            case "false": value = 0
            default:
                guard let number = Int64(valueText) else {
                    throw bad("when= compares with a whole number or true/false, got \(valueText.debugDescription)")
                }
                value = number
            }
            return Condition(attribute: attribute, comparison: comparison, value: value)
        }
        throw bad("when= needs a comparison (<, <=, >, >=, =, !=), got \(text.debugDescription)")
    }
}
