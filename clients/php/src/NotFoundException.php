<?php

declare(strict_types=1);

namespace Kami;

/** `NOT_FOUND`: no such order, SKU or code (over TCP also another user's order). */
class NotFoundException extends ServerException
{
}
