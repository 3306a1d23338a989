<?php

declare(strict_types=1);

namespace Kami;

/** Connecting or waiting for a reply took longer than the configured timeout. */
class TimeoutException extends ConnectionException
{
}
