<?php

declare(strict_types=1);

namespace Kami;

/**
 * A storefront's connection to kamid: JSON lines over TCP (docs/protocol.md).
 *
 * One Client holds one connection, opened on first use (with `hello` when a token is set),
 * reused for every call, and reopened when kamid closed it. Requests are sent one at a time
 * and every reply's `id` is checked against its request's.
 *
 * Retries: reserve, commit, issue and release are idempotent on the order id, activate
 * answers a repeat like the first call, and order, wait, entitlements, stock and ping change
 * nothing, so after a network error (refused, broken pipe, EOF, timeout) or
 * BUSY/UNAVAILABLE the client reconnects and sends the SAME request again, at most
 * `retries` more times with exponential backoff. kamid answers a
 * repeated order with the first answer (the same codes), never a second set. `risk` and
 * `case_open` are not repeated.
 *
 * Nothing here logs or puts into an exception message a secret, the token or a raw reply.
 */
final class Client
{
    private const DEFAULTS = [
        'client' => 'default',      // the storefront client name kamid knows the token by
        'token' => null,            // its token (null: no hello, e.g. a test server)
        'connect_timeout' => 3.0,   // seconds
        'timeout' => 10.0,          // seconds to wait for one reply (wait_ms is added on top)
        'retries' => 2,             // extra attempts of a retryable request
        'backoff' => 0.1,           // seconds before the first retry, doubled each time
        'backoff_max' => 2.0,       // seconds, cap of one backoff
        'logger' => null,           // callable(string $level, string $message, array $context)
    ];

    /** Optional request fields of reserve and issue (signals and money). */
    private const ORDER_OPTIONS = ['ip', 'device', 'payment_account', 'amount_cents', 'account_age_days',
        'phone_verified', 'challenge_token', 'currency', 'channel', 'campaign', 'coupon', 'distributor'];

    private const LINE_MAX = 2 * 1024 * 1024 + 2; // replyBytesMax plus "\r\n"

    private string $host;
    private int $port;
    /** @var array<string,mixed> */
    private array $options;
    /** @var resource|null */
    private $stream = null;
    private int $nextId;
    private ?ServerInfo $serverInfo = null;
    private int $connects = 0;

