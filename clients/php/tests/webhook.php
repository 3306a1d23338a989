<?php

// Tests of Kami\Webhook (the verifier) and examples/webhook-receiver.php, included by run.php
// (which defines check(), same(), throws() and $tests). The last one is end to end: a kamid of
// its own, configured with two webhook endpoints on a `php -S` running the example receiver.

declare(strict_types=1);

use Kami\Client;
use Kami\KamiException;
use Kami\Webhook;
use Kami\WebhookException;

const WH_SECRET = 'whsec_test_0123456789abcdef';
const WH_NOW = 1733390000;

/** A body shaped like kamid's. */
function whBody(int $id = 7, string $type = 'order.delivered'): string
{
    return '{"id":' . $id . ',"type":"' . $type . '","created_ms":1733389999123,'
        . '"data":{"order":"o-1","sku":"netflix-1m","units":1,"state":"committed","code_ids":[12]}}';
}

/** The headers kamid sends with $body at $timestamp. */
function whHeaders(string $body, int $timestamp = WH_NOW, string $secret = WH_SECRET): array
{
    $event = json_decode($body, true);
    return [
        'Content-Type' => 'application/json', 'User-Agent' => 'kamid-webhooks',
        'Kami-Event-Id' => (string) ($event['id'] ?? 1), 'Kami-Event-Type' => (string) ($event['type'] ?? 'x'),
        'Kami-Timestamp' => (string) $timestamp, 'Kami-Signature' => Webhook::sign($secret, $timestamp, $body),
    ];
}

/** Checks verify() refuses with $reason, and that the message leaks neither secret nor body. */
function refused(string $reason, array $headers, string $body, int $now = WH_NOW, string|array $secret = WH_SECRET): void
{
    $e = throws(WebhookException::class, fn () => Webhook::verify($secret, $headers, $body, $now), $reason);
    same($reason, $e->getReason(), 'reason');
    check($e instanceof KamiException, 'a KamiException');
    same('webhook', $e->getOp(), 'op');
    check(!str_contains($e->getMessage(), WH_SECRET) && !str_contains($e->getMessage(), 'netflix'),
        "no secret or body in the message: {$e->getMessage()}");
}

$tests['webhook: the signature test vector'] = function () {
    $vector = 'v1=ac2ca165f25a760320d4257c2242ef4fa79c047676046f46ce73646b8adb28b4';
    same($vector, Webhook::sign(WH_SECRET, 1733390000, '{"id":1}'), 'sign()');
    // The vector's body is not a whole event: the MAC passes, then the JSON check refuses it.
    $h = ['Kami-Timestamp' => '1733390000', 'Kami-Signature' => $vector];
    refused(WebhookException::REASON_BAD_JSON, $h, '{"id":1}');
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, '{"id":2}');

    $body = whBody();
    $event = Webhook::verify(WH_SECRET, whHeaders($body), $body, WH_NOW);
    same(7, $event['id'], 'id');
    same('order.delivered', $event['type'], 'type');
    same(1733389999123, $event['created_ms'], 'created_ms');
    same(['order' => 'o-1', 'sku' => 'netflix-1m', 'units' => 1, 'state' => 'committed', 'code_ids' => [12]],
        $event['data'], 'data');
    // A secret read from its file with the newline still on it is the same secret (kamid trims it).
    same(7, Webhook::verify(WH_SECRET . "\n", whHeaders($body), $body, WH_NOW)['id'], 'secret with a newline');
};

$tests['webhook: tampered body, wrong secret, other scheme refused'] = function () {
    $body = whBody();
    $h = whHeaders($body);
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, str_replace('"units":1', '"units":9', $body));
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, $body . ' ');
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, $body, WH_NOW, 'whsec_another_secret_0123456789');
    refused(WebhookException::REASON_BAD_SIGNATURE, ['Kami-Timestamp' => (string) (WH_NOW + 1)] + $h, $body);
    $mac = substr($h['Kami-Signature'], 3);
    refused(WebhookException::REASON_BAD_SIGNATURE, ['Kami-Signature' => 'v1=' . strrev($mac)] + $h, $body);
    refused(WebhookException::REASON_BAD_HEADER, ['Kami-Signature' => "v0=$mac"] + $h, $body);
    refused(WebhookException::REASON_BAD_HEADER, ['Kami-Signature' => $mac] + $h, $body);
    refused(WebhookException::REASON_BAD_HEADER, ['Kami-Signature' => 'v1=' . substr($mac, 1)] + $h, $body);
    refused(WebhookException::REASON_BAD_HEADER, ['Kami-Timestamp' => '1733390000.5'] + $h, $body);
    refused(WebhookException::REASON_BAD_HEADER, ['Kami-Timestamp' => '-1'] + $h, $body);
};

