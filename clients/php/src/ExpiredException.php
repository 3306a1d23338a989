<?php

declare(strict_types=1);

namespace Kami;

/**
 * `EXPIRED`: a commit found its hold expired and the SKU sold out (refund the payment), or
 * activateToken() got a genuine activation token past its time (open the link again from
 * the order: its activation_url carries a fresh token).
 */
class ExpiredException extends ServerException
{
}
