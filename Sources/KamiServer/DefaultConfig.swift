/// kamid's embedded default config: the text of `Config/kamid.conf`, byte for byte (a test
/// compares them). `kamid --print-default-config` prints it.
enum DefaultConfig {
    static let text = ##"""
# kamid.conf: the configuration of kamid, Kami's card-key fulfillment daemon.
#
# Syntax: one `key = value` per line; `#` starts a comment (at the start of a line, or
# after whitespace). A value may be written in double quotes ("...", with \" and \\) when
# it holds a `#` or leading/trailing spaces. `${NAME}` in a value is replaced by the
# environment variable NAME (an unset variable is an error), which is how the systemd unit
# points at ${CREDENTIALS_DIRECTORY} and ${STATE_DIRECTORY}.
#
# Parsing is strict: an unknown key, a key given twice (except `listen` and the
# `token_file.CLIENT` keys, one per client), a malformed value or a value out of range stops
# kamid at start, or makes a reload fail, with an error naming file:line:key. A reload
# (SIGHUP, `systemctl reload kamid`, or `kamictl reload`) reads this whole file again and
# validates all of it before applying anything; if anything is wrong it keeps the running
# configuration and says why. Keys marked [restart] only take effect at the next start; a
# reload that changes them says so rather than ignoring them.
#
# Relative paths (unix_socket, master_key_file, token_dir, token files) are relative to
# data_dir, like PostgreSQL's paths are relative to its data directory.
#
# Command-line options override this file (and keep overriding it across reloads):
# --listen, --data-dir, --socket, --durability, --master-key-file, --metrics-listen.
#
# SKUs are not configuration: they are data in the database, managed with `kamictl sku`.
#
# This file, with these values, is also kamid's embedded default: `kamid` without
# --config runs exactly as if given this file (`kamid --print-default-config` prints it).


# --- Network -------------------------------------------------------------------------

# listen [restart]: a TCP address storefronts connect to, IPV4:PORT or [IPV6]:PORT. An
# address, not a host name: `localhost` is refused (write 127.0.0.1 or [::1]). Repeat
# the key to listen on several addresses (the first `listen` line replaces the default).
# `listen = none` turns TCP off, leaving only the Unix socket. Anything but loopback puts
# the protocol on a network: tokens are checked on every connection, but the protocol is
# not encrypted, so keep kamid behind a private network or a TLS-terminating proxy.
listen = 127.0.0.1:7420

# unix_socket [restart]: path of the Unix socket, for operators (kamictl). Instead of a
# token, the peer's uid is checked: only kamid's own uid and root are let in, and every
# connection let in may run operator operations (imports, exports, void, refund, reload),
# which are accepted only here. Storefronts connect over TCP with a token, even on the
# same host (one running as kamid's own uid could use the socket, with operator rights).
unix_socket = kamid.sock

# unix_socket_mode [restart]: permission bits of the socket file, in octal, 0600 to 0666.
# They only decide who may connect(2) at all: kamid then refuses every peer whose uid is
# not its own or root, whatever its group, so group bits (as in 0660) let no group member
# in, not even for storefront operations.
unix_socket_mode = 0660

# loop_threads [restart]: event loop threads, 0 to 64; 0 means one per core but one (at
# least one): the commit writer thread, busy with every issue, needs the other. Each loop
# owns its connections and does its own reads, decoding and writes, so more loops than
# cores only adds context switches.
loop_threads = 0

# max_connections: open client connections at most, 1 to 1000000. One past it is answered
# BUSY and closed. An idle connection costs about 5 KiB of buffers; one in the middle of a
# maximal request up to 130 KiB, so 10000 connections can hold about 1.3 GiB at worst; the
# file descriptor limit (LimitNOFILE in the unit) must be above this.
max_connections = 10000

# idle_timeout_ms: a connection that sends nothing for this long is closed, 1000 to
# 86400000 (a day). Short timeouts free memory held by abandoned clients; long ones suit
# storefronts that keep a pool of connections open between sales.
idle_timeout_ms = 300000

# request_timeout_ms: once the first byte of a request has arrived, the whole request must
# arrive within this long, 100 to 600000, or the connection is closed. Real clients send a
# request in one write; a client trickling bytes to hold a connection open (slowloris) is
# cut off here, which idle_timeout_ms alone cannot do since every byte counts as activity.
request_timeout_ms = 10000

# shutdown_timeout_ms: on SIGTERM kamid stops accepting and waits at most this long for
# replies in flight before closing connections, 100 to 300000. Every request either gets
# its reply or sees its connection closed; nothing acknowledged is lost either way. Keep
# it below the unit's TimeoutStopSec.
shutdown_timeout_ms = 10000

# max_request_bytes: the largest request accepted, as a binary frame or a JSON line, 4096
# to 65536. Larger requests are answered TOO_LARGE. Every connection's read buffer must
# hold one whole request, so this bounds what a slow or hostile client can make kamid
# buffer; the largest legal storefront request needs under 2 KiB.
max_request_bytes = 65536


# --- Storage -------------------------------------------------------------------------

# data_dir [restart]: where the database (kami.db and its WAL), the generated master key
# and tokens live. Created 0700 on first start. Put it on a local disk that honours fsync.
data_dir = ./kami-data

# durability [restart]: `full` fsyncs the write-ahead log before any reply says "done":
# an acknowledged order survives a power cut. `normal` survives a crash of kamid but the
# last commits may roll back on power loss, and a rolled-back issue may then be handed out
# again. Keep `full` unless you know your storage has a battery-backed cache.
durability = full

# commit_batch_max: most requests committed together in one transaction (one fsync), 1 to
# 1024. Group commit is what turns a few thousand fsyncs per second into tens of thousands
# of orders per second; a smaller cap gives the first request of a burst a shorter wait.
commit_batch_max = 1024

# commit_delay_us: how long the writer waits for more requests before committing a batch
# that is not full, 0 to 10000 microseconds. 0 commits as soon as the disk is free, which
# already batches whatever arrived meanwhile; a small delay can raise throughput on disks
# with slow fsync at the cost of that much latency per request.
commit_delay_us = 0


# --- Orders --------------------------------------------------------------------------

# hold_ttl_default_ms: how long a `reserve` holds stock when the storefront gives no
# ttl_ms, 1000 to hold_ttl_max_ms. A hold that is neither committed nor released by then
# expires and its codes return to stock. Match it to the payment page's timeout.
hold_ttl_default_ms = 900000

# hold_ttl_max_ms: the longest hold a storefront may ask for, 1000 to 86400000 (a day).
# Long holds take stock out of a flash sale for that long.
hold_ttl_max_ms = 86400000


# --- Clients and keys ----------------------------------------------------------------

# token_dir: a directory of token files named CLIENT.token (one token per file, 0600);
# `kamictl token new CLIENT` writes them here and kamid accepts the new token at once.
# Read again at every reload. When no client is configured anywhere, kamid generates
# default.token here on first start.
token_dir = .

# token_file.CLIENT: the token file of one storefront client, e.g.
#   token_file.shop1 = ${CREDENTIALS_DIRECTORY}/shop1.token
# for a token handed over by systemd's LoadCredential. A client named here overrides a
# token_dir file of the same name. Token files are read again at every reload, so rotating
# a token is: replace the file, reload. Tokens are at least 16 characters.

# master_key_file [restart]: the 32-byte key that seals every code in the database
# (AES-256-GCM). Generated on first start when it is missing and the database is new;
# when the database exists and the key does not, kamid refuses to start. Back it up apart
# from the database: without it no code can be read; with it and a database copy, all can.
master_key_file = master.key


# --- Observability -------------------------------------------------------------------

# metrics_listen [restart]: loopback IPV4:PORT or [::1]:PORT for the HTTP endpoints
# /metrics (Prometheus text format), /healthz, /readyz and the dashboard (/dashboard),
# or `off`. Only loopback addresses are accepted: metrics carry no secrets, but stock
# levels and sales are business data. Reach it from elsewhere through an SSH tunnel.
metrics_listen = 127.0.0.1:9420

# dashboard_token_file: a file (mode 0600, at least 16 characters, one word) holding the
# token the dashboard asks for, or `none`. With `none`, anyone who can reach the loopback
# metrics port sees the dashboard (stock, sales, profit): fine on a single-user host, not
# on a shared one. With a token, a browser signs in once at /dashboard (the token goes in
# a form body, never in a URL) and keeps a 12-hour cookie; scripts send
# `Authorization: Bearer TOKEN`. /metrics, /healthz and /readyz stay open either way.
# Replacing the file and reloading signs every browser out.
dashboard_token_file = none

# log_level: the least important events logged: error, warning, notice, info or debug.
# Logs go to stderr, one line per event with journald priority prefixes (<3>..<7>), as
# `event key=value ...`. Secrets, tokens and codes are never logged at any level.
log_level = info


# --- Upstream suppliers ------------------------------------------------------------------

# upstream_callback_listen [restart]: IPV4:PORT or [IPV6]:PORT where suppliers' asynchronous
# callbacks arrive (HTTP, path /upstream/callback/SUPPLIER), or `off`. Every callback is
# checked for its supplier's signature, a timestamp window and replay before it changes
# anything; a duplicate is answered as the first and changes nothing. Put it behind a TLS
# terminating proxy when suppliers call over the internet.
upstream_callback_listen = off

# upstream_callback_url: the URL base suppliers are told to call back (the notify_url of each
# order is this plus /upstream/callback/SUPPLIER), or `auto` for the listener's own address
# (loopback setups and tests).
upstream_callback_url = auto

# upstream_sync_ms: how often every supplier's product list (price and stock) is fetched, in
# ms, 0 (never) to 86400000. A changed cost is journaled with its time (the cost history) and
# applies to the next order at once, margin guard included.
upstream_sync_ms = 60000

# upstream_wait_max_ms: the longest a paid order waits when no supplier can take it now
# (every breaker open, or a SKU whose no-candidate policy is `wait`), 1000 to 86400000; then
# it goes to the dead-letter list (`kamictl upstream failed`).
upstream_wait_max_ms = 600000

# supplier.ID.KEY: one upstream supplier per ID (1-64 letters, digits, `-`, `_`, `.`). No
# supplier is defined by default. The keys of a supplier, with their defaults:
#   url                   http:// or https:// base URL (required); https is verified against
#                         the system CA store, or ca_file
#   style                 form | gateway | hmac | kami (default form; docs/suppliers.md has
#                         every field of each)
#   merchant_id           our account at the supplier (required except for kami)
#   credentials_file      the signing key, a file of mode 0600 (required; relative to data_dir)
#   sign                  md5 | sha256, the digest of form and gateway signatures (md5)
#   callback_secret_file  the key callbacks are signed with, when it differs (0600)
#   ca_file               a CA bundle to verify the supplier's certificate with
#   connect_timeout_ms    100...60000 (3000)
#   timeout_ms            one request's longest wait, 100...300000 (10000); past it the
#                         outcome is unknown and found out by query, never assumed
#   max_concurrent        requests in flight at once, 1...10000 (64)
#   requests_per_second   0 (no limit)...1000000 (0)
#   not_sold_after_ms     a placed order the supplier still does not know after this long was
#                         not sold, 1000...86400000 (300000)
#   poll_ms, poll_max_ms  first and longest wait between queries of an order in progress or of
#                         unknown outcome (1000, 30000); the wait doubles
#   breaker_error_rate    the circuit breaker opens when this share of the last
#   breaker_window        breaker_window attempts failed (0.5, 20)...
#   breaker_open_ms       ...for this long, then lets one probe through (10000)
#   direct_top_up         true: the supplier credits the buyer's account (the order's user) and
#                         its receipt is delivered in place of a code (false)
#   allow_plain_http      true allows http:// to a host that is not loopback (false: without
#                         TLS anyone on the path could forge the supplier's answers)
# Example:
#   supplier.fulu.url = https://openapi.example.com/api/gateway
#   supplier.fulu.style = gateway
#   supplier.fulu.merchant_id = 1234567
#   supplier.fulu.credentials_file = ${CREDENTIALS_DIRECTORY}/fulu.key
# Suppliers are reloadable: a reload applies new settings and keys to the next request.

# risk_rules: the risk gate's rules file (docs/risk.md; Config/risk.rules is a commented
# example), relative to data_dir unless absolute; `none`: no rules, every order is allowed
# (block and allow lists apply through list rules only). Checked by --check-config;
# a reload reads it again, and a file with an error is refused by file:line while the rules
# in force stay.
risk_rules = none

# risk_rate_entries [restart]: token buckets of all rate rules together, 1024 to 67108864.
# 32 bytes each: the default 262144 is 8 MiB. When full, the least recently seen of 8 keys
# is forgotten (it starts again with a full bucket).
risk_rate_entries = 262144

# risk_distinct_entries [restart]: keys of all distinct rules together (users per device,
# per IP, per payment account), 1024 to 67108864. 89 bytes each: 65536 is 5.6 MiB.
risk_distinct_entries = 65536

# risk_sketch_width [restart]: counters per row of each quota rule's count-min sketch, 1024
# to 67108864. Each quota rule costs 32 bytes per column (4 rows, two windows): 65536 is
# 2 MiB a rule. Wider sketches over-count less when many keys share a window.
risk_sketch_width = 65536

# risk_hold_entries [restart]: unpaid holds remembered for holds rules, 1024 to 67108864,
# about 160 bytes each: 262144 is 40 MiB at most. Past it new holds are not counted
# (kami_risk_holds_untracked_total).
risk_hold_entries = 262144

# risk_lookup_failures_per_minute: failed `order` lookups (an unknown order, or another
# user's) allowed per user and per buyer IP a minute, 1 to 100000; past it lookups are
# refused with LIMIT_REACHED before they reach the store (anti-scraping).
risk_lookup_failures_per_minute = 30

# review_ttl_ms: how long an order the risk gate held for review waits for an operator
# (`kamictl review approve|deny`), or a paid order of a manual-delivery SKU waits for
# `kamictl deliver`, 1000 to 604800000 (7 days); then it is released (its codes go back, the
# storefront refunds a paid one), as if denied. A SKU can set its own (`sku set --review-ttl`).
review_ttl_ms = 86400000

# Webhooks (docs/webhooks.md): kamid POSTs each event (order.delivered,
# order.pending_upstream, order.failed, order.refunded, case.opened, case.resolved,
# stock.low, supplier.breaker_opened) to each endpoint, signed with HMAC-SHA256 over the
# timestamp and the body (headers Kami-Event-Id, Kami-Event-Type, Kami-Timestamp,
# Kami-Signature). Events are written to an outbox in the transaction that makes them, and
# delivered on a thread of their own: a slow receiver never slows issuing. Endpoints are
# reloadable; events of an endpoint removed from the config stay in the outbox and are sent
# if it comes back. Example:
#   webhook_url.shop = https://shop.example.com/kami/webhook
#   webhook_secret_file.shop = ${CREDENTIALS_DIRECTORY}/shop.whsec
#   webhook_events.shop = order.delivered, order.refunded, stock.low

# webhook_url.NAME: the endpoint NAME (letters, digits, `-`, `_`, `.`) is POSTed to at this
# http:// or https:// URL, with no credentials or query in it (a URL is not a secret: it
# may be logged). No default: no endpoint, no webhook.

# webhook_secret_file.NAME: the endpoint's signing secret, one word of 16 or more characters
# in a file of mode 0600, relative to data_dir unless absolute. Required with a URL.

# webhook_events.NAME: the event types the endpoint takes, comma separated (default: all).

# webhook_backoff_ms: a failed delivery (not 2xx, or no answer in webhook_timeout_ms) is
# retried after about this long, 10 to 86400000; each retry waits twice as long as the one
# before, half of each wait random (jitter).
webhook_backoff_ms = 1000

# webhook_backoff_max_ms: no wait between retries is longer, 10 to 86400000.
webhook_backoff_max_ms = 3600000

# webhook_retry_for_ms: retries stop this long after the event, 1000 to 604800000 (7 days);
# the event is then dead-lettered (`kamictl webhooks failed`, `kamictl webhooks replay`).
webhook_retry_for_ms = 86400000

# webhook_timeout_ms: longest wait for a receiver's whole answer, 100 to 120000.
webhook_timeout_ms = 10000

# webhook_concurrency: most deliveries in flight to one endpoint, 1 to 1024.
webhook_concurrency = 32

"""##
}