    /**
     * @param string $address `host:port` (`[::1]:7420` for IPv6) or `tcp://host:port`
     * @param array<string,mixed> $options see DEFAULTS above
     */
    public function __construct(string $address, array $options = [])
    {
        $unknown = array_diff(array_keys($options), array_keys(self::DEFAULTS));
        if ($unknown) {
            throw new \InvalidArgumentException('unknown option(s): ' . implode(', ', $unknown));
        }
        $address = preg_replace('#^tcp://#', '', $address);
        if (!preg_match('/^(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})$/', $address, $m) || (int) $m[2] > 65535) {
            throw new \InvalidArgumentException('address must be host:port');
        }
        $this->host = $m[1];
        $this->port = (int) $m[2];
        $this->options = $options + self::DEFAULTS;
        $this->nextId = random_int(1, 1 << 30);
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Keeps the token out of var_dump()/print_r(). */
    public function __debugInfo(): array
    {
        return ['address' => "$this->host:$this->port", 'client' => $this->options['client'],
            'connected' => $this->stream !== null, 'connects' => $this->connects];
    }

    // ---------------------------------------------------------------- storefront operations

    /**
     * Sells and delivers at once (after the buyer paid): state `committed` with codes and
     * secrets, or `pending_upstream` / `review` without codes (then wait()).
     *
     * @param array<string,mixed> $options ip, device, wait_ms, the risk signals
     *        (payment_account, amount_cents, account_age_days, phone_verified, challenge_token)
     *        and money labels (currency, channel, campaign, coupon, distributor)
     */
    public function issue(string $order, string $user, string $sku, int $qty, string $paymentRef, array $options = []): Order
    {
        $fields = ['order' => $order, 'user' => $user, 'sku' => $sku, 'qty' => $qty, 'payment_ref' => $paymentRef]
            + $this->pick($options, [...self::ORDER_OPTIONS, 'wait_ms']);
        return Order::fromReply($this->call('issue', $fields, true, (int) ($options['wait_ms'] ?? 0)));
    }

    /**
     * Holds codes for an unpaid order (state `reserved`, no secrets) until commit() or
     * release(), or until `ttl_ms` (null: kamid's default hold, 15 min) has passed.
     *
     * @param array<string,mixed> $options as for issue(), without wait_ms
     */
    public function reserve(string $order, string $user, string $sku, int $qty, ?int $ttlMs = null, array $options = []): Order
    {
        $fields = ['order' => $order, 'user' => $user, 'sku' => $sku, 'qty' => $qty, 'ttl_ms' => $ttlMs]
            + $this->pick($options, self::ORDER_OPTIONS);
        return Order::fromReply($this->call('reserve', $fields, true));
    }

    /**
     * Pays a reserved order: state `committed` with secrets (or `pending_upstream`).
     * Give `$user` (the signed-in buyer) so that another user's order is NotFound.
     */
    public function commit(string $order, string $paymentRef, ?string $user = null, int $waitMs = 0): Order
    {
        $fields = ['order' => $order, 'payment_ref' => $paymentRef, 'user' => $user, 'wait_ms' => $waitMs ?: null];
        return Order::fromReply($this->call('commit', $fields, true, $waitMs));
    }

    /** Gives a reserved order's codes back to the pool (state `released`). */
    public function release(string $order): Order
    {
        return Order::fromReply($this->call('release', ['order' => $order], true));
    }

    /** The order as it is now, with its codes once committed; only to its own user. */
    public function order(string $order, string $user, ?string $ip = null): Order
    {
        return Order::fromReply($this->call('order', ['order' => $order, 'user' => $user, 'ip' => $ip], true));
    }

    /**
     * Long-polls an order that is `pending_upstream` or in `review` until it settles or
     * $waitMs (0..60000) has passed; any other state is answered at once. kamid wants the
     * buyer's `user` over TCP. Uses this client's connection: keep a separate Client for
     * waits if other requests must not queue behind them.
     */
    public function wait(string $order, int $waitMs, ?string $user = null, ?string $ip = null): Order
    {
        $fields = ['order' => $order, 'wait_ms' => $waitMs, 'user' => $user, 'ip' => $ip];
        return Order::fromReply($this->call('wait', $fields, true, $waitMs));
    }

    /** One page of the codes a user owns (newest first); pass nextCursor back for more. */
    public function entitlements(string $user, ?int $limit = null, ?string $cursor = null, ?string $ip = null): EntitlementsPage
    {
        $fields = ['user' => $user, 'limit' => $limit, 'cursor' => $cursor, 'ip' => $ip];
        return EntitlementsPage::fromReply($this->call('entitlements', $fields, true));
    }

    /**
     * Marks the codes of the buyer's committed order `used` (activated): every code, or just
     * `$codeId`. `$user` must own the order: another user's order, like an unknown order or a
     * code id that is not the order's, is NotFoundException (and counts as a failed lookup for
     * the user and `$ip`, rate-limited like order()). Activating again is not an error: the
     * same answer, with the first activation's time. A refunded order is InvalidStateException.
     *
     * @return Code[] one per code, state and status `used`, `usedAtMs` set, never a secret
     */
    public function activate(string $order, string $user, ?int $codeId = null, ?string $ip = null): array
    {
        if ($codeId !== null && $codeId <= 0) {
            throw new \InvalidArgumentException('code id must be positive (null: every code of the order)');
        }
        $fields = ['order' => $order, 'user' => $user, 'code_id' => $codeId, 'ip' => $ip];
        return self::codesOf($this->call('activate', $fields, true), 'activate');
    }

    /**
     * Marks used the one code an activation token names: the `{token}` of a SKU's activation
     * link template, which a brand's page hands back. A forged or unknown token is
     * NotFoundException; a genuine one past its time (15 minutes) is ExpiredException (the
     * buyer opens the link again from the order). Repeating it is not an error.
     *
     * @return Code[] the one code, state and status `used`, never a secret
     */
    public function activateToken(string $token, ?string $ip = null): array
    {
        return self::codesOf($this->call('activate', ['token' => $token, 'ip' => $ip], true), 'activate');
    }

    public function stock(string $sku): Stock
    {
        return Stock::fromReply($this->call('stock', ['sku' => $sku], true));
    }

    /**
     * Asks the risk gate about a storefront event (`login`, `register`, `pay`, ...).
     * Not repeated after a lost reply (it counts towards rate rules).
     *
     * @param array<string,mixed> $signals user, ip, device, sku, qty and the risk signals
     */
    public function risk(string $event, array $signals = []): RiskVerdict
    {
        $fields = ['event' => $event] + $this->pick($signals,
            ['user', 'ip', 'device', 'sku', 'qty', 'payment_account', 'amount_cents', 'account_age_days',
                'phone_verified', 'challenge_token']);
        $reply = $this->call('risk', $fields, false);
        return RiskVerdict::fromArray($reply);
    }

    /**
     * Opens an after-sales case on the buyer's own delivered order
     * (`invalid_code`, `not_received`, `other`). Not repeated after a lost reply.
     *
     * @return array<string,mixed> the case as kamid answers it
     */
    public function openCase(string $order, string $user, string $kind, ?int $codeId = null, ?string $note = null): array
    {
        $fields = ['order' => $order, 'user' => $user, 'kind' => $kind, 'code_id' => $codeId, 'note' => $note];
        $reply = $this->call('case_open', $fields, false);
        unset($reply['id'], $reply['ok']);
        return $reply;
    }

    /** Round trip to kamid; returns the seconds it took. */
    public function ping(): float
    {
        $t = microtime(true);
        $this->call('ping', [], true);
        return microtime(true) - $t;
    }

    /** What kamid said to hello (connects if needed). */
    public function serverInfo(): ServerInfo
    {
        if ($this->serverInfo === null) {
            $this->withRetries('hello', true, fn () => $this->connect());
        }
        return $this->serverInfo ?? new ServerInfo(1, '', []);
    }

    /** How many connections this client has opened so far (for metrics and tests). */
    public function connectCount(): int
    {
        return $this->connects;
    }

    public function isConnected(): bool
    {
        return $this->stream !== null;
    }

    public function close(): void
    {
        if ($this->stream !== null) {
            @fclose($this->stream);
            $this->stream = null;
        }
    }

    // ---------------------------------------------------------------- plumbing

    /**
     * Sends one request and returns the reply object (`ok` true), retrying a retryable
     * request after a network error or BUSY/UNAVAILABLE.
     *
     * @param array<string,mixed> $fields null values are left out
     * @return array<string,mixed>
     */
    public function call(string $op, array $fields, bool $retryable, int $waitMs = 0): array
    {
        $request = ['op' => $op] + array_filter($fields, static fn ($v) => $v !== null);
        return $this->withRetries($op, $retryable, function () use ($op, $request, $waitMs) {
            $this->ensureConnected();
            return $this->roundTrip($op, $request, (float) $this->options['timeout'] + $waitMs / 1000);
        });
    }

    private function withRetries(string $op, bool $retryable, callable $attempt): mixed
    {
        $tries = 1 + ($retryable ? max(0, (int) $this->options['retries']) : 0);
        $delay = (float) $this->options['backoff'];
        for ($n = 1; ; $n++) {
            try {
                return $attempt();
            } catch (ProtocolException $e) {
                $this->close();
                throw $e; // not a passing network fault: repeating it would likely read garbage again
            } catch (ConnectionException $e) {
                $this->close();
                if ($n >= $tries) {
                    throw $e;
                }
                $this->log('warning', 'kamid request failed, retrying', ['op' => $op, 'attempt' => $n, 'error' => $e->getMessage()]);
            } catch (BusyException | UnavailableException $e) {
                if ($n >= $tries) {
                    throw $e;
                }
                $this->log('warning', 'kamid busy, retrying', ['op' => $op, 'attempt' => $n, 'code' => $e->getErrorCode()]);
            }
            $sleep = min((float) $this->options['backoff_max'], $delay) * (0.5 + mt_rand() / mt_getrandmax() / 2);
            usleep((int) ($sleep * 1e6));
            $delay *= 2;
        }
    }

    private function ensureConnected(): void
    {
        if ($this->stream !== null && $this->peerClosed()) {
            $this->log('info', 'kamid closed the connection; reconnecting', []);
            $this->close();
        }
        if ($this->stream === null) {
            $this->connect();
        }
    }

    /** True when kamid has closed (or reset) the idle connection: it is readable at EOF. */
    private function peerClosed(): bool
    {
        $r = [$this->stream];
        $w = $e = null;
        $n = @stream_select($r, $w, $e, 0, 0);
        if ($n === false) {
            return true;
        }
        if ($n === 0) {
            return false;
        }
        // Readable while idle: EOF, a reset, or a stray byte (a protocol violation anyway).
        return true;
    }

    private function connect(): void
    {
        $this->close();
        $target = "tcp://$this->host:$this->port";
        $errno = 0;
        $errstr = '';
        $stream = @stream_socket_client($target, $errno, $errstr, (float) $this->options['connect_timeout']);
        if ($stream === false) {
            $msg = "cannot connect to $this->host:$this->port: " . ($errstr !== '' ? $errstr : "errno $errno");
            throw ($errno === 110 || stripos($errstr, 'timed out') !== false)
                ? new TimeoutException($msg, 'connect') : new ConnectionException($msg, 'connect');
        }
        stream_set_blocking($stream, true);
        stream_set_write_buffer($stream, 0);
        if (function_exists('socket_import_stream') && defined('TCP_NODELAY')) {
            $sock = @socket_import_stream($stream);
            if ($sock !== false && $sock !== null) {
                @socket_set_option($sock, SOL_TCP, TCP_NODELAY, 1);
            }
        }
        $this->stream = $stream;
        $this->connects++;
        if ($this->options['token'] !== null) {
            try {
                $reply = $this->roundTrip('hello', ['op' => 'hello', 'client' => (string) $this->options['client'],
                    'token' => (string) $this->options['token']], (float) $this->options['timeout']);
            } catch (KamiException $e) {
                $this->close(); // never keep a connection that is not authenticated
                throw $e;
            }
            $this->serverInfo = ServerInfo::fromReply($reply);
        }
    }

    /** @return array<string,mixed> */
    private function roundTrip(string $op, array $request, float $timeout): array
    {
        $id = $this->nextId++;
        $request = ['id' => $id] + $request;
        try {
            $line = json_encode($request, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR) . "\n";
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException("$op: a field cannot be encoded as JSON (invalid UTF-8?)");
        }
        $deadline = microtime(true) + $timeout;
        $this->writeAll($op, $line, $deadline);
        $replyLine = $this->readLine($op, $deadline);

        try {
            $reply = json_decode($replyLine, true, 64, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            $this->close();
            throw new ProtocolException("$op: kamid's reply is not JSON (" . strlen($replyLine) . ' bytes)', $op);
        }
        if (!is_array($reply) || !isset($reply['ok']) || !is_bool($reply['ok'])) {
            $this->close();
            throw new ProtocolException("$op: kamid's reply has no boolean 'ok'", $op);
        }
        if (($reply['id'] ?? null) !== $id) {
            // kamid echoes every id it could read; a mismatch means the stream is out of step.
            $this->close();
            throw new ProtocolException("$op: reply id does not match request id $id", $op);
        }
        if ($reply['ok'] === false) {
            $error = is_array($reply['error'] ?? null) ? $reply['error'] : [];
            throw ServerException::fromError($error, $op);
        }
        return $reply;
    }

    private function writeAll(string $op, string $data, float $deadline): void
    {
        $off = 0;
        $len = strlen($data);
        while ($off < $len) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                $this->close();
                throw new TimeoutException("$op: timed out sending the request", $op);
            }
            $r = null;
            $w = [$this->stream];
            $e = null;
            $ready = @stream_select($r, $w, $e, (int) $left, (int) (fmod($left, 1.0) * 1e6));
            if ($ready === 0) {
                continue;
            }
            $n = $ready === false ? false : @fwrite($this->stream, substr($data, $off));
            if ($n === false || $n === 0) {
                $this->close();
                throw new ConnectionException("$op: connection to kamid lost while sending", $op);
            }
            $off += $n;
        }
    }

