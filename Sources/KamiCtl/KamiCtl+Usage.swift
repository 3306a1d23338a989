import KamiClient

extension KamiCtl {
    /// The `--help` text of a topic.
    public static func usage(_ topic: Topic) -> String {
        switch topic {
        case .general:
            return """
                usage: kamictl [--socket PATH] [--json] [--quiet] [--timeout SECONDS] COMMAND [ARGS]

                Operates a running kamid over its Unix socket.

                commands:
                  sku set SKU [--name N] [--price CENTS] [--per-user-limit N] [--activation-url T]
                          [--manual-delivery on|off] [--review-ttl MS] [--bundle SKU:N,SKU:N] [--usage-guide TEXT]
                                          create or change a SKU
                  sku list                every SKU with its settings and stock
                  import FILE.csv --sku SKU [--batch B] [--dry-run]
                                          load codes from a CSV file (kamid reads the file)
                  export --sku SKU [--with-secrets] [--out FILE] [--force]
                                          write a SKU's codes to a CSV file (kamid writes it)
                  stock [SKU]             stock counters of one SKU, or of every SKU
                  order ID [--show-secrets]
                                          one order and its codes
                  entitlements USER [--show-secrets] [--limit N] [--cursor C]
                                          the codes a user holds
                  void CODE_ID | --batch B
                                          withdraw one code, or a batch's available codes
                  refund ORDER            refund an issued order (its codes are voided)
                  reload                  make kamid read its config and token files again
                  stats                   kamid's counters
                  verify                  check every invariant
                  audit verify            check the audit log's hash chain
                  token new CLIENT        make a new token for a storefront client (printed once)
                  supplier list|show|map|unmap|pause|resume|sync|reconcile
                                          upstream suppliers (see supplier --help)
                  sku source SKU [--policy P] [--strategy S] [--min-margin CENTS] [--no-candidate fail|wait]
                                          where a SKU's codes come from, and the margin guard
                  upstream failed|retry ORDER|refund ORDER
                                          orders every supplier failed (the dead-letter list)
                  risk block|unblock|list|test
                                          the risk gate's lists and rules (see risk --help)
                  audit reveals [--user U] who was shown which secrets by order lookups
                  review list|show|approve|deny ORDER
                                          orders the risk gate held for an operator
                  deliver ORDER --secret-file F [--cost CENTS] | --from-pool
                                          hand out the codes of an order waiting for delivery
                  campaign set|list       campaigns: a price or discount with a subsidy budget
                  coupon add|list         coupon batches: codes from a file or generated
                  distributor set|list|statement
                                          distributors' commission rates and settlements
                  reconcile payments FILE [--format alipay|wechat|generic] [--from T --to T]
                                          match a payment provider's bill with the orders
                  case open|list|replace|refund|reject
                                          after-sales cases on delivered orders
                  report sales|payables|inventory|repeat|activation [--by sku|channel|campaign|day|week|month]
                         [--from T] [--to T] [--sku S] [--channel C] [--campaign K] [--csv | --xlsx FILE]
                                          sales and profit, payables, stock value and age, repeat
                                          buyers, activations
                  webhooks failed|pending|delivered|replay
                                          the signed webhooks' outbox and its dead letters

                options (anywhere on the line):
                  --socket PATH           kamid's socket (default: $\(socketEnvironmentVariable), else
                                          \(KamiEndpoint.defaultUnixPath))
                  --json                  print kamid's reply as one JSON line
                  -q, --quiet             no progress lines for long imports and exports
                  --timeout SECONDS       longest wait for kamid's reply (default \(requestTimeoutMsDefault / 1000))
                  -h, --help              this text; COMMAND --help for a command

                exit status (stable, for scripts):
                  0  ok
                  1  kamid refused or failed the operation (the reason is on stderr)
                  2  usage error (the usage is on stderr)
                  3  kamid cannot be reached (no socket, refused, timed out, connection lost)
                  4  verify or audit verify found a problem (printed on stdout)
                """
        case .skuSet:
            return """
                usage: kamictl sku set SKU [--name N] [--price CENTS] [--per-user-limit N] [--activation-url T]
                                       [--manual-delivery on|off] [--review-ttl MS] [--bundle SKU:N,SKU:N]
                                       [--usage-guide TEXT]

                Creates the SKU, or changes the given fields of an existing one (others keep their value).

                  --name N                display name
                  --price CENTS           price in minor units (cents, fen), an integer >= 0
                  --per-user-limit N      most units one user may hold at once; 0 = no limit
                  --activation-url T      activation link template; {code_id}, {card_number}, {order},
                                          {user}, {sku} and {token} (a signed activation token good
                                          for 15 minutes, which the brand's page hands back to
                                          kamid's `activate`) are replaced, percent-encoded (never
                                          the secret: {secret} is refused)
                  --usage-guide TEXT      how to use a code, shown on the buyer's entitlements page
                                          (我的权益); up to 1024 bytes, \n for a line break; "" clears
                  --manual-delivery on|off
                                          on: paid orders take nothing from the pool and wait in the
                                          review queue for `kamictl deliver` (手动发货)
                  --review-ttl MS         how long the SKU's orders wait in the review queue before
                                          they are released (refund them); 0 = kamid's review_ttl_ms
                  --bundle SKU:N,SKU:N    make SKU a bundle (超级会员 pack): one unit takes N codes of each
                                          component, all or none; priced on its own with --price. A
                                          SKU with codes of its own cannot become a bundle
                """
        case .webhooks:
            return """
                usage: kamictl webhooks failed|pending|delivered [--endpoint NAME] [--limit N]
                       kamictl webhooks replay ID[,ID...] | --all [--endpoint NAME]

                kamid writes each event (order delivered, pending upstream, failed, refunded, case
                opened or resolved, stock low, supplier breaker opened) to an outbox in the same
                transaction as the change, and POSTs it signed to each endpoint of the config
                (webhook_url.NAME, webhook_secret_file.NAME). A failed delivery is retried with
                exponential backoff and jitter until webhook_retry_for_ms after the event, then
                dead-lettered: `webhooks failed` lists those (newest first, with the last error),
                `webhooks replay` queues them again with a fresh retry budget. See docs/webhooks.md.
                """
        case .money:
            return """
                usage: kamictl campaign set KEY --sku SKU (--price CENTS | --discount CENTS) [--from T] --to T
                                            --budget CENTS [--per-user N]
                       kamictl campaign list
                       kamictl coupon add BATCH --discount CENTS [--per-user N] (--file F | --generate N [--out F])
                       kamictl coupon list
                       kamictl distributor set D --rate R% [--sku SKU]
                       kamictl distributor list
                       kamictl distributor statement D [--from T] [--to T]
                       kamictl reconcile payments FILE [--format alipay|wechat|generic] [--from T --to T]
                       kamictl case open ORDER --reason invalid_code|not_received|other [--code ID] [--note N]
                       kamictl case list [--all]
                       kamictl case replace|refund|reject ID [--note N]
                       kamictl report sales|payables|inventory|repeat|activation [--by sku|channel|campaign|day|week|month] [--from T] [--to T]
                                      [--sku S] [--channel C] [--campaign K] [--csv | --xlsx FILE]

                A campaign sells SKU at --price (or its price less --discount) from --from (default now)
                until --to, while what it gives away stays within --budget; at most --per-user orders
                per user (0: no limit). T is Unix milliseconds or +N with s, m, h or d (+2h). Orders
                name it with `campaign`; past the budget they are refused (LIMIT_REACHED).

                A coupon batch: each code is used by one order; --discount off the order; at most
                --per-user codes of the batch per user. --file: one code per line (UTF-8); --generate
                N: kamid makes N codes of 12 characters, printed or written to --out. Orders name a
                code with `coupon`.

                A distributor (分销) earns --rate (5%, 5.25% or 525bps) of the amount of each delivered
                order that names it (`distributor`), per SKU with --sku; a refund reverses it. The
                statement sums a period's commissions, reversals, and what the shop owes in all.

                reconcile payments reads a bill kamid can read (Alipay's or WeChat Pay's download, GBK
                or UTF-8, or the generic payment_ref,amount[,order,type,time] layout) and lists payments
                not delivered, amounts that differ, duplicates and refunds that disagree; with --from
                and --to, also orders delivered in that period the bill does not show paid. It changes
                nothing; exit 4 when it found mismatches.

                report activation: per SKU, codes sold (issued or used now), used and their share,
                activations between --from and --to, and how many of those came through a brand's
                link token.

                A report prints a table; --csv prints CSV; --xlsx FILE writes an Excel workbook (its
                figures as numbers), created by kamictl.
                docs/money.md.
                """
        case .deliver:
            return """
                usage: kamictl deliver ORDER --secret-file F [--cost CENTS]
                       kamictl deliver ORDER --from-pool

                Delivers a paid order waiting in the review queue (a manual-delivery SKU's, or one the
                risk gate held that holds no codes). The buyer sees the codes with order or wait.

                  --secret-file F         the codes, read by kamictl: one per line, `secret` or
                                          `card_number<TAB>secret`; blank lines are skipped. As many
                                          codes as the order has units. A code kamid already has
                                          (stocked, sold or delivered) is refused: a code is handed out once
                  --cost CENTS            what each code cost the shop (for margins)
                  --from-pool             take the codes from the SKU's pool instead
                """
        case .importCSV:
            return """
                usage: kamictl import FILE.csv|FILE.xlsx --sku SKU [--batch B] [--sheet NAME] [--dry-run]

                Loads card keys into SKU. kamid reads FILE itself (kamictl sends its absolute path), so
                kamid's user must be able to read it. The file needs a header row with a `secret`
                column (or 卡密 / 密码); UTF-8 with or without BOM, or GBK. Rejected rows (duplicates,
                blanks, bad values) are listed with their line numbers; a code is never imported twice.
                An Excel workbook (.xlsx) is read from its first sheet (or --sheet) with the same rules;
                line numbers are the sheet's rows, and a code Excel turned into a date or a float is rejected.

                  --sku SKU               the SKU the codes belong to (required)
                  --batch B               batch name recorded with the codes (to void them together)
                  --sheet NAME            the worksheet of an .xlsx to read (default: the first)
                  --dry-run               check the file and report, import nothing
                """
        case .stock:
            return """
                usage: kamictl stock [SKU]

                Prints available, reserved, issued, voided and imported counts of SKU, or of every SKU.
                """
        case .order:
            return """
                usage: kamictl order ID [--show-secrets]

                Prints the order's state, SKU, quantity and codes. Secrets are hidden (null with
                --json) unless --show-secrets is given.
                """
        case .verify:
            return """
                usage: kamictl verify

                Checks kamid's invariants (no code sold twice, counts add up, audit chain intact).
                Exit status 4 when a violation is found; the violations are printed.
                """
        case .stats:
            return """
                usage: kamictl stats

                Prints kamid's counters: commit batches and per-SKU stock.
                """
        case .skuList:
            return """
                usage: kamictl sku list

                Prints every SKU: name, price in cents, per-user limit (- for none) and its stock.
                """
        case .export:
            return """
                usage: kamictl export --sku SKU [--with-secrets] [--out FILE] [--force]

                kamid writes every code of SKU to a CSV file (mode 0600): code id, state, card
                number, cost, expiry, batch, and the secret only with --with-secrets (such an export
                is recorded in the audit log before it starts). kamid writes the file itself, so its
                user must be able to write there (under the systemd unit: the state directory). A FILE
                ending in .xlsx gets the same columns as an Excel workbook.

                  --sku SKU               the SKU to export (required)
                  --out FILE              where (default: ./SKU-export-YYYYMMDD-HHMMSS.csv, UTC)
                  --with-secrets          include the secrets
                  --force                 replace FILE if it exists (otherwise an error); only a
                                          regular file is ever replaced, and only once the export
                                          has succeeded
                """
        case .entitlements:
            return """
                usage: kamictl entitlements USER [--show-secrets] [--limit N] [--cursor C]

                Prints one page of the codes USER holds (issued, and voided after a refund) with
                their orders, newest order first: --limit codes (default 100, at most 500), from
                --cursor (the cursor the page before printed; the first page without it).
                Secrets are hidden (null with --json) unless --show-secrets is given.
                """
        case .void:
            return """
                usage: kamictl void CODE_ID
                       kamictl void --batch B

                Withdraws a code that must never be sold (leaked, faulty), or every available code of
                import batch B. Codes held by unpaid orders or already issued are left alone and
                counted; refund an order to void its codes.
                """
        case .refund:
            return """
                usage: kamictl refund ORDER

                Marks an issued order refunded; its codes are voided (never sold again).
                """
        case .reload:
            return """
                usage: kamictl reload

                kamid reads its config file and token files again. If anything is invalid nothing
                changes and the error (file:line: key: ...) is printed, exit status 1. Otherwise the
                keys applied live are listed, and changed keys that need a restart are named.
                """
        case .auditVerify:
            return """
                usage: kamictl audit verify

                Walks the audit log's SHA-256 hash chain from the first entry. Exit status 4, with the
                first broken entry, when an entry was changed, removed or reordered.
                """
        case .supplier:
            return """
                usage: kamictl supplier list
                       kamictl supplier show SUPPLIER
                       kamictl supplier map SKU SUPPLIER PRODUCT COST_CENTS [--priority N] [--weight N]
                       kamictl supplier unmap SKU SUPPLIER
                       kamictl supplier pause SUPPLIER | resume SUPPLIER
                       kamictl supplier sync
                       kamictl supplier reconcile SUPPLIER [--from T] [--to T] [--statement FILE.csv]

                Suppliers are defined in kamid's config (supplier.ID.KEY); which of them can fulfil which
                SKU, at what cost and priority, is data managed here.

                  list                    every supplier: breaker, paused, in flight, attempts, p95, success rate
                  show SUPPLIER           one supplier and its mappings
                  map                     the SKU can be bought at SUPPLIER as PRODUCT for COST_CENTS per unit;
                                          lower --priority is preferred (priority strategy, ties); --weight is
                                          the share under the weighted strategy
                  pause / resume          no new orders go to a paused supplier (open attempts still resolve)
                  sync                    fetch every supplier's prices and stock now (also on a schedule)
                  reconcile               compare kamid's attempts from --from to --to (Unix ms or
                                          YYYY-MM-DD) with the supplier's records (its query API, and the
                                          statement CSV when given: customer_order_no,state[,amount_cents])
                """
        case .skuSource:
            return """
                usage: kamictl sku source SKU [--policy pool|upstream|pool_then_upstream]
                                              [--strategy cheapest|fastest|priority|weighted]
                                              [--min-margin CENTS] [--no-candidate fail|wait] [--low-water N]
                                              [--buy-ahead UNITS] [--budget CENTS]

                Where a SKU's codes come from. The margin guard never buys where cost > price - min margin
                (成本倒挂); with no candidate left the order fails (dead-letter list) or waits.
                Under --low-water available codes, kamid buys --buy-ahead codes into the pool from the
                cheapest supplier within the guard, at most --budget minor units per UTC day.
                """
        case .upstream:
            return """
                usage: kamictl upstream failed
                       kamictl upstream retry ORDER
                       kamictl upstream refund ORDER

                  failed                  orders every candidate supplier failed, with each attempt
                  retry ORDER             route a failed order again
                  refund ORDER            refund a failed order (nothing was delivered)
                """
        case .risk:
            return """
                usage: kamictl risk block KIND VALUE [--list block|allow] [--note TEXT]
                       kamictl risk unblock KIND VALUE [--list block|allow]
                       kamictl risk list
                       kamictl risk test EVENT [--user U] [--ip IP] [--device D] [--sku S] [--qty N]
                                         [--amount CENTS] [--payment ACCOUNT] [--age-days N]
                                         [--phone-verified true|false] [--challenge-token T]
                       kamictl audit reveals [--user U] [--limit N]
                       kamictl review list | show ORDER | approve ORDER | deny ORDER

                KIND is user, ip (an address or a CIDR), device or payment. A list entry is kept in
                kamid's database and audited; it applies to every rule of kind list (docs/risk.md).

                  block / unblock         add or remove an entry (the block list unless --list allow)
                  list                    every entry (database and rules file) and each rule's hits
                  test                    what the rules would decide for EVENT with these signals;
                                          counts nothing, changes nothing
                  audit reveals           the newest reveals of secrets by order and entitlements
                                          lookups: when, which order, which user and IP, which codes
                  review list             orders held for review, oldest first
                  review approve ORDER    a paid order is committed and delivered; an unpaid one
                                          becomes an ordinary hold the buyer can pay
                  review deny ORDER       its codes go back to the pool (refund a paid one)
                """
        case .tokenNew:
            return """
                usage: kamictl token new CLIENT

                kamid makes a random token for storefront client CLIENT, stores it (0600) in its
                token_dir and accepts it at once; the client's previous token stops working for new
                connections. The token is printed once: hand it to the storefront.
                """
        }
    }
}