$tests['webhook: stale and future timestamps refused, 300 s either way accepted'] = function () {
    $body = whBody();
    $h = whHeaders($body);
    same(7, Webhook::verify(WH_SECRET, $h, $body, WH_NOW + 300)['id'], '300 s old');
    same(7, Webhook::verify(WH_SECRET, $h, $body, WH_NOW - 300)['id'], '300 s ahead');
    refused(WebhookException::REASON_STALE_TIMESTAMP, $h, $body, WH_NOW + 301);
    refused(WebhookException::REASON_STALE_TIMESTAMP, $h, $body, WH_NOW + 86400);
    refused(WebhookException::REASON_STALE_TIMESTAMP, $h, $body, WH_NOW - 301);
    $e = throws(WebhookException::class, fn () => Webhook::verify(WH_SECRET, $h, $body, WH_NOW - 400), 'future');
    check(str_contains($e->getMessage(), '400 s in the future'), $e->getMessage());
    same(7, Webhook::verify(WH_SECRET, $h, $body, WH_NOW + 500, 600)['id'], 'a wider tolerance');
    // A forged stale delivery learns nothing about the clock: the signature is checked first.
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, $body . ' ', WH_NOW + 86400);
};

$tests['webhook: missing headers and bad JSON refused'] = function () {
    $body = whBody();
    $h = whHeaders($body);
    foreach (['Kami-Timestamp', 'Kami-Signature'] as $name) {
        $without = $h;
        unset($without[$name]);
        refused(WebhookException::REASON_MISSING_HEADER, $without, $body);
        refused(WebhookException::REASON_MISSING_HEADER, [$name => ''] + $h, $body);
    }
    refused(WebhookException::REASON_MISSING_HEADER, [], $body);
    foreach (['not json', '[1,2]', '{"id":"7","type":"x","created_ms":1,"data":{}}', '{"id":7,"type":"x","data":{}}',
                 '{"id":7,"type":"x","created_ms":1,"data":[1]}', '{"id":0,"type":"x","created_ms":1,"data":{}}',
                 '{"id":7,"type":"","created_ms":1,"data":{}}', ''] as $bad) {
        refused(WebhookException::REASON_BAD_JSON, ['Kami-Event-Id' => '7'] + whHeaders($bad), $bad);
    }
    refused(WebhookException::REASON_HEADER_MISMATCH, ['Kami-Event-Id' => '8'] + $h, $body);
    refused(WebhookException::REASON_HEADER_MISMATCH, ['Kami-Event-Type' => 'order.refunded'] + $h, $body);
    // Without the (unsigned) id and type headers the signed body alone is enough.
    $bare = array_intersect_key($h, ['Kami-Timestamp' => 1, 'Kami-Signature' => 1]);
    same(7, Webhook::verify(WH_SECRET, $bare, $body, WH_NOW)['id'], 'only timestamp and signature');
    same(['order' => 1], Webhook::verify(WH_SECRET, whHeaders($b = '{"id":3,"type":"x.y","created_ms":5,"data":{"order":1},"new":true}'),
        $b, WH_NOW)['data'], 'an unknown type and an added field are accepted');
};

$tests['webhook: $_SERVER and PSR-7 headers, rotated secrets, bad secrets'] = function () {
    $body = whBody();
    $h = whHeaders($body);
    $server = ['REQUEST_METHOD' => 'POST', 'CONTENT_TYPE' => 'application/json'];
    foreach ($h as $name => $value) {
        $server['HTTP_' . strtoupper(str_replace('-', '_', $name))] = $value;
    }
    same(7, Webhook::verify(WH_SECRET, $server, $body, WH_NOW)['id'], '$_SERVER');
    same(7, Webhook::verify(WH_SECRET, array_map(fn ($v) => [$v], array_change_key_case($h)), $body, WH_NOW)['id'],
        'PSR-7 getHeaders(), lowercase names');
    $rotating = ['whsec_new_secret_after_rotation', WH_SECRET];
    same(7, Webhook::verify($rotating, $h, $body, WH_NOW)['id'], 'the old secret while rotating');
    $both = ['Kami-Signature' => Webhook::sign('whsec_new_secret_after_rotation', WH_NOW, $body) . ',' . $h['Kami-Signature']] + $h;
    same(7, Webhook::verify(WH_SECRET, $both, $body, WH_NOW)['id'], 'one of several v1 entries');
    refused(WebhookException::REASON_BAD_SIGNATURE, $h, $body, WH_NOW, ['whsec_new_secret_after_rotation']);
    foreach (['', 'short', '               x', []] as $bad) {
        throws(\InvalidArgumentException::class, fn () => Webhook::verify($bad, $h, $body, WH_NOW), 'a bad secret');
    }
};