    private function readLine(string $op, float $deadline): string
    {
        $buf = '';
        while (true) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                $this->close(); // a late reply would otherwise answer the next request
                throw new TimeoutException("$op: no reply from kamid in time", $op);
            }
            stream_set_timeout($this->stream, (int) $left, (int) (fmod($left, 1.0) * 1e6));
            $chunk = @fgets($this->stream, self::LINE_MAX + 1 - strlen($buf));
            if ($chunk === false || $chunk === '') {
                $meta = stream_get_meta_data($this->stream);
                if ($meta['timed_out']) {
                    continue; // the loop checks the deadline
                }
                $this->close();
                throw new ConnectionException("$op: kamid closed the connection before replying", $op);
            }
            $buf .= $chunk;
            if (str_ends_with($buf, "\n")) {
                $line = rtrim($buf, "\r\n");
                if (trim($line) === '') {
                    $buf = ''; // blank lines are skipped, as kamid does
                    continue;
                }
                return $line;
            }
            if (strlen($buf) >= self::LINE_MAX) {
                $this->close();
                throw new ProtocolException("$op: reply line longer than " . self::LINE_MAX . ' bytes', $op);
            }
        }
    }

    /** @return Code[] */
    private static function codesOf(array $reply, string $op): array
    {
        if (!isset($reply['codes']) || !is_array($reply['codes'])) {
            throw new ProtocolException("$op reply without codes", $op);
        }
        return array_map(static fn ($c) => Code::fromArray(is_array($c) ? $c : []), array_values($reply['codes']));
    }

    /** @return array<string,mixed> */
    private function pick(array $options, array $allowed): array
    {
        $unknown = array_diff(array_keys($options), $allowed);
        if ($unknown) {
            throw new \InvalidArgumentException('unknown field(s): ' . implode(', ', $unknown));
        }
        return $options;
    }

    private function log(string $level, string $message, array $context): void
    {
        $logger = $this->options['logger'];
        if (is_callable($logger)) {
            $logger($level, $message, $context);
        }
    }
}
