<?php

declare(strict_types=1);

namespace Kami;

/** The risk gate's verdict: `decision` is allow, challenge or deny (review on orders). */
final class RiskVerdict
{
    /** @param string[] $rules */
    public function __construct(
        public readonly string $decision,
        public readonly string $reason,
        public readonly array $rules,
        public readonly int $score,
        public readonly ?string $challenge,
    ) {
    }

    public static function fromArray(array $a): self
    {
        $decision = is_string($a['decision'] ?? null) ? $a['decision'] : 'deny';
        if (!in_array($decision, ['allow', 'challenge', 'review', 'deny'], true)) {
            $decision = 'deny'; // an unknown decision reads as deny (docs/protocol.md)
        }
        return new self(
            $decision,
            (string) ($a['reason'] ?? ''),
            array_values(array_map('strval', is_array($a['rules'] ?? null) ? $a['rules'] : [])),
            (int) ($a['score'] ?? 0),
            isset($a['challenge']) ? (string) $a['challenge'] : null,
        );
    }

    public function allowed(): bool
    {
        return $this->decision === 'allow';
    }
}
