<?php

declare(strict_types=1);

namespace Kami;

/** An order as kamid answers it (reserve, commit, issue, release, order, wait). */
final class Order
{
    public const RESERVED = 'reserved';
    public const COMMITTED = 'committed';
    public const RELEASED = 'released';
    public const EXPIRED = 'expired';
    public const REFUNDED = 'refunded';
    public const PENDING_UPSTREAM = 'pending_upstream';
    public const FAILED = 'failed';
    public const REVIEW = 'review';

    /** @param Code[] $codes */
    public function __construct(
        public readonly string $order,
        public readonly string $state,
        public readonly string $sku,
        public readonly int $qty,
        public readonly int $expiresAtMs,
        public readonly array $codes,
    ) {
    }

    public static function fromReply(array $r): self
    {
        foreach (['order', 'state', 'sku', 'qty', 'codes'] as $k) {
            if (!array_key_exists($k, $r)) {
                throw new ProtocolException("order reply without '$k'");
            }
        }
        if (!is_array($r['codes'])) {
            throw new ProtocolException("order reply: 'codes' is not a list");
        }
        return new self(
            (string) $r['order'],
            (string) $r['state'],
            (string) $r['sku'],
            (int) $r['qty'],
            (int) ($r['expires_at_ms'] ?? 0),
            array_map(static fn ($c) => Code::fromArray(is_array($c) ? $c : []), array_values($r['codes'])),
        );
    }

    /** Delivered: the codes carry their secrets. */
    public function isCommitted(): bool
    {
        return $this->state === self::COMMITTED;
    }

    /**
     * Paid or held but not delivered yet (a supplier is filling it, an operator reviews it,
     * or a state this client does not know): show "in progress" and ask again (wait()).
     */
    public function isInProgress(): bool
    {
        return !in_array($this->state, [self::RESERVED, self::COMMITTED, self::RELEASED, self::EXPIRED,
            self::REFUNDED, self::FAILED], true);
    }

    /** @return int[] */
    public function codeIds(): array
    {
        return array_map(static fn (Code $c) => $c->codeId, $this->codes);
    }

    /** @return string[] the secrets (empty until committed) */
    public function secrets(): array
    {
        return array_values(array_filter(array_map(static fn (Code $c) => $c->secret, $this->codes),
            static fn ($s) => $s !== null));
    }
}
