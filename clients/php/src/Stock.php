<?php

declare(strict_types=1);

namespace Kami;

/** A SKU's stock counters. */
final class Stock
{
    public function __construct(
        public readonly string $sku,
        public readonly int $available,
        public readonly int $reserved,
        public readonly int $issued,
        public readonly int $voided,
        public readonly int $imported,
    ) {
    }

    public static function fromReply(array $r): self
    {
        if (!isset($r['sku'], $r['available'])) {
            throw new ProtocolException('stock reply without sku/available');
        }
        return new self((string) $r['sku'], (int) $r['available'], (int) ($r['reserved'] ?? 0),
            (int) ($r['issued'] ?? 0), (int) ($r['voided'] ?? 0), (int) ($r['imported'] ?? 0));
    }
}
