<?php

declare(strict_types=1);

namespace Kami;

/** `CHALLENGE_REQUIRED`: the risk gate wants a challenge (captcha) passed; send the same request again with challenge_token = getChallengeToken(). */
class ChallengeRequiredException extends RiskException
{
}
