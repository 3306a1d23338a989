<?php

// Sells one code through kamid, the way a shop does after the buyer paid.
//
//   php clients/php/example.php HOST:PORT [TOKEN | @TOKEN_FILE] [SKU] [USER] [ORDER]
//
//   php clients/php/example.php 127.0.0.1:7420 @kami-data/default.token vip alice
//
// TOKEN defaults to $KAMI_TOKEN, else the file ./kami-data/default.token. ORDER defaults to a
// new id; run it again with the same ORDER and you get the same code back (idempotent).
// Prints the order's state and code ids; the secret itself only with KAMI_SHOW_SECRETS=1.

declare(strict_types=1);

require __DIR__ . '/autoload.php';

use Kami\Client;
use Kami\KamiException;

if ($argc < 2 || in_array($argv[1], ['-h', '--help'], true)) {
    fwrite(STDERR, "usage: php example.php HOST:PORT [TOKEN | @TOKEN_FILE] [SKU] [USER] [ORDER]\n");
    exit(2);
}
$address = $argv[1];
$token = $argv[2] ?? (getenv('KAMI_TOKEN') ?: '@kami-data/default.token');
if (str_starts_with($token, '@')) {
    $file = substr($token, 1);
    $read = is_readable($file) ? file_get_contents($file) : false;
    if ($read === false) {
        fwrite(STDERR, "cannot read the token file $file\n");
        exit(2);
    }
    $token = trim($read);
}
$sku = $argv[3] ?? 'vip';
$user = $argv[4] ?? 'alice';
$order = $argv[5] ?? 'ex-' . date('Ymd-His') . '-' . bin2hex(random_bytes(2));

$kami = new Client($address, [
    'token' => $token,
    'timeout' => 10.0,
    'retries' => 2,
    'logger' => static function (string $level, string $message, array $context): void {
        fwrite(STDERR, "[$level] $message " . json_encode($context) . "\n"); // never holds a secret
    },
]);

try {
    $info = $kami->serverInfo();
    printf("connected to %s protocol %d (features: %s)\n", $info->server, $info->protocol, implode(', ', $info->features));

    // The payment reference is the payment provider's transaction id in a real shop.
    $o = $kami->issue($order, $user, $sku, 1, "pay-$order");
    printf("order %s: %s, %d x %s, code ids [%s]\n", $o->order, $o->state, $o->qty, $o->sku, implode(', ', $o->codeIds()));
    if ($o->isInProgress()) {
        // Filled by a supplier or held for review: wait (long-poll) up to 10 s.
        $o = $kami->wait($o->order, 10000, $user);
        printf("after waiting: %s, code ids [%s]\n", $o->state, implode(', ', $o->codeIds()));
    }
    foreach ($o->codes as $code) {
        $shown = getenv('KAMI_SHOW_SECRETS') === '1' ? $code->secret : str_repeat('*', 8);
        printf("  code %d: secret %s%s\n", $code->codeId, $shown,
            $code->cardNumber !== null ? ", card number $code->cardNumber" : '');
    }
    $s = $kami->stock($sku);
    printf("stock of %s: %d available, %d reserved, %d issued\n", $s->sku, $s->available, $s->reserved, $s->issued);
} catch (KamiException $e) {
    // Messages hold kamid's explanation and never a secret.
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
