"""Stripe's webhook signature, checked over the raw body before anything reads it.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`; each v1 is HMAC-SHA256 over
`"{t}.{raw body}"` with the endpoint's `whsec_` secret. Our own check rather than the SDK's
`WebhookSignature.verify_header`: that one takes the body as text (so a body that is not
UTF-8 cannot even be checked), computes the HMAC again for every secret it is called with,
and accepts timestamps from any point in the future.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable

TOLERANCE_SECONDS = 300

# A v1 signature is a lowercase SHA-256 hex digest; anything else can never match, and
# hmac.compare_digest refuses non-ASCII text, so such values are dropped before comparing.
_V1 = re.compile(r"[0-9a-f]{64}")
# Unix time in seconds has 10 digits until 2286; a bound keeps int() cheap.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or from the future."""


def matching_secrets(
    payload: bytes, header: str, secrets: Iterable[str], *, now: float | None = None
) -> list[str]:
    """The secrets among `secrets` that signed `payload` (usually none or one).

    Raises SignatureError when the header cannot match any secret; each secret's HMAC is
    computed once, and compared in constant time with every v1 signature of the header.
    """
    timestamp, signatures = _parse(header)
    now = time.time() if now is None else now
    if timestamp < now - TOLERANCE_SECONDS:
        raise SignatureError(f"the signature timestamp is more than {TOLERANCE_SECONDS} s old")
    if timestamp > now + TOLERANCE_SECONDS:
        raise SignatureError(
            f"the signature timestamp is more than {TOLERANCE_SECONDS} s in the future"
        )
    prefix = f"{timestamp}.".encode()
    matched = []
    for secret in secrets:
        mac = hmac.new(secret.encode(), prefix, hashlib.sha256)
        mac.update(payload)
        expected = mac.hexdigest()
        # A list, not a generator: every signature is compared, so timing says nothing.
        if any([hmac.compare_digest(expected, signature) for signature in signatures]):
            matched.append(secret)
    return matched


def _parse(header: str) -> tuple[int, list[str]]:
    if not header:
        raise SignatureError("no Stripe-Signature header")
    timestamp: int | None = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and timestamp is None:
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("the Stripe-Signature timestamp is not a unix time")
            timestamp = int(value)
        elif key == "v1" and _V1.fullmatch(value):
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("the Stripe-Signature header has no timestamp")
    if not signatures:
        raise SignatureError("the Stripe-Signature header has no v1 signature")
    return timestamp, signatures
