<?php

declare(strict_types=1);

namespace Kami;

/** `CONFLICT`: the order id exists with different arguments. Use a new order id for a different order. */
class ConflictException extends ServerException
{
}
