<?php

// Behaviour tests of Kami\Client against a real kamid (started by clients/php/test.sh).
//
//   php clients/php/tests/run.php HOST PORT --token-file F --kamictl PATH --socket SOCK
//       --codes DIR --restart CMD --kamid PATH
//
// SKUs made by test.sh: vip (per-user limit 2, 8 codes), solo (1 code), hold (6), retry (8),
// act (8; the activation tests give it a link template and a usage guide);
// DIR/<sku>.csv holds what was imported. Plain PHP, no PHPUnit: each test is a closure,
// a failed check throws, and the exit status is the number of failed tests (capped).

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Kami\Client;
use Kami\Code;
use Kami\ConflictException;
use Kami\ConnectionException;
use Kami\InvalidStateException;
use Kami\KamiException;
use Kami\LimitReachedException;
use Kami\NotFoundException;
use Kami\BadRequestException;
use Kami\ProtocolException;
use Kami\ServerException;
use Kami\SoldOutException;
use Kami\TimeoutException;
use Kami\UnauthorizedException;

error_reporting(E_ALL);
// Warnings become failures, as in frameworks that turn them into exceptions; like those,
// this handler leaves alone what the client silences with @.
set_error_handler(static function (int $no, string $str, string $file, int $line): bool {
    if (!(error_reporting() & $no)) {
        return false;
    }
    throw new \ErrorException($str, 0, $no, $file, $line);
});

// ------------------------------------------------------------------ arguments

if ($argc < 3) {
    fwrite(STDERR, "usage: run.php HOST PORT --token-file F --kamictl PATH --socket SOCK --codes DIR --restart CMD --kamid PATH\n");
    exit(2);
}
[$host, $port] = [$argv[1], (int) $argv[2]];
if ($host !== '127.0.0.1') {
    fwrite(STDERR, "tests talk to 127.0.0.1 only\n");
    exit(2);
}
$opt = [];
for ($i = 3; $i + 1 < $argc; $i += 2) {
    $opt[ltrim($argv[$i], '-')] = $argv[$i + 1];
}
foreach (['token-file', 'kamictl', 'socket', 'codes', 'restart', 'kamid'] as $k) {
    if (!isset($opt[$k])) {
        fwrite(STDERR, "missing --$k\n");
        exit(2);
    }
}
$token = trim((string) file_get_contents($opt['token-file']));
$address = "$host:$port";
$run = 'r' . bin2hex(random_bytes(3)); // order and user ids unique to this run

// ------------------------------------------------------------------ helpers

final class AssertionFailed extends \Exception
{
}

function check(bool $cond, string $what): void
{
    if (!$cond) {
        throw new AssertionFailed($what);
    }
}

function same(mixed $expected, mixed $actual, string $what): void
{
    if ($expected !== $actual) {
        throw new AssertionFailed("$what: expected " . var_export($expected, true) . ', got ' . var_export($actual, true));
    }
}

/** Runs $fn and checks it throws $class; returns the exception. */
function throws(string $class, callable $fn, string $what): \Throwable
{
    try {
        $fn();
    } catch (\Throwable $e) {
        if ($e instanceof $class) {
            return $e;
        }
        throw new AssertionFailed("$what: expected $class, got " . get_class($e) . ': ' . $e->getMessage());
    }
    throw new AssertionFailed("$what: expected $class, nothing was thrown");
}

/** @return string[] the secrets imported into a SKU */
function imported(string $sku): array
{
    global $opt;
    $rows = array_map('str_getcsv', file("{$opt['codes']}/$sku.csv", FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES));
    array_shift($rows);
    return array_map(static fn ($r) => $r[0], $rows);
}

/** Stock counters as the operator sees them (kamictl over the Unix socket). */
function ctlStock(string $sku): array
{
    global $opt;
    $cmd = escapeshellarg($opt['kamictl']) . ' --socket ' . escapeshellarg($opt['socket'])
        . ' --timeout 30 --json stock ' . escapeshellarg($sku) . ' 2>&1';
    exec($cmd, $out, $rc);
    check($rc === 0, "kamictl stock $sku exited $rc");
    $j = json_decode(implode("\n", $out), true);
    check(is_array($j) && isset($j['issued']), "kamictl stock $sku: unexpected output");
    return $j;
}

/** One operator request, JSON over kamid's Unix socket (for fields kamictl has no flag for). */
function operatorRequest(array $request): array
{
    global $opt;
    $s = @stream_socket_client('unix://' . $opt['socket'], $errno, $errstr, 5.0);
    check($s !== false, "cannot connect to kamid's Unix socket: $errstr");
    try {
        stream_set_timeout($s, 30);
        fwrite($s, json_encode(['id' => 1] + $request, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR) . "\n");
        $line = fgets($s);
        check($line !== false, "no reply to {$request['op']} on the Unix socket");
        $reply = json_decode($line, true);
        check(is_array($reply) && ($reply['ok'] ?? false) === true, "{$request['op']} refused: " . trim((string) $line));
        return $reply;
    } finally {
        fclose($s);
    }
}