// ------------------------------------------------------------------ end to end

/** Bounded wait for $cond(); returns its last value. */
function waitUntil(callable $cond, float $seconds, string $what): mixed
{
    $deadline = microtime(true) + $seconds;
    do {
        $v = $cond();
        if ($v) {
            return $v;
        }
        usleep(50000);
    } while (microtime(true) < $deadline);
    throw new AssertionFailed("$what: not within $seconds s");
}

/** A port free on 127.0.0.1 right now (the caller retries if someone takes it first). */
function freePort(): int
{
    $s = stream_socket_server('tcp://127.0.0.1:0', $en, $es);
    check($s !== false, "no free port: $es");
    $port = (int) substr(strrchr((string) stream_socket_get_name($s, false), ':'), 1);
    fclose($s);
    return $port;
}

/** Starts $cmd with output to $log; returns the process. */
function spawn(array $cmd, string $log, array $env = []): mixed
{
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
        $pipes, null, $env + getenv());
    check(is_resource($p), 'cannot start ' . $cmd[0]);
    return $p;
}

/** SIGTERM, a bounded wait, then SIGKILL. */
function stopProc(mixed $p): void
{
    if (!is_resource($p)) {
        return;
    }
    proc_terminate($p, 15);
    $deadline = microtime(true) + 10;
    while (proc_get_status($p)['running'] && microtime(true) < $deadline) {
        usleep(20000);
    }
    if (proc_get_status($p)['running']) {
        proc_terminate($p, 9);
        usleep(200000);
    }
    proc_close($p);
}

/** kamictl --json against a socket. */
function ctlJson(string $socket, array $args): array
{
    global $opt;
    $cmd = escapeshellarg($opt['kamictl']) . ' --socket ' . escapeshellarg($socket) . ' --timeout 30 --json '
        . implode(' ', array_map('escapeshellarg', $args)) . ' 2>&1';
    exec($cmd, $out, $rc);
    check($rc === 0, 'kamictl ' . implode(' ', $args) . " exited $rc: " . implode(' | ', $out));
    $j = json_decode(implode("\n", $out), true);
    check(is_array($j), 'kamictl ' . implode(' ', $args) . ': not JSON');
    return $j;
}

/** POSTs to the receiver; returns [status, body]. */
function post(string $url, array $headers, string $body, string $method = 'POST'): array
{
    $lines = [];
    foreach ($headers as $k => $v) {
        $lines[] = "$k: $v";
    }
    $ctx = stream_context_create(['http' => ['method' => $method, 'header' => $lines, 'content' => $body,
        'timeout' => 5, 'ignore_errors' => true]]);
    $got = @file_get_contents($url, false, $ctx);
    $status = isset($http_response_header[0]) && preg_match('/^HTTP\/\S+ (\d{3})/', $http_response_header[0], $m)
        ? (int) $m[1] : 0;
    return [$status, (string) $got];
}

/** The example receiver's records: event lines, and refusal reasons. */
function recorded(string $dir): array
{
    $lines = is_file("$dir/events.jsonl") ? file("$dir/events.jsonl", FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) : [];
    return array_map(fn ($l) => json_decode($l, true, 64, JSON_THROW_ON_ERROR), $lines);
}

