<?php

declare(strict_types=1);

namespace Kami;

/**
 * `NOT_FOUND`: no such order, SKU or code (over TCP also another user's order, or a code id
 * that is not the order's); for activateToken() a forged or unknown token.
 */
class NotFoundException extends ServerException
{
}
