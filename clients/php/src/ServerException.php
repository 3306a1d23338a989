<?php

declare(strict_types=1);

namespace Kami;

/**
 * kamid answered `"ok":false`. `getErrorCode()` is the wire code (`SOLD_OUT`, ...);
 * a code this client does not know is thrown as a plain ServerException carrying it.
 */
class ServerException extends KamiException
{
    /** Wire error code => exception class. */
    public const CLASSES = [
        'BAD_REQUEST' => BadRequestException::class,
        'UNAUTHORIZED' => UnauthorizedException::class,
        'NOT_FOUND' => NotFoundException::class,
        'SOLD_OUT' => SoldOutException::class,
        'LIMIT_REACHED' => LimitReachedException::class,
        'CONFLICT' => ConflictException::class,
        'EXPIRED' => ExpiredException::class,
        'TOO_LARGE' => TooLargeException::class,
        'BUSY' => BusyException::class,
        'UNAVAILABLE' => UnavailableException::class,
        'INVALID_STATE' => InvalidStateException::class,
        'INTEGRITY' => IntegrityException::class,
        'DENIED' => DeniedException::class,
        'CHALLENGE_REQUIRED' => ChallengeRequiredException::class,
    ];

    public function __construct(
        private readonly string $errorCode,
        private readonly string $serverMessage,
        ?string $op = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct(
            ($op !== null ? "$op: " : '') . "$errorCode: $serverMessage",
            $op,
            $previous,
        );
    }

    /** Builds the exception for an error object of a reply. */
    public static function fromError(array $error, ?string $op): self
    {
        $code = is_string($error['code'] ?? null) ? $error['code'] : 'UNKNOWN';
        $message = is_string($error['message'] ?? null) ? $error['message'] : '';
        $class = self::CLASSES[$code] ?? self::class;
        if (is_subclass_of($class, RiskException::class)) {
            $risk = is_array($error['risk'] ?? null) ? $error['risk'] : [];
            return new $class($code, $message, RiskVerdict::fromArray($risk), $op);
        }
        return new $class($code, $message, $op);
    }

    /** The wire code, e.g. `SOLD_OUT`. */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /** kamid's own message, for people. */
    public function getServerMessage(): string
    {
        return $this->serverMessage;
    }
}
