extension KamiCtl {
    /// The `--help` text of a topic.
    public static func usage(_ topic: Topic) -> String {
        switch topic {
        case .general:
            return """
                usage: kamictl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS]

                Operates a running kamid over its Unix socket.

                commands:
                  sku set SKU [--name N] [--price CENTS] [--per-user-limit N] [--activation-url T]
                                          create or change a SKU
                  import FILE.csv --sku SKU [--batch B] [--dry-run]
                                          load codes from a CSV file (kamid reads the file)
                  stock [SKU]             stock counters of one SKU, or of every SKU
                  order ID [--show-secrets]
                                          one order and its codes
                  verify                  check the invariants (exit 1 on a violation)
                  stats                   kamid's counters

                options (anywhere on the line):
                  --socket PATH           kamid's socket (default: $\(socketEnvironmentVariable), else
                                          \(KamiEndpoint.defaultUnixPath))
                  --json                  print kamid's reply as one JSON line
                  --timeout SECONDS       longest wait for kamid's reply (default \(requestTimeoutMsDefault / 1000))
                  -h, --help              this text; COMMAND --help for a command

                exit status: 0 ok, 1 the operation failed, 2 usage error, 3 cannot reach kamid
                """
        case .skuSet:
            return """
                usage: kamictl sku set SKU [--name N] [--price CENTS] [--per-user-limit N] [--activation-url T]

                Creates the SKU, or changes the given fields of an existing one (others keep their value).

                  --name N                display name
                  --price CENTS           price in minor units (cents, fen), an integer >= 0
                  --per-user-limit N      most units one user may hold at once; 0 = no limit
                  --activation-url T      activation link template; {code_id} and {card_number} are
                                          replaced (never the secret)
                """
        case .importCSV:
            return """
                usage: kamictl import FILE.csv --sku SKU [--batch B] [--dry-run]

                Loads card keys into SKU. kamid reads FILE itself (kamictl sends its absolute path), so
                kamid's user must be able to read it. The file needs a header row with a `secret`
                column (or 卡密 / 密码); UTF-8 with or without BOM, or GBK. Rejected rows (duplicates,
                blanks, bad values) are listed with their line numbers; a code is never imported twice.

                  --sku SKU               the SKU the codes belong to (required)
                  --batch B               batch name recorded with the codes (to void them together)
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
                Exit status 1 when a violation is found; the violations are printed.
                """
        case .stats:
            return """
                usage: kamictl stats

                Prints kamid's counters: commit batches and per-SKU stock.
                """
        }
    }
}
