<?php

declare(strict_types=1);

namespace Kami;

/**
 * The peer answered something that is not a kamid reply (not JSON, wrong shape, wrong id).
 * The connection is closed; the raw line is never put in the message (it may hold secrets).
 */
class ProtocolException extends ConnectionException
{
}
