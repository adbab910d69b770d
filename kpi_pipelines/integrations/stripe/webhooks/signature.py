"""Stripe's webhook signature, checked over the raw body before anything reads it.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`; each v1 is HMAC-SHA256 over
`"{t}.{raw body}"` with the endpoint's `whsec_` secret. Our own check rather than the SDK's
`WebhookSignature.verify_header`: that one takes the body as text (so a body that is not
UTF-8 cannot even be checked), computes the HMAC again for every secret it is called with,
and accepts timestamps from any point in the future.

The header is checked (`parse_header`) before the receiver looks anything up, so a request
without a well-formed, current header costs the same whatever the endpoint holds; one with
such a header costs at least HMACS_PER_REQUEST HMACs over its body, whatever the endpoint
holds (up to that many secrets).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from secrets import token_hex

TOLERANCE_SECONDS = 300
# The HMACs every checked body costs at least: its endpoint's distinct secrets, then
# decoys nobody knows. An unknown workspace and one with up to this many secrets cost alike.
HMACS_PER_REQUEST = 4
_DECOYS = tuple(f"whsec_{token_hex(32)}" for _ in range(HMACS_PER_REQUEST))

# A v1 signature is a lowercase SHA-256 hex digest; anything else can never match, and
# hmac.compare_digest refuses non-ASCII text, so such values are dropped before comparing.
_V1 = re.compile(r"[0-9a-f]{64}")
# Unix time in seconds has 10 digits until 2286; a bound keeps int() cheap.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or from the future."""


@dataclass(frozen=True)
class SignatureHeader:
    """A well-formed Stripe-Signature header of a current timestamp."""

    timestamp: int
    signatures: tuple[str, ...]

    def matching(self, payload: bytes, secrets: Iterable[str]) -> list[str]:
        """The secrets among `secrets` that signed `payload` (usually none or one).

        Each distinct secret's HMAC is computed once (decoys make up HMACS_PER_REQUEST) and
        compared in constant time with every v1 signature of the header."""
        candidates = list(dict.fromkeys(secrets))
        matched = [secret for secret in candidates if self._signed(payload, secret)]
        for decoy in _DECOYS[: max(0, HMACS_PER_REQUEST - len(candidates))]:
            self._signed(payload, decoy)  # the same work as a secret; nobody knows a decoy
        return matched

    def _signed(self, payload: bytes, secret: str) -> bool:
        mac = hmac.new(secret.encode(), f"{self.timestamp}.".encode(), hashlib.sha256)
        mac.update(payload)
        expected = mac.hexdigest()
        # A list, not a generator: every signature is compared, so timing says nothing.
        return any([hmac.compare_digest(expected, signature) for signature in self.signatures])


def parse_header(header: str, *, now: float | None = None) -> SignatureHeader:
    """The header, if it is well-formed and its timestamp within TOLERANCE_SECONDS of `now`;
    else SignatureError, before any secret is looked up."""
    timestamp, signatures = _parse(header)
    now = time.time() if now is None else now
    if timestamp < now - TOLERANCE_SECONDS:
        raise SignatureError(f"the signature timestamp is more than {TOLERANCE_SECONDS} s old")
    if timestamp > now + TOLERANCE_SECONDS:
        raise SignatureError(
            f"the signature timestamp is more than {TOLERANCE_SECONDS} s in the future"
        )
    return SignatureHeader(timestamp, tuple(signatures))


def matching_secrets(
    payload: bytes, header: str, secrets: Iterable[str], *, now: float | None = None
) -> list[str]:
    """The secrets among `secrets` that signed `payload`; SignatureError when the header
    cannot match any secret."""
    return parse_header(header, now=now).matching(payload, secrets)


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