/** The `t` parameter of an activation link (the `{token}` of the template). */
function tokenOf(?string $url): string
{
    check($url !== null && str_starts_with($url, 'https://brand.example/redeem?t='), 'activation link from the template: ' . var_export($url, true));
    parse_str((string) parse_url($url, PHP_URL_QUERY), $q);
    check(isset($q['t']) && is_string($q['t']) && $q['t'] !== '', 'a token in the link');
    return $q['t'];
}

/** @param Code[] $codes @return array<int,Code> by code id */
function byId(array $codes): array
{
    $out = [];
    foreach ($codes as $c) {
        $out[$c->codeId] = $c;
    }
    return $out;
}

function restartKamid(): void
{
    global $opt;
    exec($opt['restart'] . ' 2>&1', $out, $rc);
    check($rc === 0, 'restarting kamid failed: ' . implode(' | ', $out));
}

function client(array $options = []): Client
{
    global $address, $token;
    return new Client($address, $options + ['token' => $token, 'timeout' => 5.0, 'connect_timeout' => 2.0]);
}

/** Starts a helper script that prints a port; returns [process, pipes, port]. */
function helper(string $script, array $args): array
{
    $cmd = array_merge([PHP_BINARY, __DIR__ . '/' . $script], $args);
    $proc = proc_open($cmd, [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    check(is_resource($proc), "cannot start $script");
    stream_set_timeout($pipes[1], 10);
    $line = fgets($pipes[1]);
    check($line !== false && ctype_digit(trim($line)), "$script printed no port");
    return [$proc, $pipes, (int) trim($line)];
}

function stopHelper(array $h): string
{
    [$proc, $pipes] = $h;
    fclose($pipes[0]); // the helper exits when its stdin closes
    $deadline = microtime(true) + 5;
    while (proc_get_status($proc)['running'] && microtime(true) < $deadline) {
        usleep(20000);
    }
    if (proc_get_status($proc)['running']) {
        proc_terminate($proc);
    }
    stream_set_blocking($pipes[2], false);
    $err = (string) stream_get_contents($pipes[2]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    proc_close($proc);
    return $err;
}

/** A logger that keeps every line, to check no secret is ever logged. */
final class MemoryLog
{
    /** @var string[] */
    public array $lines = [];

    public function __invoke(string $level, string $message, array $context): void
    {
        $this->lines[] = "$level $message " . json_encode($context);
    }

    public function contains(string $needle): bool
    {
        foreach ($this->lines as $l) {
            if (str_contains($l, $needle)) {
                return true;
            }
        }
        return false;
    }
}

// ------------------------------------------------------------------ tests

$tests = [];

$tests['hello: protocol 1 and features'] = function () {
    $c = client();
    $info = $c->serverInfo();
    same(1, $info->protocol, 'protocol');
    check($info->has('upstream'), 'feature upstream announced');
    check($c->ping() < 5.0, 'ping answered');
    same(1, $c->connectCount(), 'one connection for hello and ping');
};

$tests['wrong token is Unauthorized, not retried'] = function () {
    $c = client(['token' => 'not-the-token', 'retries' => 3]);
    $e = throws(UnauthorizedException::class, fn () => $c->stock('vip'), 'stock with a wrong token');
    same('UNAUTHORIZED', $e->getErrorCode(), 'error code');
    check(!str_contains($e->getMessage(), 'not-the-token'), 'token not in the message');
    same(1, $c->connectCount(), 'an UNAUTHORIZED hello is not retried');
    check(!$c->isConnected(), 'the unauthenticated connection is closed');
};

$tests['issue returns codes with the imported secrets'] = function () use ($run) {
    $c = client();
    $before = $c->stock('vip');
    $o = $c->issue("$run-A1", "$run-alice", 'vip', 2, 'pay-A1');
    same('committed', $o->state, 'state');
    check($o->isCommitted() && !$o->isInProgress(), 'isCommitted');
    same("$run-A1", $o->order, 'order id');
    same(2, $o->qty, 'qty');
    same(2, count($o->codes), 'two codes');
    $secrets = $o->secrets();
    same(2, count($secrets), 'two secrets');
    foreach ($secrets as $s) {
        check(in_array($s, imported('vip'), true), 'secret is one of the imported codes');
    }
    same(2, count(array_unique($o->codeIds())), 'distinct code ids');
    foreach ($o->codes as $code) {
        same('vip', $code->sku, 'code sku');
        if ($code->cardNumber !== null) {
            check(str_starts_with($code->cardNumber, 'CARD-vip-'), 'card number imported with it');
        }
    }
    $after = $c->stock('vip');
    same($before->issued + 2, $after->issued, 'issued +2');
    same($before->available - 2, $after->available, 'available -2');
    same(1, $c->connectCount(), 'one connection reused for three requests');
};

$tests['same order id again returns the same codes (idempotent retry)'] = function () use ($run) {
    $c = client();
    $first = $c->order("$run-A1", "$run-alice");
    $issuedBefore = ctlStock('vip')['issued'];
    $again = $c->issue("$run-A1", "$run-alice", 'vip', 2, 'pay-A1');
    same($first->codeIds(), $again->codeIds(), 'same code ids');
    same($first->secrets(), $again->secrets(), 'same secrets');
    $c2 = client(); // another connection, as after a PHP-FPM worker restart
    same($first->codeIds(), $c2->issue("$run-A1", "$run-alice", 'vip', 2, 'pay-A1')->codeIds(), 'same codes on a new connection');
    same($issuedBefore, ctlStock('vip')['issued'], 'nothing more issued');
};

$tests['same order id, other arguments: Conflict'] = function () use ($run) {
    $c = client();
    $e = throws(ConflictException::class, fn () => $c->issue("$run-A1", "$run-alice", 'vip', 2, 'pay-OTHER'), 'another payment_ref');
    same('CONFLICT', $e->getErrorCode(), 'code');
    check($e instanceof ServerException && $e instanceof KamiException, 'hierarchy');
    same('issue', $e->getOp(), 'op on the exception');
};

$tests['over the per-user limit: LimitReached (other users unaffected)'] = function () use ($run) {
    $c = client();
    // alice holds 2 = the limit of vip.
    $e = throws(LimitReachedException::class, fn () => $c->issue("$run-A2", "$run-alice", 'vip', 1, 'pay-A2'), 'alice a third');
    same('LIMIT_REACHED', $e->getErrorCode(), 'code');
    $b = $c->issue("$run-B1", "$run-bob", 'vip', 2, 'pay-B1');
    same('committed', $b->state, 'bob, a different user, may buy his 2');
    throws(LimitReachedException::class, fn () => $c->issue("$run-B2", "$run-bob", 'vip', 1, 'pay-B2'), 'bob over his limit');
    throws(NotFoundException::class, fn () => $c->order("$run-B2", "$run-bob"), 'a refused order was not written');
};

$tests['sold out: SoldOut'] = function () use ($run) {
    $c = client();
    $o = $c->issue("$run-S1", "$run-carol", 'solo', 1, 'pay-S1');
    same(imported('solo'), $o->secrets(), 'the only code');
    $e = throws(SoldOutException::class, fn () => $c->issue("$run-S2", "$run-dave", 'solo', 1, 'pay-S2'), 'second buyer');
    same('SOLD_OUT', $e->getErrorCode(), 'code');
    same(0, $c->stock('solo')->available, 'nothing available');
    throws(SoldOutException::class, fn () => $c->reserve("$run-S3", "$run-dave", 'solo', 1), 'reserve of a sold-out SKU');
};

$tests['unknown order, SKU, another user\'s order: NotFound; bad qty: BadRequest'] = function () use ($run) {
    $c = client();
    $e = throws(NotFoundException::class, fn () => $c->order("$run-nope", "$run-alice"), 'unknown order');
    same('NOT_FOUND', $e->getErrorCode(), 'code');
    throws(NotFoundException::class, fn () => $c->order("$run-A1", "$run-mallory"), 'alice\'s order asked by mallory');
    throws(NotFoundException::class, fn () => $c->issue("$run-N1", "$run-alice", 'no-such-sku', 1, 'p'), 'unknown SKU');
    throws(NotFoundException::class, fn () => $c->stock('no-such-sku'), 'stock of an unknown SKU');
    throws(NotFoundException::class, fn () => $c->release("$run-nope"), 'release of an unknown order');
    throws(BadRequestException::class, fn () => $c->issue("$run-Q1", "$run-alice", 'hold', 101, 'p'), 'qty 101');
    throws(BadRequestException::class, fn () => $c->issue("$run-Q2", 'has space', 'hold', 1, 'p'), 'user with a space');
    same(1, $c->connectCount(), 'errors do not drop the connection');
};

$tests['reserve then commit'] = function () use ($run) {
    $c = client();
    $before = $c->stock('hold');
    $r = $c->reserve("$run-R1", "$run-erin", 'hold', 2, 60000);
    same('reserved', $r->state, 'state');
    same(2, count($r->codes), 'two codes held');
    same([], $r->secrets(), 'no secret before payment');
    check($r->expiresAtMs > (int) (microtime(true) * 1000), 'hold deadline in the future');
    $mid = $c->stock('hold');
    same($before->reserved + 2, $mid->reserved, 'reserved +2');
    same($before->available - 2, $mid->available, 'available -2');
    same($r->codeIds(), $c->reserve("$run-R1", "$run-erin", 'hold', 2, 60000)->codeIds(), 'repeated reserve: same hold');

    $p = $c->commit("$run-R1", 'pay-R1', "$run-erin");
    same('committed', $p->state, 'committed');
    same($r->codeIds(), $p->codeIds(), 'the held codes');
    same(2, count($p->secrets()), 'secrets after payment');
    foreach ($p->secrets() as $s) {
        check(in_array($s, imported('hold'), true), 'imported secret');
    }
    same($p->secrets(), $c->commit("$run-R1", 'pay-R1', "$run-erin")->secrets(), 'repeated commit: same codes');
    throws(ConflictException::class, fn () => $c->commit("$run-R1", 'pay-OTHER'), 'commit with another payment_ref');
    $after = $c->stock('hold');
    same($before->issued + 2, $after->issued, 'issued +2');
    same($before->reserved, $after->reserved, 'reserved back');
    same($p->secrets(), $c->order("$run-R1", "$run-erin")->secrets(), 'order() shows them again');
    same('committed', $c->wait("$run-R1", 1000, "$run-erin")->state, 'wait on a committed order answers at once');
    throws(InvalidStateException::class, fn () => $c->release("$run-R1"), 'release of a paid order');
};

$tests['reserve then release'] = function () use ($run) {
    $c = client();
    $before = $c->stock('hold');
    $r = $c->reserve("$run-R2", "$run-frank", 'hold', 1);
    same('reserved', $r->state, 'state');
    $rel = $c->release("$run-R2");
    same('released', $rel->state, 'released');
    same([], $rel->codes, 'no codes left on it');
    same('released', $c->release("$run-R2")->state, 'repeated release');
    $after = $c->stock('hold');
    same($before->available, $after->available, 'the code is back');
    same($before->reserved, $after->reserved, 'nothing reserved');
    throws(InvalidStateException::class, fn () => $c->commit("$run-R2", 'pay-R2'), 'commit after release');
};

$tests['entitlements: what the user owns, with secrets'] = function () use ($run) {
    $c = client();
    $page = $c->entitlements("$run-erin");
    same(2, count($page->codes), 'two codes');
    same(null, $page->nextCursor, 'one page');
    foreach ($page->codes as $code) {
        same("$run-R1", $code->order, 'owning order');
        same('issued', $code->state, 'code state');
        check(in_array($code->secret, imported('hold'), true), 'secret');
    }
    $p1 = $c->entitlements("$run-erin", 1);
    same(1, count($p1->codes), 'page of 1');
    check($p1->nextCursor !== null, 'a cursor for the next page');
    $p2 = $c->entitlements("$run-erin", 1, $p1->nextCursor);
    same(1, count($p2->codes), 'second page');
    check($p1->codes[0]->codeId !== $p2->codes[0]->codeId, 'pages differ');
    same([], $c->entitlements("$run-nobody")->codes, 'a user with nothing');
};

$tests['secrets stay out of dumps, messages and logs'] = function () use ($run) {
    $log = new MemoryLog();
    $c = client(['logger' => $log]);
    $o = $c->order("$run-A1", "$run-alice");
    $secret = $o->codes[0]->secret;
    check($secret !== null, 'has a secret');
    check(!str_contains(print_r($o, true), $secret), 'print_r masks the secret');
    ob_start();
    var_dump($o->codes[0]);
    check(!str_contains((string) ob_get_clean(), $secret), 'var_dump masks the secret');
    global $token;
    ob_start();
    var_dump($c);
    check(!str_contains((string) ob_get_clean(), $token), 'var_dump of the client hides the token');
    same($secret, $o->codes[0]->toArray()['secret'], 'toArray gives it to the caller');
    check(!$log->contains($secret), 'not logged');
};

const USAGE_GUIDE = "打开 App → 我的 → 兑换\n输入卡密";

$tests['activate by order: used for its owner, same time on repeat; others NotFound'] = function () use ($run) {
    $sku = operatorRequest(['op' => 'sku_set', 'sku' => 'act', 'name' => '月卡 act',
        'activation_url' => 'https://brand.example/redeem?t={token}', 'usage_guide' => USAGE_GUIDE]);
    same(USAGE_GUIDE, $sku['usage_guide'] ?? null, 'sku_set keeps the usage guide');
    $c = client();
    $o1 = $c->issue("$run-V1", "$run-kim", 'act', 2, 'pay-V1');
    $o2 = $c->issue("$run-V2", "$run-kim", 'act', 1, 'pay-V2');
    [$first, $second] = $o1->codeIds();
    $t0 = (int) (microtime(true) * 1000);

    $a = $c->activate("$run-V1", "$run-kim", $first, '203.0.113.7');
    same(1, count($a), 'one code activated');
    $code = $a[0];
    same($first, $code->codeId, 'the code asked for');
    same("$run-V1", $code->order, 'its order');
    same('act', $code->sku, 'its sku');
    same('used', $code->state, 'state used');
    same('used', $code->status, 'status used');
    check($code->isUsed(), 'isUsed');
    same(null, $code->secret, 'no secret in the answer');
    same(null, $code->activationUrl, 'no link in the answer');
    check($code->usedAtMs !== null && abs($code->usedAtMs - $t0) < 60000, 'used_at_ms set to about now');

    $again = $c->activate("$run-V1", "$run-kim", $first);
    same($code->usedAtMs, $again[0]->usedAtMs, 'repeat: the same used_at_ms');
    same('used', $again[0]->state, 'repeat: still used');

    $e = throws(NotFoundException::class, fn () => $c->activate("$run-V1", "$run-mallory"), 'another user\'s order');
    $unknown = throws(NotFoundException::class, fn () => $c->activate("$run-V9", "$run-kim"), 'an unknown order');
    same(str_replace("$run-V9", 'ORDER', $unknown->getServerMessage()), str_replace("$run-V1", 'ORDER', $e->getServerMessage()),
        'another user\'s order answers like an unknown one');
    throws(NotFoundException::class, fn () => $c->activate("$run-V1", "$run-kim", $o2->codeIds()[0]), 'a code of another order');
    throws(NotFoundException::class, fn () => $c->activate("$run-V1", "$run-kim", 999999), 'an unknown code id');
    throws(\InvalidArgumentException::class, fn () => $c->activate("$run-V1", "$run-kim", 0), 'code id 0 refused before sending');

    $page = $c->entitlements("$run-kim");
    $lines = byId($page->codes);
    same([$o2->codeIds()[0]], [$page->codes[0]->codeId], 'newest order first');
    same('used', $lines[$first]->status, 'entitlements: the activated code is used');
    same('used', $lines[$first]->state, 'entitlements: state used');
    same($code->usedAtMs, $lines[$first]->usedAtMs, 'entitlements: the same used_at_ms');
    check($lines[$first]->secret !== null, 'entitlements still show the buyer the secret');
    same('delivered', $lines[$second]->status, 'the other code: delivered');
    same('issued', $lines[$second]->state, 'the other code: issued');
    same(null, $lines[$second]->usedAtMs, 'the other code: no used_at_ms');
    foreach ($page->codes as $line) {
        same('月卡 act', $line->skuName, 'sku_name');
        same(USAGE_GUIDE, $line->usageGuide, 'usage_guide with its line break');
        same(null, $line->expiresAtMs, 'no expiry on imported codes');
        check($line->orderedAtMs !== null && abs($line->orderedAtMs - $t0) < 60000, 'ordered_at_ms');
    }
    check($page->codes[0]->orderedAtMs >= $lines[$first]->orderedAtMs, 'ordered_at_ms newest first');

    $all = byId($c->activate("$run-V1", "$run-kim"));
    $ids = array_keys($all);
    sort($ids);
    $want = [$first, $second];
    sort($want);
    same($want, $ids, 'every code of the order');
    same($code->usedAtMs, $all[$first]->usedAtMs, 'the first activation keeps its time');
    check($all[$second]->usedAtMs !== null, 'the second is used now');
    same('delivered', byId($c->entitlements("$run-kim")->codes)[$o2->codeIds()[0]]->status, 'the other order untouched');
};

$tests['activate by token: exactly the code the link names; tampered NotFound'] = function () use ($run) {
    $c = client();
    $o = $c->issue("$run-V3", "$run-lee", 'act', 2, 'pay-V3');
    [$keep, $target] = $o->codes;
    $token = tokenOf($target->activationUrl);
    tokenOf($keep->activationUrl);

    $last = substr($token, -1);
    $tampered = substr($token, 0, -1) . ($last === '0' ? '1' : '0');
    throws(NotFoundException::class, fn () => $c->activateToken($tampered), 'a tampered token');
    throws(NotFoundException::class, fn () => $c->activateToken('not-a-token'), 'garbage');
    same('delivered', byId($c->entitlements("$run-lee")->codes)[$target->codeId]->status, 'a refused token changes nothing');

    $a = $c->activateToken($token, '203.0.113.8');
    same(1, count($a), 'one code');
    same($target->codeId, $a[0]->codeId, 'the code the token names');
    same("$run-V3", $a[0]->order, 'its order');
    same('used', $a[0]->state, 'used');
    same(null, $a[0]->secret, 'no secret');
    check($a[0]->usedAtMs !== null, 'used_at_ms');
    same($a[0]->usedAtMs, $c->activateToken($token)[0]->usedAtMs, 'repeat: same used_at_ms');

    $lines = byId($c->entitlements("$run-lee")->codes);
    same('used', $lines[$target->codeId]->status, 'entitlements: used');
    same($a[0]->usedAtMs, $lines[$target->codeId]->usedAtMs, 'entitlements: its time');
    same('delivered', $lines[$keep->codeId]->status, 'the order\'s other code is not activated');
    same(null, $lines[$keep->codeId]->usedAtMs, 'and has no used_at_ms');
};

$tests['activate: a lost reply is retried and answers the same'] = function () use ($run, $port) {
    $c0 = client();
    $o = $c0->issue("$run-V4", "$run-moe", 'act', 1, 'pay-V4');
    $proxy = helper('flaky_proxy.php', [(string) $port, 'activate']);
    try {
        $c = new Client("127.0.0.1:{$proxy[2]}", ['token' => $GLOBALS['token'], 'timeout' => 5.0, 'retries' => 2, 'backoff' => 0.05]);
        $a = $c->activate("$run-V4", "$run-moe");
        same($o->codeIds(), array_map(static fn (Code $x) => $x->codeId, $a), 'the order\'s code');
        same(2, $c->connectCount(), 'the retry reconnected');
        same($a[0]->usedAtMs, $c0->activate("$run-V4", "$run-moe")[0]->usedAtMs, 'activated once, at the first call\'s time');
    } finally {
        $err = stopHelper($proxy);
    }
    check(str_contains($err, 'dropped the reply'), 'the proxy did drop a reply');
};

$tests['entitlements: a paid order waiting for an operator is one pending line'] = function () use ($run) {
    operatorRequest(['op' => 'sku_set', 'sku' => 'byhand', 'name' => '手动 byhand', 'price_cents' => 100, 'manual_delivery' => true]);
    $c = client();
    $o = $c->issue("$run-P1", "$run-ned", 'byhand', 2, 'pay-P1');
    same('review', $o->state, 'waits for an operator');
    $page = $c->entitlements("$run-ned");
    same(1, count($page->codes), 'one line');
    $line = $page->codes[0];
    check($line->isPending() && !$line->isUsed(), 'isPending');
    same(0, $line->codeId, 'no code yet');
    same('reserved', $line->state, 'state reserved');
    same("$run-P1", $line->order, 'its order');
    same('手动 byhand', $line->skuName, 'sku_name');
    same(null, $line->usageGuide, 'no usage guide');
    same(null, $line->secret, 'no secret');
    check($line->orderedAtMs !== null, 'ordered_at_ms');
    throws(InvalidStateException::class, fn () => $c->activate("$run-P1", "$run-ned"), 'nothing to activate yet');
};

$tests['reconnects after kamid restarts; a retried order id does not issue twice'] = function () use ($run) {
    $log = new MemoryLog();
    $c = client(['logger' => $log, 'retries' => 5, 'backoff' => 0.2]);
    $o = $c->issue("$run-X1", "$run-gina", 'retry', 1, 'pay-X1');
    same(1, $c->connectCount(), 'connected once');
    $issued = ctlStock('retry')['issued'];

    restartKamid(); // SIGTERM, same data dir, same port: the client's socket is dead

    $again = $c->issue("$run-X1", "$run-gina", 'retry', 1, 'pay-X1');
    same($o->codeIds(), $again->codeIds(), 'same code after the restart');
    same($o->secrets(), $again->secrets(), 'same secret after the restart');
    same(2, $c->connectCount(), 'reconnected once');
    same($issued, ctlStock('retry')['issued'], 'not issued twice');
    $fresh = $c->issue("$run-X2", "$run-gina", 'retry', 1, 'pay-X2');
    same('committed', $fresh->state, 'a new order on the new connection');
    same($issued + 1, ctlStock('retry')['issued'], 'one more issued');
    foreach ([$o, $fresh] as $ord) {
        check(!$log->contains($ord->secrets()[0]), 'no secret logged');
    }
};

$tests['kamid down for a moment: the retry waits it out, the order is issued once'] = function () use ($run, $port) {
    global $opt;
    $log = new MemoryLog();
    $c = client(['logger' => $log, 'retries' => 30, 'backoff' => 0.05, 'backoff_max' => 0.2]);
    $c->ping();
    $issued = ctlStock('retry')['issued'];
    $restart = proc_open($opt['restart'], [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'],
        2 => ['file', '/dev/null', 'w']], $pipes);
    try {
        // Wait (bounded) until the old kamid has stopped listening, then order while it is down.
        $deadline = microtime(true) + 10;
        while (microtime(true) < $deadline) {
            $probe = @stream_socket_client("tcp://127.0.0.1:$port", $en, $es, 0.2);
            if ($probe === false) {
                break;
            }
            fclose($probe);
            usleep(10000);
        }
        $o = $c->issue("$run-D1", "$run-judy", 'retry', 1, 'pay-D1');
        same('committed', $o->state, 'issued once kamid is back');
    } finally {
        $deadline = microtime(true) + 30;
        while (($st = proc_get_status($restart))['running'] && microtime(true) < $deadline) {
            usleep(20000);
        }
        proc_close($restart);
        same(0, $st['exitcode'], 'restart script succeeded');
    }
    same($issued + 1, ctlStock('retry')['issued'], 'issued exactly once');
    same($o->codeIds(), $c->issue("$run-D1", "$run-judy", 'retry', 1, 'pay-D1')->codeIds(), 'repeat: same code');
    echo "  # retries while kamid was down: ", count($log->lines), "\n";
};

$tests['restart between two requests of one client: reads work again'] = function () {
    $c = client();
    $s1 = $c->stock('retry');
    restartKamid();
    $s2 = $c->stock('retry');
    same($s1->issued, $s2->issued, 'same counters after the restart (durable)');
    same(2, $c->connectCount(), 'reconnected');
};

$tests['lost reply (connection dropped after kamid issued): retry gets the same codes, once'] = function () use ($run, $port) {
    $proxy = helper('flaky_proxy.php', [(string) $port, 'issue']);
    try {
        $log = new MemoryLog();
        $c = new Client("127.0.0.1:{$proxy[2]}", ['token' => $GLOBALS['token'], 'timeout' => 5.0, 'retries' => 2,
            'backoff' => 0.05, 'logger' => $log]);
        $issued = ctlStock('retry')['issued'];
        $o = $c->issue("$run-L1", "$run-hank", 'retry', 2, 'pay-L1');
        same('committed', $o->state, 'committed on the retry');
        same(2, $c->connectCount(), 'the first connection was dropped, the retry reconnected');
        same($issued + 2, ctlStock('retry')['issued'], 'issued exactly once');
        check($log->contains('retrying'), 'the retry was logged');
        foreach ($o->secrets() as $s) {
            check(!$log->contains($s), 'no secret in the log');
        }
        same($o->codeIds(), client()->order("$run-L1", "$run-hank")->codeIds(), 'kamid holds the same codes');
    } finally {
        $err = stopHelper($proxy);
    }
    check(str_contains($err, 'dropped the reply'), 'the proxy did drop a reply');
};

$tests['lost reply without retries: ConnectionException, then the same order id recovers it'] = function () use ($run, $port) {
    $proxy = helper('flaky_proxy.php', [(string) $port, 'issue']);
    try {
        $c = new Client("127.0.0.1:{$proxy[2]}", ['token' => $GLOBALS['token'], 'timeout' => 5.0, 'retries' => 0]);
        $issued = ctlStock('retry')['issued'];
        $e = throws(ConnectionException::class, fn () => $c->issue("$run-L2", "$run-ivan", 'retry', 1, 'pay-L2'), 'no retry');
        check(!$e instanceof ProtocolException, 'a network error, not a protocol one');
        same($issued + 1, ctlStock('retry')['issued'], 'kamid did issue it');
        $o = $c->issue("$run-L2", "$run-ivan", 'retry', 1, 'pay-L2'); // what the shop's retry job does
        same('committed', $o->state, 'recovered');
        same($issued + 1, ctlStock('retry')['issued'], 'still issued once');
    } finally {
        stopHelper($proxy);
    }
};

$tests['malformed reply: ProtocolException (a ConnectionException), no raw line in the message'] = function () {
    foreach (['garbage', 'wrongid'] as $mode) {
        $fake = helper('fake_kamid.php', [$mode]);
        try {
            $c = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 2.0, 'retries' => 2, 'backoff' => 0.01]);
            $t = microtime(true);
            $e = throws(ProtocolException::class, fn () => $c->stock('vip'), "$mode reply");
            check($e instanceof ConnectionException, "$mode: a ConnectionException");
            check(!str_contains($e->getMessage(), 'FAKE-SECRET'), "$mode: raw reply not in the message");
            check(!$c->isConnected(), "$mode: the connection was closed");
            same(1, $c->connectCount(), "$mode: a malformed reply is not retried");
            check(microtime(true) - $t < 2.0, "$mode: fails fast");
        } finally {
            stopHelper($fake);
        }
    }
};

$tests['no reply in time: TimeoutException within the bound'] = function () {
    foreach (['silent', 'noeol'] as $mode) {
        $fake = helper('fake_kamid.php', [$mode]);
        try {
            $c = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 0.5, 'retries' => 1, 'backoff' => 0.01]);
            $t = microtime(true);
            $e = throws(TimeoutException::class, fn () => $c->stock('vip'), "$mode server");
            $took = microtime(true) - $t;
            check($e instanceof ConnectionException, 'a ConnectionException');
            check($took >= 0.9 && $took < 3.0, "$mode: two attempts of 0.5 s (took " . round($took, 2) . ' s)');
            same(2, $c->connectCount(), "$mode: retried once on a new connection");
            check(!str_contains($e->getMessage(), 'FAKE-SECRET'), "$mode: partial reply not in the message");
        } finally {
            stopHelper($fake);
        }
    }
};

