<?php

declare(strict_types=1);

namespace Kami;

/**
 * Checks kamid's signed webhook deliveries (docs/webhooks.md).
 *
 * kamid POSTs each event as JSON with
 *
 *     Kami-Event-Id: 123                  the event id (the same on every retry)
 *     Kami-Event-Type: order.delivered
 *     Kami-Timestamp: 1733390000          Unix seconds when this attempt was sent
 *     Kami-Signature: v1=<64 hex digits>  HMAC-SHA256(secret, "<timestamp>.<raw body>")
 *
 * verify() recomputes the MAC over the timestamp header, a `.`, and the raw body bytes,
 * compares in constant time (hash_equals), refuses a timestamp more than 300 s from this
 * clock (a replayed capture), and returns the decoded event. Only the body is signed: use
 * the returned event's `id` and `type`, not the headers (verify checks that they agree).
 *
 *     $event = Webhook::verify($secret, getallheaders(), file_get_contents('php://input'));
 */
final class Webhook
{
    /** How far Kami-Timestamp may be from this clock, in seconds (kamid's own receiver uses 300). */
    public const TOLERANCE_SECONDS = 300;
    /** kamid refuses shorter secret files; a shorter secret here is a configuration mistake. */
    public const SECRET_BYTES_MIN = 16;
    /** The signature scheme this verifier knows (`v1=` in Kami-Signature). */
    public const SCHEME = 'v1';

    /**
     * The verified event: `['id' => int, 'type' => string, 'created_ms' => int, 'data' => array]`
     * (plus any field a later kamid adds). An event type this code does not know is returned
     * like any other: ignore it and answer 2xx.
     *
     * @param string|string[] $secret the endpoint's secret (the one word of its
     *        webhook_secret_file; surrounding whitespace is ignored, as kamid ignores it), or
     *        several while rotating it: a delivery signed with any of them is accepted
     * @param array<string,string|string[]> $headers getallheaders(), $_SERVER (HTTP_KAMI_...
     *        keys) or a PSR-7 getHeaders(); names in any case
     * @param string $rawBody the body exactly as received (php://input), not re-encoded JSON
     * @param int|null $now Unix seconds (null: time())
     * @param int $toleranceSeconds how far the timestamp may be from $now
     * @throws WebhookException the delivery is refused; answer 400
     * @throws \InvalidArgumentException no secret, or one shorter than 16 bytes
     */
    public static function verify(string|array $secret, array $headers, string $rawBody, ?int $now = null,
                                  int $toleranceSeconds = self::TOLERANCE_SECONDS): array
    {
        $secrets = self::secrets($secret);
        $h = self::normalize($headers);

        foreach (['kami-timestamp' => 'Kami-Timestamp', 'kami-signature' => 'Kami-Signature'] as $key => $name) {
            if (($h[$key] ?? '') === '') {
                throw new WebhookException(WebhookException::REASON_MISSING_HEADER, "no $name header");
            }
        }
        $stamp = $h['kami-timestamp'];
        if (!preg_match('/^[0-9]{1,12}$/', $stamp)) {
            throw new WebhookException(WebhookException::REASON_BAD_HEADER, 'Kami-Timestamp is not Unix seconds');
        }
        $candidates = self::signatures($h['kami-signature']);
        if ($candidates === []) {
            throw new WebhookException(WebhookException::REASON_BAD_HEADER,
                'Kami-Signature holds no ' . self::SCHEME . '= signature of 64 hex digits');
        }

        // Signature before time: only an authentic delivery learns that its clock is off.
        $matched = false;
        foreach ($secrets as $s) {
            $expected = hash_hmac('sha256', $stamp . '.' . $rawBody, $s);
            foreach ($candidates as $candidate) {
                $matched = hash_equals($expected, $candidate) || $matched;
            }
        }
        if (!$matched) {
            throw new WebhookException(WebhookException::REASON_BAD_SIGNATURE,
                'the signature does not match the body (another secret, or a body changed on the way)');
        }

        $skew = ($now ?? time()) - (int) $stamp;
        if (abs($skew) > $toleranceSeconds) {
            throw new WebhookException(WebhookException::REASON_STALE_TIMESTAMP, $skew > 0
                ? "Kami-Timestamp is $skew s old (tolerance $toleranceSeconds s)"
                : 'Kami-Timestamp is ' . -$skew . " s in the future (tolerance $toleranceSeconds s)");
        }

        $event = self::decode($rawBody);
        if (isset($h['kami-event-id']) && $h['kami-event-id'] !== (string) $event['id']) {
            throw new WebhookException(WebhookException::REASON_HEADER_MISMATCH, 'Kami-Event-Id differs from the body\'s id');
        }
        if (isset($h['kami-event-type']) && $h['kami-event-type'] !== $event['type']) {
            throw new WebhookException(WebhookException::REASON_HEADER_MISMATCH, 'Kami-Event-Type differs from the body\'s type');
        }
        return $event;
    }