$tests['webhooks end to end: kamid signs, the example receiver verifies and records each order.delivered once'] = function () use ($run) {
    global $opt;
    $w = sys_get_temp_dir() . '/kami-php-webhooks.' . bin2hex(random_bytes(4));
    check(mkdir("$w/data", 0700, true) && mkdir("$w/recv", 0700), "mkdir $w");
    $kamid = $receiver = null;
    try {
        // The shop endpoint's secret: in the data dir (named relative to it), 0600.
        $secret = 'whsec_' . bin2hex(random_bytes(16));
        file_put_contents("$w/data/shop.secret", "$secret\n");
        chmod("$w/data/shop.secret", 0600);
        file_put_contents("$w/wrong.secret", 'whsec_' . bin2hex(random_bytes(16)) . "\n");
        chmod("$w/wrong.secret", 0600);

        // The example receiver on a free port (another process may take the port first: retry).
        for ($try = 0; $try < 3 && $receiver === null; $try++) {
            $rport = freePort();
            $p = spawn([PHP_BINARY, '-S', "127.0.0.1:$rport", __DIR__ . '/../examples/webhook-receiver.php'],
                "$w/receiver.log", ['KAMI_WEBHOOK_SECRET_FILE' => "$w/data/shop.secret", 'KAMI_WEBHOOK_DIR' => "$w/recv"]);
            $up = false;
            $deadline = microtime(true) + 5;
            while (!$up && proc_get_status($p)['running'] && microtime(true) < $deadline) {
                $s = @stream_socket_client("tcp://127.0.0.1:$rport", $en, $es, 0.2);
                if ($up = $s !== false) {
                    fclose($s);
                } else {
                    usleep(50000);
                }
            }
            if ($up) {
                $receiver = $p;
            } else {
                stopProc($p);
            }
        }
        check($receiver !== null, 'the receiver did not start: ' . @file_get_contents("$w/receiver.log"));
        $url = "http://127.0.0.1:$rport/kami/webhooks";

        // `shop` takes order events only and has the receiver's secret; `wrongkey` takes every
        // event and signs with another secret (absolute path), so the receiver refuses it.
        file_put_contents("$w/kamid.conf", implode("\n", [
            "webhook_url.shop = $url",
            'webhook_secret_file.shop = shop.secret',
            'webhook_events.shop = order.delivered, order.refunded',
            "webhook_url.wrongkey = $url/wrongkey",
            "webhook_secret_file.wrongkey = $w/wrong.secret",
            'webhook_backoff_ms = 200',
            'webhook_backoff_max_ms = 1000',
            'webhook_timeout_ms = 5000',
        ]) . "\n");
        $kamid = spawn([$opt['kamid'], '--config', "$w/kamid.conf", '--data-dir', "$w/data", '--listen', '127.0.0.1:0',
            '--durability', 'full', '--metrics-listen', 'off'], "$w/kamid.log");
        $kport = (int) waitUntil(function () use ($w, $kamid) {
            check(proc_get_status($kamid)['running'], 'kamid exited: ' . @file_get_contents("$w/kamid.log"));
            return preg_match('/ready tcp=(\d+)/', (string) @file_get_contents("$w/kamid.log"), $m) ? $m[1] : null;
        }, 30, 'kamid ready');
        $sock = "$w/data/kamid.sock";

        $csv = "secret\n";
        $secrets = [];
        for ($i = 1; $i <= 6; $i++) {
            $secrets[] = $s = "WHK-$i-" . bin2hex(random_bytes(6));
            $csv .= "$s\n";
        }
        file_put_contents("$w/whk.csv", $csv);
        ctlJson($sock, ['sku', 'set', 'whk', '--name', 'webhook test', '--price', '990']);
        ctlJson($sock, ['import', "$w/whk.csv", '--sku', 'whk']);

        $c = new Client("127.0.0.1:$kport", ['token' => trim((string) file_get_contents("$w/data/default.token")),
            'timeout' => 5.0]);
        $orders = [];
        $orders["$run-wh1"] = $c->issue("$run-wh1", "$run-u1", 'whk', 1, 'pay-wh1');
        $orders["$run-wh2"] = $c->issue("$run-wh2", "$run-u2", 'whk', 2, 'pay-wh2');
        $orders["$run-wh3"] = $c->issue("$run-wh3", "$run-u3", 'whk', 1, 'pay-wh3');
        $c->reserve("$run-wh4", "$run-u4", 'whk', 1);
        $orders["$run-wh4"] = $c->commit("$run-wh4", 'pay-wh4', "$run-u4");
        $c->reserve("$run-wh5", "$run-u5", 'whk', 1);
        $c->release("$run-wh5");                                          // no delivery: no event
        same($orders["$run-wh1"]->codeIds(), $c->issue("$run-wh1", "$run-u1", 'whk', 1, 'pay-wh1')->codeIds(),
            'a repeated order id');                                        // no second event
        $case = $c->openCase("$run-wh1", "$run-u1", 'invalid_code', $orders["$run-wh1"]->codeIds()[0]);
        foreach ($orders as $id => $o) {
            same('committed', $o->state, "$id committed");
        }

        // Bounded: until the receiver holds 4 events and kamid has nothing pending for `shop`.
        waitUntil(function () use ($w, $sock) {
            return count(recorded("$w/recv")) >= 4
                && ctlJson($sock, ['webhooks', 'pending', '--endpoint', 'shop'])['events'] === [];
        }, 20, 'the order.delivered events of 4 orders recorded by the receiver');
        $got = recorded("$w/recv");
        same(4, count($got), 'exactly one record per delivered order');
        $byOrder = [];
        foreach ($got as $e) {
            same('order.delivered', $e['type'], 'type (the filter keeps case.opened away from shop)');
            check(!isset($byOrder[$e['data']['order']]), 'one event per order: ' . $e['data']['order']);
            $byOrder[$e['data']['order']] = $e;
        }
        ksort($byOrder);
        same(array_keys($orders), array_keys($byOrder), 'the orders issued and committed, and only those');
        foreach ($orders as $id => $o) {
            $d = $byOrder[$id]['data'];
            same(['order' => $id, 'sku' => 'whk', 'units' => $o->qty, 'state' => 'committed', 'code_ids' => $o->codeIds()],
                $d, "data of $id");
            check(abs($byOrder[$id]['created_ms'] - $byOrder[$id]['received_ms']) < 20000, 'created_ms is recent');
        }
        $ids = array_column($got, 'id');
        same(4, count(array_unique($ids)), 'distinct event ids');
        $raw = (string) file_get_contents("$w/recv/events.jsonl");
        foreach ($secrets as $s) {
            check(!str_contains($raw, $s), 'no code secret in any event');
        }
        $delivered = ctlJson($sock, ['webhooks', 'delivered', '--endpoint', 'shop'])['events'];
        $dids = array_column($delivered, 'id');
        sort($dids);
        sort($ids);
        same($ids, $dids, 'kamid lists the same ids as delivered');

        // `wrongkey` took every event (case.opened too); the receiver refused each: pending, HTTP 400.
        $pending = waitUntil(function () use ($sock) {
            $rows = ctlJson($sock, ['webhooks', 'pending', '--endpoint', 'wrongkey'])['events'];
            return count($rows) === 5 && array_sum(array_column($rows, 'attempts')) > 0 ? $rows : null;
        }, 20, 'wrongkey attempted');
        $types = array_count_values(array_column($pending, 'type'));
        ksort($types);
        same(['case.opened' => 1, 'order.delivered' => 4], $types, 'wrongkey events');
        check(in_array('HTTP 400', array_column($pending, 'last_error'), true), 'refused with 400');
        check(str_contains((string) @file_get_contents("$w/recv/refused.log"), 'bad_signature'), 'refusals logged');
        same((int) $case['case'], json_decode(
            array_values(array_filter($pending, fn ($r) => $r['type'] === 'case.opened'))[0]['data'], true)['case'],
            'case.opened names the case');

        // The receiver itself: a re-sent event is acknowledged and not recorded again; a
        // tampered one is refused; only POST.
        $first = $got[0];
        $body = json_encode(['id' => $first['id'], 'type' => $first['type'], 'created_ms' => $first['created_ms'],
            'data' => $first['data']], JSON_UNESCAPED_SLASHES);
        $now = time();
        $h = ['Content-Type' => 'application/json', 'Kami-Event-Id' => (string) $first['id'],
            'Kami-Event-Type' => $first['type'], 'Kami-Timestamp' => (string) $now,
            'Kami-Signature' => Webhook::sign($secret, $now, $body)];
        same(204, post($url, $h, $body)[0], 'a duplicate is acknowledged');
        same(4, count(recorded("$w/recv")), 'and not recorded twice');
        [$status, $text] = post($url, $h, str_replace('"units":', '"units":1', $body));
        same(400, $status, 'a tampered body is refused');
        check(str_contains($text, 'bad_signature'), "the reason is given: $text");
        same(405, post($url, [], '', 'GET')[0], 'GET');
    } finally {
        stopProc($kamid);
        stopProc($receiver);
        if (str_starts_with($w, sys_get_temp_dir() . '/kami-php-webhooks.')) {
            exec('rm -rf ' . escapeshellarg($w));
        }
    }
};