$tests['connection closed without a reply: ConnectionException after bounded retries'] = function () {
    $fake = helper('fake_kamid.php', ['eof']);
    try {
        $log = new MemoryLog();
        $c = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 2.0, 'retries' => 2, 'backoff' => 0.01, 'logger' => $log]);
        $e = throws(ConnectionException::class, fn () => $c->stock('vip'), 'eof');
        check(!$e instanceof TimeoutException && !$e instanceof ProtocolException, 'plain connection error');
        same(3, $c->connectCount(), 'three attempts');
        same(2, count($log->lines), 'two retries logged');
        $c2 = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 2.0, 'retries' => 2, 'backoff' => 0.01]);
        throws(ConnectionException::class, fn () => $c2->risk('login', ['user' => 'u']), 'risk');
        same(1, $c2->connectCount(), 'risk is not repeated');
    } finally {
        stopHelper($fake);
    }
};

$tests['BUSY is retried with the same request'] = function () {
    $fake = helper('fake_kamid.php', ['busy_then_ok']);
    try {
        $c = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 2.0, 'retries' => 1, 'backoff' => 0.01]);
        same(1, $c->stock('x')->available, 'answered on the retry');
        same(1, $c->connectCount(), 'BUSY keeps the connection');
    } finally {
        stopHelper($fake);
    }
};

