"""The generator: one independent, seeded simulation per customer, built on demand."""

from __future__ import annotations

from random import Random

from kpi_pipelines.sandbox.stripe.catalog import (
    COUNTRY,
    DAY,
    TAX_BY_CURRENCY,
    Catalog,
    build_catalog,
)
from kpi_pipelines.sandbox.stripe.generator.billing import Billing
from kpi_pipelines.sandbox.stripe.generator.config import HOUR, STREAM_PROFILE, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.generator.objects import CustomerSim
from kpi_pipelines.sandbox.stripe.generator.personas import (
    CARD_BRANDS,
    COMPANY_WORDS,
    CURRENCY_WEIGHTS,
    FIRST_NAMES,
    LAST_NAMES,
)
from kpi_pipelines.sandbox.stripe.generator.subscriptions import SubscriptionLife
from kpi_pipelines.sandbox.stripe.ids import IdCodec


class Generator(SubscriptionLife, Billing):
    """Simulates customers of one config up to a horizon (the sandbox clock)."""

    def __init__(self, config: StripeSandboxConfig, horizon: int | None = None) -> None:
        self.config = config
        self.codec = IdCodec(config.seed, config.account_id)
        self.start = config.start_ts
        self.horizon = config.now_ts if horizon is None else horizon
        self.catalog: Catalog = build_catalog(self.codec, config.currencies, self.start)
        self.slot = config.acquisition_days * DAY / config.customers
        weights = [CURRENCY_WEIGHTS.get(c, 0.0) for c in config.currencies]
        if not any(weights):
            weights = [1.0] * len(config.currencies)
        total = sum(weights)
        acc, self._currency_cdf = 0.0, []
        for c, w in zip(config.currencies, weights, strict=True):
            acc += w / total
            self._currency_cdf.append((acc, c))

    # -- customers -----------------------------------------------------------------------------

    def customer_count(self, at: int) -> int:
        """How many customers exist at `at` (customers are created in index order)."""
        if at < self.start:
            return 0
        n = int((at - self.start) / self.slot)
        while n > 0 and self.customer_created(n - 1) > at:
            n -= 1
        while self.customer_created(n) <= at:
            n += 1
        return n

    def customer_created(self, ci: int) -> int:
        r = Random(f"{self.config.seed}:{ci}")
        return self.start + int((ci + r.random()) * self.slot)

    def header(self, ci: int, events: bool = False, horizon: int = 0) -> CustomerSim:
        """Customer ci without its history: identity, currency, tax, card, email changes.

        Cheap (one short random stream); what simulate() starts from, and what the API uses to
        render customers and charges from the index without simulating their histories.
        """
        r = Random(f"{self.config.seed}:{ci}")
        created = self.start + int((ci + r.random()) * self.slot)
        u = r.random()
        currency = self._currency_cdf[-1][1]
        for acc, c in self._currency_cdf:
            if u < acc:
                currency = c
                break
        cs = CustomerSim(ci, created, currency, events, horizon)
        first, last = (
            FIRST_NAMES[r.randrange(len(FIRST_NAMES))],
            LAST_NAMES[r.randrange(len(LAST_NAMES))],
        )
        company = f"{last} {COMPANY_WORDS[r.randrange(len(COMPANY_WORDS))]}"
        business = r.random() < 0.6
        cs.name = company if business else f"{first} {last}"
        handle = f"{first}.{last}".lower().replace("-", "")
        cs.email = f"{handle}{ci}@{last.lower().replace('-', '')}.example"
        cs.phone = f"+1555{r.randrange(10**7):07d}"
        taxes = TAX_BY_CURRENCY.get(currency, ())
        tax_key = taxes[r.randrange(len(taxes))] if taxes else None
        cs.country = COUNTRY.get(currency, "US")
        if tax_key in ("de", "fr"):
            cs.country = tax_key.upper()
        if tax_key and r.random() < {"usd": 0.35, "jpy": 0.6}.get(currency, 0.8):
            cs.tax = self.catalog.tax_by_key[tax_key]
            cs.tags.add("tax")
        brand, funding = CARD_BRANDS[r.randrange(len(CARD_BRANDS))]
        cs.card = (
            brand,
            f"{r.randrange(10000):04d}",
            1 + r.randrange(12),
            2027 + r.randrange(5),
            funding,
        )
        cs.invoice_prefix = f"{r.getrandbits(32):08X}"
        cs.emit(created, "customer.created", None, STREAM_PROFILE)
        if r.random() < 0.15:  # the customer changes their billing email once
            t = created + int(r.uniform(20, 400) * DAY)
            new_email = f"billing{ci}@{last.lower().replace('-', '')}.example"
            cs.email_log.append((t, new_email))
            cs.emit(t, "customer.updated", None, STREAM_PROFILE)
        for t in self.sign_ins(ci, created, horizon):
            cs.emit(t, "customer.updated", None, STREAM_PROFILE)
        cs.tags.add(f"currency_{currency}")
        return cs

    def sign_ins(self, ci: int, created: int, until: int) -> range:
        """When customer ci signed in after `config.sign_ins_from`, up to `until`: the slots
        `sign_in_seconds` apart are taken by the first `customers` in turn."""
        config = self.config
        if config.sign_ins_from is None or ci >= config.customers:
            return range(0)
        every = config.sign_in_seconds
        first = int(config.sign_ins_from.timestamp()) + ci * every
        lap = config.customers * every
        if first <= created:  # their first sign-in was the sign-up
            first += (created - first) // lap * lap + lap
        return range(first, until + 1, lap)

    def last_sign_in(self, ci: int, created: int, t: int) -> int | None:
        """When customer ci last signed in by `t` (the sign-up counts), or None when the
        account records no sign-ins."""
        if self.config.sign_ins_from is None:
            return None
        since = self.sign_ins(ci, created, t)
        return since[-1] if since else created

    def simulate(self, ci: int, events: bool = True, horizon: int | None = None) -> CustomerSim:
        """Customer ci's life up to the horizon (or up to an earlier `horizon`).

        Without its events if `events` is False (cheaper, for serving other objects). A
        simulation up to an earlier horizon h has exactly the objects of the full one that
        were created by h, with their whole timelines (invoices, charges, refunds and balance
        transactions are decided when created), and the objects they refer to that come later
        (retries, refunds and their balance transactions, all within SETTLE) are numbered the
        same when the earlier horizon is at least SETTLE after them. So `horizon=created +
        SETTLE` renders such an object exactly as the full simulation does; subscriptions,
        customers and events need the full simulation.
        """
        seed = self.config.seed
        if horizon is None or horizon > self.horizon:
            horizon = self.horizon
        cs = self.header(ci, events, horizon)
        created = cs.created

        rs = Random(f"{seed}:{ci}:s")
        if rs.random() < 0.93:
            t = created + int(rs.uniform(60, 3 * DAY))
            n = 0
            while t <= cs.horizon:
                ended = self._subscription(cs, rs, t, n)
                n += 1
                if ended is None:
                    break
                u_react, gap = rs.random(), rs.uniform(10, 120) * DAY
                if u_react >= 0.35:
                    break
                t = ended + int(gap)
                if t <= cs.horizon:
                    cs.tags.add("reactivation")

        ro = Random(f"{seed}:{ci}:o")
        if ro.random() < 0.25:
            t = created + int(ro.expovariate(1 / (90 * DAY)))
            while t <= cs.horizon:
                self._one_off(cs, ro, t)
                t += HOUR + int(ro.expovariate(1 / (120 * DAY)))
        cs.finish()
        return cs
