<?php

declare(strict_types=1);

namespace Kami;

/** `UNAUTHORIZED`: no or failed hello (wrong client or token), or an operator operation over TCP. */
class UnauthorizedException extends ServerException
{
}