$tests['an activation token past its time: ExpiredException, not retried'] = function () {
    $fake = helper('fake_kamid.php', ['expired']);
    try {
        $c = new Client("127.0.0.1:{$fake[2]}", ['token' => 't', 'timeout' => 2.0, 'retries' => 2, 'backoff' => 0.01]);
        $e = throws(\Kami\ExpiredException::class, fn () => $c->activateToken('12.1700000000.00112233445566778899aabbccddeeff'), 'old token');
        same('EXPIRED', $e->getErrorCode(), 'code');
        same('activate', $e->getOp(), 'op');
        check(!str_contains($e->getMessage(), '00112233445566778899'), 'the token is not in the message');
        same(1, $c->connectCount(), 'one connection');
    } finally {
        stopHelper($fake);
    }
};

$tests['nothing listening: ConnectionException, bounded'] = function () {
    $s = stream_socket_server('tcp://127.0.0.1:0');
    $name = stream_socket_get_name($s, false);
    fclose($s); // a port nobody listens on now
    $c = new Client($name, ['token' => 't', 'retries' => 2, 'backoff' => 0.01, 'connect_timeout' => 1.0]);
    $t = microtime(true);
    throws(ConnectionException::class, fn () => $c->ping(), 'connection refused');
    check(microtime(true) - $t < 3.0, 'bounded');
};

