<?php

declare(strict_types=1);

namespace Kami;

/** `BUSY`: kamid is overloaded. Safe to retry later with the same order id (the client does, within its retry budget). */
class BusyException extends ServerException
{
}
