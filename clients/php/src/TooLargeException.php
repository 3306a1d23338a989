<?php

declare(strict_types=1);

namespace Kami;

/** `TOO_LARGE`: a line or reply over kamid's limit. */
class TooLargeException extends ServerException
{
}