$tests['every error code maps to its exception; DENIED and CHALLENGE_REQUIRED carry the verdict'] = function () {
    foreach (ServerException::CLASSES as $code => $class) {
        $e = ServerException::fromError(['code' => $code, 'message' => 'm'], 'issue');
        same($class, get_class($e), $code);
        same($code, $e->getErrorCode(), "$code code");
    }
    $e = ServerException::fromError(['code' => 'CHALLENGE_REQUIRED', 'message' => 'captcha first', 'risk' => [
        'decision' => 'challenge', 'reason' => 'suspicious_attributes', 'rules' => ['new_account', 'no_phone'],
        'score' => 45, 'challenge' => 'v1.123.abc']], 'issue');
    check($e instanceof \Kami\ChallengeRequiredException && $e instanceof \Kami\RiskException, 'challenge class');
    same('v1.123.abc', $e->getChallengeToken(), 'challenge token');
    same(['new_account', 'no_phone'], $e->getVerdict()->rules, 'rules');
    same(45, $e->getVerdict()->score, 'score');
    $d = ServerException::fromError(['code' => 'DENIED', 'message' => 'no', 'risk' => ['decision' => 'deny', 'reason' => 'velocity']], 'reserve');
    check($d instanceof \Kami\DeniedException, 'denied class');
    same('velocity', $d->getVerdict()->reason, 'reason');
    same('deny', ServerException::fromError(['code' => 'DENIED', 'message' => 'x'], null)->getVerdict()->decision, 'no verdict: deny');
    $u = ServerException::fromError(['code' => 'SOMETHING_NEW', 'message' => 'later'], 'issue');
    same(ServerException::class, get_class($u), 'unknown code: plain ServerException');
    same('SOMETHING_NEW', $u->getErrorCode(), 'unknown code kept');
};

