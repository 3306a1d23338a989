<?php

declare(strict_types=1);

namespace Kami;

/**
 * Base of everything this client throws about kamid.
 *
 * Messages never contain a secret, a token or a raw reply line: only the operation,
 * the order id and kamid's own message (which kamid promises is secret-free).
 */
class KamiException extends \RuntimeException
{
    public function __construct(
        string $message,
        private readonly ?string $op = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }

    /** The operation that failed (`issue`, `reserve`, ...), when known. */
    public function getOp(): ?string
    {
        return $this->op;
    }
}
