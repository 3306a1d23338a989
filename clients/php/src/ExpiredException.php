<?php

declare(strict_types=1);

namespace Kami;

/** `EXPIRED`: a commit found its hold expired and the SKU sold out. Refund the payment. */
class ExpiredException extends ServerException
{
}
