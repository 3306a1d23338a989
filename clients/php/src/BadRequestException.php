<?php

declare(strict_types=1);

namespace Kami;

/** `BAD_REQUEST`: the request is malformed or out of range. Fix it; do not retry as is. */
class BadRequestException extends ServerException
{
}
