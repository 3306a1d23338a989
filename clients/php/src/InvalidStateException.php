<?php

declare(strict_types=1);

namespace Kami;

/** `INVALID_STATE`: the order's state forbids it (commit of a released order, release of a paid one, ...). */
class InvalidStateException extends ServerException
{
}
