<?php

declare(strict_types=1);

namespace Kami;

/** `UNAVAILABLE`: kamid cannot do it now (disk error, shutting down). Safe to retry later with the same order id (the client does, within its retry budget). */
class UnavailableException extends ServerException
{
}
