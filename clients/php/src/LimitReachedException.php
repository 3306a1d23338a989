<?php

declare(strict_types=1);

namespace Kami;

/** `LIMIT_REACHED`: the user's per-SKU or pending-holds limit, or too many failed lookups. For a commit: refund the payment. */
class LimitReachedException extends ServerException
{
}
