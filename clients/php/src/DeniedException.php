<?php

declare(strict_types=1);

namespace Kami;

/** `DENIED`: the risk gate denied the reserve or issue (see getVerdict()). Nothing was taken; do not retry as is. */
class DeniedException extends RiskException
{
}
