<?php

declare(strict_types=1);

namespace Kami;

/** One page of what a user owns, newest order first. Pass nextCursor back for the next page. */
final class EntitlementsPage
{
    /**
     * @param Code[] $codes with `order`, `state` and the buyer's view (`status`, `skuName`,
     *        `usageGuide`, `expiresAtMs`, `orderedAtMs`, `usedAtMs`) set
     */
    public function __construct(
        public readonly array $codes,
        public readonly ?string $nextCursor,
    ) {
    }

    public static function fromReply(array $r): self
    {
        if (!isset($r['codes']) || !is_array($r['codes'])) {
            throw new ProtocolException('entitlements reply without codes');
        }
        return new self(
            array_map(static fn ($c) => Code::fromArray(is_array($c) ? $c : []), array_values($r['codes'])),
            isset($r['next_cursor']) ? (string) $r['next_cursor'] : null,
        );
    }
}
