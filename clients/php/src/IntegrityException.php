<?php

declare(strict_types=1);

namespace Kami;

/** `INTEGRITY`: stored data failed an integrity check. Alert the operator. */
class IntegrityException extends ServerException
{
}