$tests['bad arguments are refused before sending'] = function () {
    throws(\InvalidArgumentException::class, fn () => new Client('no-port'), 'address without port');
    throws(\InvalidArgumentException::class, fn () => new Client('127.0.0.1:1', ['tokne' => 'x']), 'misspelt option');
    $c = client();
    throws(\InvalidArgumentException::class, fn () => $c->issue('o', 'u', 's', 1, 'p', ['ipp' => '1.2.3.4']), 'misspelt field');
    same(0, $c->connectCount(), 'nothing sent');
};

require __DIR__ . '/webhook.php';

// ------------------------------------------------------------------ runner

$failed = 0;
$n = 0;
$start = microtime(true);
foreach ($tests as $name => $fn) {
    $n++;
    $t = microtime(true);
    try {
        $fn();
        printf("ok %d - %s (%.0f ms)\n", $n, $name, (microtime(true) - $t) * 1000);
    } catch (\Throwable $e) {
        $failed++;
        printf("not ok %d - %s\n  # %s: %s\n  # at %s:%d\n", $n, $name, get_class($e), $e->getMessage(),
            basename($e->getFile()), $e->getLine());
    }
}
printf("1..%d\n# %d passed, %d failed, %.1f s\n", $n, $n - $failed, $failed, microtime(true) - $start);
exit(min($failed, 100));
