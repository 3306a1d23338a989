<?php

declare(strict_types=1);

namespace Kami;

/** A refusal by kamid's risk gate (`DENIED` or `CHALLENGE_REQUIRED`), carrying its verdict. */
abstract class RiskException extends ServerException
{
    public function __construct(
        string $errorCode,
        string $serverMessage,
        private readonly RiskVerdict $verdict,
        ?string $op = null,
    ) {
        parent::__construct($errorCode, $serverMessage, $op);
    }

    public function getVerdict(): RiskVerdict
    {
        return $this->verdict;
    }

    /** The token to send back as `challenge_token` once the buyer passed the challenge. */
    public function getChallengeToken(): ?string
    {
        return $this->verdict->challenge;
    }
}
