"""Deterministic, opaque-looking Stripe object ids that decode back to (customer, local index).

An id packs (owner, local, sub) into 64 bits (owner: customer index, 28 bits; local: the
object's index among its customer's objects of that kind, 24 bits; sub: e.g. a line's index on
its invoice, 12 bits), scrambles them with an invertible 64-bit mix keyed by the seed and the
kind, and writes them in base 62. So any id is resolved in O(1) without a lookup table, and ids
look like Stripe's (`sub_1Pgc6rB7WZ01zgkWNy0Cn5nw`, `cus_QXg1o8vcGmoR32`).
"""

from __future__ import annotations

import hashlib

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_M64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_C1_INV = pow(_C1, -1, 1 << 64)
_C2_INV = pow(_C2, -1, 1 << 64)

OWNER_BITS, LOCAL_BITS, SUB_BITS = 28, 24, 12
CATALOG_OWNER = (1 << OWNER_BITS) - 1  # the shared catalog (products, prices, tax rates)
MAX_LOCAL = (1 << LOCAL_BITS) - 1
MAX_SUB = (1 << SUB_BITS) - 1

# Kinds whose ids are 14 characters after the prefix (like Stripe's cus_/prod_/si_); others 24.
_SHORT = frozenset({"cus", "prod", "si"})
_CACHE_LIMIT = 8_192  # ids remembered per kind (a page reuses many: customer, subscription...)


def _unshift(y: int, s: int) -> int:
    x = y
    shift = s
    while shift < 64:
        x = y ^ (x >> s)
        shift += s
    return x & _M64


def _mix(x: int, key: int) -> int:
    x ^= key
    x = (x * _C1) & _M64
    x ^= x >> 31
    x = (x * _C2) & _M64
    x ^= x >> 29
    return x


def _unmix(x: int, key: int) -> int:
    x = _unshift(x, 29)
    x = (x * _C2_INV) & _M64
    x = _unshift(x, 31)
    x = (x * _C1_INV) & _M64
    return x ^ key


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _b62_11(n: int) -> str:
    """Eleven base-62 digits of a 64-bit number (62**11 > 2**64), two digits per division."""
    n, r1 = divmod(n, 3844)
    n, r2 = divmod(n, 3844)
    n, r3 = divmod(n, 3844)
    n, r4 = divmod(n, 3844)
    n, r5 = divmod(n, 3844)
    return _ALPHABET[n] + _PAIRS[r5] + _PAIRS[r4] + _PAIRS[r3] + _PAIRS[r2] + _PAIRS[r1]


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _unb62(s: str) -> int:
    n = 0
    for c in s:
        n = n * 62 + _INDEX[c]
    return n


def _tag(text: str, width: int) -> str:
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:12], "big")
    return _b62(digest, width)


class IdCodec:
    """Encode and decode the ids of one sandbox (seed and account)."""

    def __init__(self, seed: int, account_id: str) -> None:
        self._tag10 = _tag(f"acct:{account_id}", 10)
        self._tag3 = _tag(f"acct3:{account_id}", 3)
        self._keys: dict[str, int] = {}
        self._seed = seed
        self._cache: dict[str, dict[int, str]] = {}

    def _key(self, kind: str) -> int:
        key = self._keys.get(kind)
        if key is None:
            digest = hashlib.sha256(f"{self._seed}:{kind}".encode()).digest()
            key = self._keys[kind] = int.from_bytes(digest[:8], "big")
        return key

    def encode(self, kind: str, owner: int, local: int, sub: int = 0) -> str:
        packed = (owner << (LOCAL_BITS + SUB_BITS)) | (local << SUB_BITS) | sub
        cache = self._cache.get(kind)
        if cache is None:
            cache = self._cache[kind] = {}
        text = cache.get(packed)
        if text is not None:
            return text
        m = _b62_11(_mix(packed, self._key(kind)))
        if kind in _SHORT:
            text = f"{kind}_{m}{self._tag3}"
        else:
            text = f"{kind}_1{m[:5]}{self._tag10}{m[5:]}{_PAIRS[packed % 3844]}"
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[packed] = text
        return text

    def decode(self, kind: str, text: str) -> tuple[int, int, int] | None:
        """(owner, local, sub) for an id of `kind` made by this codec, else None."""
        prefix = kind + "_"
        if not text.startswith(prefix):
            return None
        body = text[len(prefix) :]
        try:
            if kind in _SHORT:
                if len(body) != 14 or body[11:] != self._tag3:
                    return None
                m = body[:11]
            else:
                if len(body) != 24 or body[0] != "1" or body[6:16] != self._tag10:
                    return None
                m = body[1:6] + body[16:22]
            raw = _unb62(m)
        except KeyError:
            return None
        if raw > _M64:
            return None
        value = _unmix(raw, self._key(kind))
        if kind not in _SHORT and _PAIRS[value % 3844] != body[22:24]:
            return None
        sub = value & MAX_SUB
        local = (value >> SUB_BITS) & MAX_LOCAL
        owner = value >> (LOCAL_BITS + SUB_BITS)
        return owner, local, sub


def stable_hex(text: str, width: int) -> str:
    """A deterministic hex string (invoice prefixes, fingerprints)."""
    return hashlib.sha256(text.encode()).hexdigest()[:width].upper()


def stable_b62(text: str, width: int) -> str:
    return _tag(text, width)
