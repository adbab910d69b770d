"""Seeded draws simulators share (each from the `random.Random` the caller seeded, so a
simulation stays a pure function of its seed)."""

from __future__ import annotations

import math
from random import Random


def poisson(rng: Random, mu: float) -> int:
    """A Poisson count with mean `mu`: exact by multiplication for small means, the normal
    approximation above 30 (fast, and close enough for synthetic traffic)."""
    if mu <= 0:
        return 0
    if mu > 30:
        return max(0, round(rng.gauss(mu, math.sqrt(mu))))
    limit, k, p = math.exp(-mu), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