    /** The Kami-Signature value kamid sends for $rawBody at $timestamp (for tests and tools). */
    public static function sign(string $secret, int $timestamp, string $rawBody): string
    {
        return self::SCHEME . '=' . hash_hmac('sha256', $timestamp . '.' . $rawBody, trim($secret));
    }

    /**
     * The secret in a webhook_secret_file (its one word, as kamid reads it).
     *
     * @throws \RuntimeException unreadable, or not one word of at least 16 characters
     */
    public static function secretFromFile(string $path): string
    {
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new \RuntimeException("cannot read the webhook secret file $path");
        }
        $secret = trim($text);
        if (strlen($secret) < self::SECRET_BYTES_MIN || preg_match('/\s/', $secret)) {
            throw new \RuntimeException("webhook secret file $path must hold one word of at least "
                . self::SECRET_BYTES_MIN . ' characters');
        }
        return $secret;
    }

    /** @return string[] */
    private static function secrets(string|array $secret): array
    {
        $list = [];
        foreach (is_array($secret) ? $secret : [$secret] as $s) {
            if (!is_string($s) || strlen(trim($s)) < self::SECRET_BYTES_MIN) {
                throw new \InvalidArgumentException('a webhook secret is a string of at least '
                    . self::SECRET_BYTES_MIN . ' bytes');
            }
            $list[] = trim($s);
        }
        if ($list === []) {
            throw new \InvalidArgumentException('no webhook secret given');
        }
        return $list;
    }

    /**
     * Header names lowercased with `-` (`HTTP_KAMI_SIGNATURE` and `Kami-Signature` both give
     * `kami-signature`); several values of one header joined with `,`.
     *
     * @return array<string,string>
     */
    private static function normalize(array $headers): array
    {
        $out = [];
        foreach ($headers as $name => $value) {
            $key = strtolower((string) $name);
            if (str_starts_with($key, 'http_')) {
                $key = substr($key, 5);
            }
            $key = str_replace('_', '-', $key);
            if (!str_starts_with($key, 'kami-')) {
                continue;
            }
            $value = is_array($value) ? implode(',', array_map('strval', $value)) : (string) $value;
            $out[$key] = isset($out[$key]) && $out[$key] !== $value ? $out[$key] . ',' . $value : trim($value);
        }
        return $out;
    }

    /**
     * The v1 signatures in a Kami-Signature value (`v1=hex`, or several separated by commas).
     *
     * @return string[] lowercase hex
     */
    private static function signatures(string $value): array
    {
        $found = [];
        foreach (explode(',', $value) as $part) {
            $pair = explode('=', trim($part), 2);
            if (count($pair) === 2 && $pair[0] === self::SCHEME && preg_match('/^[0-9a-fA-F]{64}$/', $pair[1])) {
                $found[] = strtolower($pair[1]);
            }
        }
        return $found;
    }

    /** @return array{id:int,type:string,created_ms:int,data:array} */
    private static function decode(string $rawBody): array
    {
        try {
            $event = json_decode($rawBody, true, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            throw new WebhookException(WebhookException::REASON_BAD_JSON, 'the body is not JSON');
        }
        $ok = is_array($event)
            && is_int($event['id'] ?? null) && $event['id'] > 0
            && is_string($event['type'] ?? null) && $event['type'] !== ''
            && is_int($event['created_ms'] ?? null)
            && is_array($event['data'] ?? null) && ($event['data'] === [] || !array_is_list($event['data']));
        if (!$ok) {
            throw new WebhookException(WebhookException::REASON_BAD_JSON,
                'the body is not an event object with id, type, created_ms and data');
        }
        return $event;
    }
}
