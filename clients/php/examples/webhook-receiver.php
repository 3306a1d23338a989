<?php

// A receiver of kamid's signed webhooks: verifies each delivery, records each event once
// (deduplicated by its id), and answers 204 at once.
//
//   KAMI_WEBHOOK_SECRET_FILE=/etc/shop/kami-webhook.secret KAMI_WEBHOOK_DIR=/var/lib/shop/kami-webhooks \
//       php -S 127.0.0.1:8080 clients/php/examples/webhook-receiver.php
//
// with, in kamid's config (docs/webhooks.md), the same secret in a 0600 file:
//
//   webhook_url.shop = http://127.0.0.1:8080/kami/webhooks
//   webhook_secret_file.shop = shop.webhook-secret
//
// It also works as a plain script under PHP-FPM. What it keeps, in KAMI_WEBHOOK_DIR (default
// <temp dir>/kami-webhooks): events.jsonl, one line per event accepted ({"id", "type",
// "created_ms", "data", "received_ms"}); seen/<id>, one empty file per event id recorded
// (the deduplication); refused.log, one line per refused delivery (time, reason).
//
// Answers: 204 accepted, or already seen (kamid retries until it gets a 2xx, so a duplicate
// must be acknowledged, not refused); 400 the verifier refused it (the reason is in the body
// and refused.log); 405 not a POST; 413 body over 1 MiB; 500 this receiver could not store it
// (kamid tries again later).

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Kami\Webhook;
use Kami\WebhookException;

/** kamid's bodies are a few hundred bytes; anything near this is not from kamid. */
const BODY_BYTES_MAX = 1 << 20;

/** Answers and ends the request. */
function answer(int $status, string $text = ''): never
{
    http_response_code($status);
    if ($text !== '') {
        header('Content-Type: text/plain; charset=utf-8');
        echo $text, "\n";
    }
    exit;
}

/**
 * The shop's own work for a verified event. Keep it short (kamid waits for the answer, and
 * retries after webhook_timeout_ms); queue anything slow. `data` holds ids and counts, never
 * a code's secret: a shop that wants the codes asks kamid with the `order` op.
 */
function handle(array $event): void
{
    switch ($event['type']) {
        case 'order.delivered':        // $event['data']['order'] is paid and has its codes: mark it done
        case 'order.pending_upstream': // paid, a supplier is filling it: show "processing"
        case 'order.failed':           // no supplier could fill it: refund the buyer
        case 'order.refunded':         // refunded in kamid: its codes are void
        case 'order.held':             // paid, waiting for an operator (manual delivery or review)
        case 'order.released':         // paid but released without codes by an operator: refund the buyer
        case 'code.activated':         // the buyer or the brand used $event['data']['code_ids']: show "used"
        case 'case.opened':
        case 'case.resolved':
        case 'stock.low':              // tell the operator to restock $event['data']['sku']
        case 'supplier.breaker_opened':
        default:                       // a type added in a later kamid: record it, answer 204
            break;
    }
}

if (($_SERVER['REQUEST_METHOD'] ?? '') !== 'POST') {
    header('Allow: POST');
    answer(405, 'POST only');
}
if ((int) ($_SERVER['CONTENT_LENGTH'] ?? 0) > BODY_BYTES_MAX) {
    answer(413, 'body too large');
}
$body = (string) file_get_contents('php://input', false, null, 0, BODY_BYTES_MAX + 1);
if (strlen($body) > BODY_BYTES_MAX) {
    answer(413, 'body too large');
}

$dir = getenv('KAMI_WEBHOOK_DIR') ?: sys_get_temp_dir() . '/kami-webhooks';
try {
    $secret = Webhook::secretFromFile((string) getenv('KAMI_WEBHOOK_SECRET_FILE'));
} catch (\RuntimeException $e) {
    error_log('kami webhook receiver: ' . $e->getMessage() . ' (set KAMI_WEBHOOK_SECRET_FILE)');
    answer(500, 'receiver not configured');
}
if (!is_dir("$dir/seen") && !@mkdir("$dir/seen", 0700, true) && !is_dir("$dir/seen")) {
    error_log("kami webhook receiver: cannot create $dir/seen");
    answer(500, 'cannot store events');
}

try {
    $headers = function_exists('getallheaders') ? getallheaders() : $_SERVER;
    $event = Webhook::verify($secret, $headers, $body);
} catch (WebhookException $e) {
    $line = sprintf("%s %s %s\n", gmdate('c'), $e->getReason(), $_SERVER['REMOTE_ADDR'] ?? '-');
    file_put_contents("$dir/refused.log", $line, FILE_APPEND | LOCK_EX);
    error_log('kami webhook refused: ' . $e->getMessage());
    answer(400, $e->getMessage());
}

// One request at a time past this point (php -S with PHP_CLI_SERVER_WORKERS, or FPM), so a
// duplicate arriving meanwhile sees the first one's marker. In a shop's database, the same
// is an INSERT of the event id into a table keyed by it, in the transaction of handle()'s
// changes: a duplicate key means "already done".
$lock = fopen("$dir/lock", 'c');
if ($lock === false || !flock($lock, LOCK_EX)) {
    answer(500, 'cannot lock the store');
}
$seen = "$dir/seen/" . $event['id'];
if (is_file($seen)) {
    answer(204); // a retry of an event already recorded
}
try {
    handle($event);
} catch (\Throwable $e) {
    error_log('kami webhook handler failed for event ' . $event['id'] . ': ' . $e->getMessage());
    answer(500, 'handler failed'); // not marked seen: kamid sends it again
}
$record = json_encode([
    'id' => $event['id'], 'type' => $event['type'], 'created_ms' => $event['created_ms'],
    'data' => (object) $event['data'], 'received_ms' => (int) (microtime(true) * 1000),
], JSON_UNESCAPED_SLASHES) . "\n";
if (file_put_contents("$dir/events.jsonl", $record, FILE_APPEND) !== strlen($record) || !touch($seen)) {
    answer(500, 'cannot store the event');
}
answer(204);
