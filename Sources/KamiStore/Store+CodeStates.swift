public import KamiCore

/// A code's immutable row with its current state, read together.
public struct CodeWithState: Sendable {
    public var code: StoredCode
    public var state: CodeState
    public var orderSeq: OrderSeq?
}

extension Store {
    /// The rows and current states of the given codes in one statement (one read
    /// transaction, one pass), for queries over many codes: an order's, a page of a user's.
    /// Missing ids are left out. The ids travel as one JSON array bound to `json_each`, so
    /// the statement is the same whatever the count.
    public func codesWithState(_ ids: [CodeID]) throws(KamiError) -> [CodeID: CodeWithState] {
        guard !ids.isEmpty else { return [:] }
        // Moves not yet derived from the issue log, taken before the snapshot begins (not
        // inside `consistentRead`: its snapshot is older, and the rows must agree with it).
        let overlay = readsPinned ? [:] : writer.overlay.lookup(ids)
        let json = Store.jsonList(ids)
        return try readAsIs { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT c.id, c.sku_id, c.batch, c.card_number, c.cost_cents, c.expires_at_ms, c.key_id, c.nonce,
                    c.sealed, s.state, s.order_seq, (SELECT value FROM meta WHERE key = '\(IssueLog.derivedKey)')
                FROM json_each(?) j JOIN codes c ON c.id = j.value JOIN code_state s ON s.id = c.id
                """)
            defer { stmt.reset() }
            stmt.bind(1, json)
            var result: [CodeID: CodeWithState] = [:]
            result.reserveCapacity(ids.count)
            while try stmt.step() {
                guard let state = CodeState(rawValue: UInt8(truncatingIfNeeded: stmt.int64(9))) else {
                    throw SQLiteError(resultCode: 0, context: "read code", message: "code \(stmt.int64(0)) has state "
                        + "\(stmt.int64(9))")
                }
                let code = Store.storedCode(stmt)
                var row = CodeWithState(code: code, state: state, orderSeq: stmt.isNull(10) ? nil : stmt.int64(10))
                if let move = overlay[code.id], move.isNewer(thanDerived: stmt.text(11)) {
                    row.state = move.state
                    row.orderSeq = move.orderSeq
                }
                result[code.id] = row
            }
            return result
        }
    }

    /// The current state and holding order of each code (missing ids are left out), read as
    /// `codesWithState` reads them.
    public func codeStates(_ ids: [CodeID]) throws(KamiError) -> [CodeID: (state: CodeState, orderSeq: OrderSeq?)] {
        guard !ids.isEmpty else { return [:] }
        let overlay = readsPinned ? [:] : writer.overlay.lookup(ids)
        let json = Store.jsonList(ids)
        return try readAsIs { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT s.id, s.state, s.order_seq, (SELECT value FROM meta WHERE key = '\(IssueLog.derivedKey)')
                FROM json_each(?) j JOIN code_state s ON s.id = j.value
                """)
            defer { stmt.reset() }
            stmt.bind(1, json)
            var result: [CodeID: (state: CodeState, orderSeq: OrderSeq?)] = [:]
            while try stmt.step() {
                let id = stmt.int64(0)
                guard let state = CodeState(rawValue: UInt8(truncatingIfNeeded: stmt.int64(1))) else { continue }
                if let move = overlay[id], move.isNewer(thanDerived: stmt.text(3)) {
                    result[id] = (move.state, move.orderSeq)
                } else {
                    result[id] = (state, stmt.isNull(2) ? nil : stmt.int64(2))
                }
            }
            return result
        }
    }

    /// `[1,2,3]`: ids bound as one JSON array to `json_each`, so the statement is the same
    /// whatever the count.
    static func jsonList(_ ids: [CodeID]) -> String {
        var list = "["
        list.reserveCapacity(ids.count * 8 + 2)
        for (index, id) in ids.enumerated() {
            if index > 0 { list += "," }
            list += String(id)
        }
        list += "]"
        return list
    }
}
