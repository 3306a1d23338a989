<?php

declare(strict_types=1);

namespace Kami;

/**
 * A webhook delivery that Webhook::verify() refused. getReason() is one of the REASON_*
 * constants (stable, for logs and metrics); the message says what was wrong in words a
 * person can act on. Neither ever holds the secret, the expected MAC or the body.
 *
 * A receiver answers a refused delivery 400: kamid retries it (with backoff) until its
 * retry window ends, then dead-letters it, so a delivery refused because the secrets
 * differ can be replayed (`kamictl webhooks replay`) once they are fixed.
 */
class WebhookException extends KamiException
{
    /** Kami-Timestamp or Kami-Signature is absent or empty. */
    public const REASON_MISSING_HEADER = 'missing_header';
    /** A header is malformed: a timestamp that is not digits, no `v1=` + 64 hex digits. */
    public const REASON_BAD_HEADER = 'bad_header';
    /** No v1 signature matches the body under the secret (or any of the secrets). */
    public const REASON_BAD_SIGNATURE = 'bad_signature';
    /** Signed right, but the timestamp is further from this clock than the tolerance. */
    public const REASON_STALE_TIMESTAMP = 'stale_timestamp';
    /** The body is not a JSON event object (`id`, `type`, `created_ms`, `data`). */
    public const REASON_BAD_JSON = 'bad_json';
    /** Kami-Event-Id or Kami-Event-Type disagrees with the signed body. */
    public const REASON_HEADER_MISMATCH = 'header_mismatch';

    public function __construct(private readonly string $reason, string $message)
    {
        parent::__construct("webhook refused ($reason): $message", 'webhook');
    }

    /** One of the REASON_* constants. */
    public function getReason(): string
    {
        return $this->reason;
    }
}
