<?php

declare(strict_types=1);

namespace Kami;

/** What `hello` told: protocol version, server name, features (check one before using it). */
final class ServerInfo
{
    /** @param string[] $features */
    public function __construct(
        public readonly int $protocol,
        public readonly string $server,
        public readonly array $features,
    ) {
    }

    public static function fromReply(array $r): self
    {
        return new self(
            (int) ($r['protocol'] ?? 1),
            (string) ($r['server'] ?? ''),
            array_values(array_map('strval', is_array($r['features'] ?? null) ? $r['features'] : [])),
        );
    }

    public function has(string $feature): bool
    {
        return in_array($feature, $this->features, true);
    }
}
