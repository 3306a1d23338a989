<?php

declare(strict_types=1);

namespace Kami;

/**
 * One card key. `secret` is null where its owner may not see it yet (a reserved order) and
 * in the answer of activate(). var_dump()/print_r() show the secret masked, so a stray debug
 * dump does not leak it; read `$code->secret` (or toArray()) to hand it to the buyer.
 *
 * Lines of entitlements() (a 我的权益 page) also carry the buyer's view: `status`, the SKU's
 * display name and usage guide, and the code's expiry, order and activation times. A paid
 * order still waiting for a supplier or an operator is one line with `codeId` 0, state
 * `reserved` and status `pending`. activate() answers lines with `state`/`status` `used`
 * and `usedAtMs` set (the other buyer's-view fields may be null there).
 */
final class Code
{
    /** `status` of an entitlement line: paid, waiting for a supplier or an operator (no code yet). */
    public const STATUS_PENDING = 'pending';
    /** Delivered and not activated yet. */
    public const STATUS_DELIVERED = 'delivered';
    /** Activated (activate(), or the brand's page through the activation link). */
    public const STATUS_USED = 'used';
    /** Past the code's own expiry. */
    public const STATUS_EXPIRED = 'expired';
    /** The order was refunded (the code is voided). */
    public const STATUS_REFUNDED = 'refunded';
    /** Withdrawn by the operator (a leaked code). */
    public const STATUS_VOIDED = 'voided';

    public function __construct(
        public readonly int $codeId,
        public readonly string $sku,
        #[\SensitiveParameter] public readonly ?string $secret,
        public readonly ?string $cardNumber,
        public readonly ?string $activationUrl,
        /** Entitlements and activate only: the owning order and the code's state (`issued`, `used`, `voided`, ...). */
        public readonly ?string $order = null,
        public readonly ?string $state = null,
        /** Entitlements (and activate): what a 我的权益 page shows, one of the STATUS_* constants (or a newer word). */
        public readonly ?string $status = null,
        /** Entitlements: the SKU's display name. */
        public readonly ?string $skuName = null,
        /** Entitlements: how to redeem the code (the SKU's usage guide; may hold line breaks). */
        public readonly ?string $usageGuide = null,
        /** Entitlements: the code's own expiry (Unix ms), null when it has none. */
        public readonly ?int $expiresAtMs = null,
        /** Entitlements: when the order was placed (Unix ms). */
        public readonly ?int $orderedAtMs = null,
        /** Entitlements and activate: when the code was activated (Unix ms), null while it was not. */
        public readonly ?int $usedAtMs = null,
    ) {
    }

    public static function fromArray(array $a): self
    {
        $str = static fn (string $k): ?string => isset($a[$k]) ? (string) $a[$k] : null;
        $int = static fn (string $k): ?int => isset($a[$k]) && is_numeric($a[$k]) ? (int) $a[$k] : null;
        return new self(
            (int) ($a['code_id'] ?? 0),
            (string) ($a['sku'] ?? ''),
            $str('secret'),
            $str('card_number'),
            $str('activation_url'),
            $str('order'),
            $str('state'),
            $str('status'),
            $str('sku_name'),
            $str('usage_guide'),
            $int('expires_at_ms'),
            $int('ordered_at_ms'),
            $int('used_at_ms'),
        );
    }

    /** An entitlement line of a paid order that has no code yet (status `pending`). */
    public function isPending(): bool
    {
        return $this->status === self::STATUS_PENDING;
    }

    /** Activated (state or status `used`). */
    public function isUsed(): bool
    {
        return $this->status === self::STATUS_USED || $this->state === 'used';
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
            'status' => $this->status,
            'sku_name' => $this->skuName,
            'usage_guide' => $this->usageGuide,
            'expires_at_ms' => $this->expiresAtMs,
            'ordered_at_ms' => $this->orderedAtMs,
            'used_at_ms' => $this->usedAtMs,
        ];
    }

    public function __debugInfo(): array
    {
        $a = $this->toArray();
        $a['secret'] = $this->secret === null ? null : '***';
        return $a;
    }
}
