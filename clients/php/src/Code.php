<?php

declare(strict_types=1);

namespace Kami;

/**
 * One card key. `secret` is null where its owner may not see it yet (a reserved order).
 * var_dump()/print_r() show the secret masked, so a stray debug dump does not leak it;
 * read `$code->secret` (or toArray()) to hand it to the buyer.
 */
final class Code
{
    public function __construct(
        public readonly int $codeId,
        public readonly string $sku,
        #[\SensitiveParameter] public readonly ?string $secret,
        public readonly ?string $cardNumber,
        public readonly ?string $activationUrl,
        /** Entitlements only: the owning order and the code's state (`issued`, `voided`, ...). */
        public readonly ?string $order = null,
        public readonly ?string $state = null,
    ) {
    }

    public static function fromArray(array $a): self
    {
        return new self(
            (int) ($a['code_id'] ?? 0),
            (string) ($a['sku'] ?? ''),
            isset($a['secret']) ? (string) $a['secret'] : null,
            isset($a['card_number']) ? (string) $a['card_number'] : null,
            isset($a['activation_url']) ? (string) $a['activation_url'] : null,
            isset($a['order']) ? (string) $a['order'] : null,
            isset($a['state']) ? (string) $a['state'] : null,
        );
    }

    /** Everything, secret included: for showing the code to its buyer. */
    public function toArray(): array
    {
        return [
            'code_id' => $this->codeId,
            'sku' => $this->sku,
            'secret' => $this->secret,
            'card_number' => $this->cardNumber,
            'activation_url' => $this->activationUrl,
            'order' => $this->order,
            'state' => $this->state,
        ];
    }

    public function __debugInfo(): array
    {
        $a = $this->toArray();
        $a['secret'] = $this->secret === null ? null : '***';
        return $a;
    }
}
