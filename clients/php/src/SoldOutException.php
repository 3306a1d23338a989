<?php

declare(strict_types=1);

namespace Kami;

/** `SOLD_OUT`: not enough available codes for the quantity. Tell the buyer. */
class SoldOutException extends ServerException
{
}
