<?php

declare(strict_types=1);

namespace Kami;

/**
 * kamid could not be reached, the connection broke, or the reply could not be read.
 * Whether the request took effect is unknown: retry an idempotent one with the SAME order id.
 */
class ConnectionException extends KamiException
{
}
