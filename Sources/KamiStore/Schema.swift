/// The database schema as an ordered list of migrations. The version reached is kept in
/// `PRAGMA user_version`; a database newer than this code refuses to open.
///
/// Design (see docs/storage.md): the hot path writes only integer-keyed rows. Orders are
/// keyed by their sequence number, never by the storefront's random order id string (a
/// B-tree on random strings is what makes inserts slow); the order-id index lives in memory
/// and is rebuilt at boot. Code state lives in the narrow `code_state` table so that boot
/// scans 10 million states without reading the sealed secrets.
enum Schema {
    static let migrations: [String] = [
        // 1: initial schema.
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE skus(
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            price_cents INTEGER NOT NULL,
            per_user_limit INTEGER NOT NULL,
            activation_url TEXT,
            components TEXT NOT NULL DEFAULT '',
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        CREATE TABLE imports(
            id INTEGER PRIMARY KEY,
            sku_id INTEGER NOT NULL REFERENCES skus(id),
            first_code_id INTEGER NOT NULL,
            last_code_id INTEGER NOT NULL,
            imported INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            batch TEXT,
            source TEXT,
            created_at_ms INTEGER NOT NULL
        );
        CREATE TABLE codes(
            id INTEGER PRIMARY KEY,
            sku_id INTEGER NOT NULL,
            import_id INTEGER NOT NULL,
            batch TEXT,
            card_number TEXT,
            cost_cents INTEGER,
            expires_at_ms INTEGER,
            key_id INTEGER NOT NULL,
            nonce BLOB NOT NULL,
            sealed BLOB NOT NULL
        );
        CREATE INDEX codes_batch ON codes(batch) WHERE batch IS NOT NULL;
        CREATE TABLE code_state(
            id INTEGER PRIMARY KEY,
            sku_id INTEGER NOT NULL,
            state INTEGER NOT NULL,
            order_seq INTEGER
        );
        CREATE TABLE fingerprints(fp BLOB PRIMARY KEY, code_id INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE orders(
            seq INTEGER PRIMARY KEY,
            order_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            sku_id INTEGER NOT NULL,
            units INTEGER NOT NULL,
            state INTEGER NOT NULL,
            payment_ref TEXT,
            codes BLOB NOT NULL,
            ttl_ms INTEGER NOT NULL,
            expires_at_ms INTEGER NOT NULL,
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        CREATE TABLE audit(
            seq INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            event TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash BLOB NOT NULL,
            hash BLOB NOT NULL
        );
        """,
        // 2: the audit chain is authenticated: each entry's MAC (HMAC-SHA256 under a key derived
        // from the master key, over its hash). Entries written before are given theirs at the
        // first open with the key, if their chain holds (`AuditChain.sealLegacy`).
        """
        ALTER TABLE audit ADD COLUMN mac BLOB;
        """,
        // 3: upstream suppliers. A SKU's sourcing (pool, suppliers or both, routing, margin
        // guard, buy-ahead); which suppliers map to which SKU at what cost; the paused flag of
        // each supplier; every upstream attempt (one row per order and supplier, written
        // before the request leaves); the history of supplier costs.
        """
        CREATE TABLE sku_sourcing(
            sku_id INTEGER PRIMARY KEY,
            policy INTEGER NOT NULL,
            strategy INTEGER NOT NULL,
            min_margin_cents INTEGER NOT NULL,
            no_candidate INTEGER NOT NULL,
            low_water INTEGER NOT NULL,
            buy_ahead_units INTEGER NOT NULL,
            buy_ahead_budget_cents INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        CREATE TABLE supplier_mappings(
            sku_id INTEGER NOT NULL,
            supplier TEXT NOT NULL,
            product_id TEXT NOT NULL,
            cost_cents INTEGER NOT NULL,
            priority INTEGER NOT NULL,
            weight INTEGER NOT NULL,
            stock INTEGER,
            updated_at_ms INTEGER NOT NULL,
            PRIMARY KEY(sku_id, supplier)
        ) WITHOUT ROWID;
        CREATE TABLE supplier_state(
            supplier TEXT PRIMARY KEY,
            paused INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE upstream_attempts(
            order_seq INTEGER NOT NULL,
            supplier TEXT NOT NULL,
            sends INTEGER NOT NULL,
            customer_no TEXT NOT NULL,
            state INTEGER NOT NULL,
            supplier_ref TEXT,
            cost_cents INTEGER NOT NULL,
            detail TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            PRIMARY KEY(order_seq, supplier)
        ) WITHOUT ROWID;
        CREATE TABLE supplier_costs(
            id INTEGER PRIMARY KEY,
            sku_id INTEGER NOT NULL,
            supplier TEXT NOT NULL,
            cost_cents INTEGER NOT NULL,
            stock INTEGER,
            at_ms INTEGER NOT NULL
        );
        """,
        // 4: buy-ahead purchases: codes bought from a supplier into the pool when a SKU's
        // stock falls under its low-water mark; journaled before the request leaves, like an
        // order's attempts, so a crash never buys twice.
        """
        CREATE TABLE buy_ahead(
            id INTEGER PRIMARY KEY,
            sku_id INTEGER NOT NULL,
            supplier TEXT NOT NULL,
            customer_no TEXT NOT NULL UNIQUE,
            units INTEGER NOT NULL,
            cost_cents INTEGER NOT NULL,
            sends INTEGER NOT NULL,
            state INTEGER NOT NULL,
            detail TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        """,
        // 5: the risk gate's block and allow lists, managed with `kamictl risk block|unblock`.
        """
        CREATE TABLE risk_lists(
            list TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            note TEXT NOT NULL,
            added_at_ms INTEGER NOT NULL,
            PRIMARY KEY(list, kind, value)
        ) WITHOUT ROWID;
        """,
        // 6: manual delivery and the review TTL per SKU.
        """
        ALTER TABLE skus ADD COLUMN manual_delivery INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE skus ADD COLUMN review_ttl_ms INTEGER NOT NULL DEFAULT 0;
        """,
        // 7: money. What each order was paid and its labels; the ledger, one journal line per
        // money movement (a debit and a credit of one amount), opened with the stock on hand
        // at cost (orders placed before this have no amount and no sale lines).
        """
        ALTER TABLE orders ADD COLUMN amount_cents INTEGER;
        ALTER TABLE orders ADD COLUMN labels TEXT;
        CREATE TABLE ledger(
            id INTEGER PRIMARY KEY,
            kind INTEGER NOT NULL,
            order_seq INTEGER,
            sku_id INTEGER NOT NULL,
            debit TEXT NOT NULL,
            credit TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            currency TEXT,
            at_ms INTEGER NOT NULL
        );
        INSERT INTO ledger(kind, order_seq, sku_id, debit, credit, amount_cents, currency, at_ms)
            SELECT 4, NULL, c.sku_id, 'inventory', 'purchases', SUM(COALESCE(c.cost_cents, 0)), NULL, 0
            FROM codes c JOIN code_state s ON s.id = c.id WHERE s.state IN (0, 1) GROUP BY c.sku_id;
        """,
        // 8: campaigns and coupons. What they gave away is on each order (subsidy_cents) and
        // which coupon it holds in its labels: their spend and use are rebuilt from the orders.
        """
        ALTER TABLE orders ADD COLUMN subsidy_cents INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE campaigns(
            key TEXT PRIMARY KEY,
            sku_id INTEGER NOT NULL,
            price_cents INTEGER,
            discount_cents INTEGER NOT NULL,
            starts_at_ms INTEGER NOT NULL,
            ends_at_ms INTEGER NOT NULL,
            budget_cents INTEGER NOT NULL,
            per_user_uses INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE coupon_batches(
            key TEXT PRIMARY KEY,
            discount_cents INTEGER NOT NULL,
            per_user_uses INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE coupons(
            code TEXT PRIMARY KEY,
            batch TEXT NOT NULL,
            added_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX ledger_order ON ledger(order_seq) WHERE order_seq IS NOT NULL;
        """,
        // 9: distributors (分销) and their commission rates: a default (sku_id 0) and per SKU.
        """
        CREATE TABLE distributor_rates(
            distributor TEXT NOT NULL,
            sku_id INTEGER NOT NULL,
            rate_bps INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            PRIMARY KEY(distributor, sku_id)
        ) WITHOUT ROWID;
        """,
        // 10: the reports' summary of the ledger, per China Standard Time day, SKU, kind,
        // source account, channel and campaign: kept by the writer, one row per key and
        // transaction, so a report reads thousands of rows, not millions of lines.
        """
        CREATE TABLE ledger_summary(
            day INTEGER NOT NULL,
            sku_id INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            account TEXT NOT NULL,
            channel TEXT NOT NULL,
            campaign TEXT NOT NULL,
            cents INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            PRIMARY KEY(day, sku_id, kind, account, channel, campaign)
        ) WITHOUT ROWID;
        INSERT INTO ledger_summary(day, sku_id, kind, account, channel, campaign, cents, lines)
            SELECT (at_ms / 1000 + 28800) / 86400, sku_id, kind,
                CASE WHEN kind IN (2, 3, 4) THEN credit ELSE '' END, '', '', SUM(amount_cents), COUNT(*)
            FROM ledger GROUP BY 1, 2, 3, 4;
        """,
        // 11: after-sales cases.
        """
        CREATE TABLE cases(
            id INTEGER PRIMARY KEY,
            order_seq INTEGER NOT NULL,
            order_id TEXT NOT NULL,
            sku_id INTEGER NOT NULL,
            code_id INTEGER,
            reason TEXT NOT NULL,
            state INTEGER NOT NULL,
            source TEXT NOT NULL,
            opened_at_ms INTEGER NOT NULL,
            resolved_at_ms INTEGER,
            note TEXT NOT NULL
        );
        """,
        // 12: the webhook outbox: one row per event and endpoint, written in the transaction
        // of the event. Ids are never reused: pruning keeps the newest row. `retry_from_ms`
        // starts the retry window (the event's time, or a replay's); only pending rows are
        // in the due index and only dead ones in the dead-letter index, so an insert touches
        // the table and one index.
        """
        CREATE TABLE webhook_outbox(
            id INTEGER PRIMARY KEY,
            endpoint TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            retry_from_ms INTEGER NOT NULL,
            state INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            next_ms INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            done_ms INTEGER
        );
        CREATE INDEX webhook_outbox_due ON webhook_outbox(endpoint, next_ms) WHERE state = 0;
        CREATE INDEX webhook_outbox_dead ON webhook_outbox(id) WHERE state = 2;
        """,
        // 13: activations (a code moved to `used`: when, and who said so) and each SKU's usage
        // guide for the buyer's entitlements page.
        """
        ALTER TABLE skus ADD COLUMN usage_guide TEXT;
        CREATE TABLE activations(
            code_id INTEGER PRIMARY KEY,
            order_seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            via TEXT NOT NULL
        );
        """,
        // 14: the issue log (docs/storage.md): one record per order write, appended by the
        // hot path; the order row, code states, journal lines, summary and outbox rows are
        // derived from it behind the commit. Its records are audited one entry per batch,
        // which holds a digest of each (`records`). `audit_events` shows both tables' events.
        """
        CREATE TABLE issue_log(
            seq INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            event TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL,
            rec BLOB NOT NULL
        );
        ALTER TABLE audit ADD COLUMN records BLOB;
        CREATE VIEW audit_events(source, seq, at_ms, event, subject, detail) AS
            SELECT 'audit', seq, at_ms, event, subject, detail FROM audit
            UNION ALL SELECT 'issue_log', seq, at_ms, event, subject, detail FROM issue_log;
        """,
    ]

    /// The version this code writes.
    static var currentVersion: Int { migrations.count }

    /// The first version whose audit entries carry MACs.
    static let keyedAuditVersion = 2

    /// Brings the database to `currentVersion`, one migration per transaction; returns the
    /// version it found.
    @discardableResult
    static func migrate(_ db: Connection) throws(StoreError) -> Int {
        let version: Int
        do { version = Int(try db.scalarInt("PRAGMA user_version") ?? 0) } catch { throw .sqlite(error) }
        if version > currentVersion {
            throw .schemaTooNew(found: version, supported: currentVersion)
        }
        for next in version..<currentVersion {
            do {
                try db.execute("BEGIN IMMEDIATE")
                try db.execute(migrations[next])
                try db.execute("PRAGMA user_version = \(next + 1)")
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                throw .migrationFailed(version: next + 1, error)
            }
        }
        return version
    }
}
