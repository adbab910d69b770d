"""The Stripe sandbox: a seeded business, its clock, a compact index, and its fault script.

Memory: customers are simulated on demand (an LRU cache keeps the recently used ones), so
the sandbox holds only a compact index of the objects that global lists order by `created`:
per object 8 bytes (created) + 4 (customer) + 4 (local index) + 1 (flag: canceled, event
type or balance-transaction type) = 17 bytes, in stdlib `array`s, plus a few columns for the
objects rendered from the index alone (customers +13 bytes, charges +14, balance transactions
+17): about 28 MB per million objects (events: only the 30-day window is indexed). Building the index simulates every
customer once (the cost of `__init__` and of `advance()`); a page then costs one cached or fresh
customer simulation per object on it, and `bisect` finds cursors in O(log n).
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kpi_pipelines.sandbox.kit import SimClock
from kpi_pipelines.sandbox.stripe.catalog import DAY
from kpi_pipelines.sandbox.stripe.faults import Faults
from kpi_pipelines.sandbox.stripe.generator import (
    DEFAULT_START,
    EVENT_CODE,
    EVENT_TYPES,
    CustomerSim,
    Generator,
    StripeSandboxConfig,
)
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER, stable_b62
from kpi_pipelines.sandbox.stripe.render import REFUND_DESCRIPTION, Renderer, customer_facts
from kpi_pipelines.sandbox.stripe.scripted import ScriptedGenerator
from kpi_pipelines.sandbox.stripe.scripts import DEFAULT_CURRENCIES, CustomerScript
from kpi_pipelines.sandbox.stripe.truth import StripeTruth
from kpi_pipelines.sandbox.stripe.visibility import EventVisibility

EVENT_WINDOW = 30 * DAY
DEFAULT_API_KEY = "sk_test_kpiSandbox000000000000000000"


# Extra index columns (array type codes) of the objects rendered from the index alone:
# customers: balance, finalized invoices, flags (1 delinquent, 2 billed);
# charges: amount, balance transaction, description, flags (1 failed, 2 refunded by now);
# balance transactions: amount, fee, source (charge or refund index), description.
_EXTRA = {"customers": "qiB", "charges": "qiBB", "balance_transactions": "qiiB"}

INDEXED = (
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "refunds",
    "balance_transactions",
    "events",
)


class Index:
    """Objects of one resource sorted by (created, customer, local index).

    `extra` holds resource-specific columns (balance transactions: amount, fee, source index,
    description code), enough to render those objects without simulating their customer.
    """

    __slots__ = ("ci", "created", "extra", "flag", "li")

    def __init__(self, extra: str = "") -> None:
        self.created = array("q")
        self.ci = array("i")
        self.li = array("i")
        self.flag = array("B")
        self.extra = [array(code) for code in extra]

    def __len__(self) -> int:
        return len(self.created)

    def position(self, created: int, ci: int, li: int) -> int | None:
        i = bisect_left(self.created, created)
        n = len(self.created)
        while i < n and self.created[i] == created:
            if self.ci[i] == ci and self.li[i] == li:
                return i
            i += 1
        return None

    def nbytes(self) -> int:
        columns = (self.created, self.ci, self.li, self.flag, *self.extra)
        return sum(a.itemsize * len(a) for a in columns)


class _Builder:
    __slots__ = ("ci", "codes", "extra", "flag", "keys", "li")

    def __init__(self, extra: str = "") -> None:
        self.keys = array("q")
        self.ci = array("i")
        self.li = array("i")
        self.flag = array("B")
        self.codes = extra
        self.extra = [array(code) for code in extra]

    def add(self, created: int, ci: int, li: int, flag: int, base: int) -> None:
        self.keys.append(((created - base) << 32) | len(self.ci))
        self.ci.append(ci)
        self.li.append(li)
        self.flag.append(flag)

    def build(self, base: int) -> Index:
        index = Index(self.codes)
        order = sorted(self.keys)
        self.keys = array("q")
        ci, li, flag = self.ci, self.li, self.flag
        created_a, ci_a, li_a, flag_a = index.created, index.ci, index.li, index.flag
        mask = 0xFFFFFFFF
        for key in order:
            seq = key & mask
            created_a.append((key >> 32) + base)
            ci_a.append(ci[seq])
            li_a.append(li[seq])
            flag_a.append(flag[seq])
        for source, target in zip(self.extra, index.extra, strict=True):
            for key in order:
                target.append(source[key & mask])
        return index


@dataclass
class State:
    """Everything that depends on the clock; replaced whole by advance()."""

    now: int
    gen: Generator
    renderer: Renderer
    customers: int
    index: dict[str, Index]
    catalog_events: list[tuple[int, str, object]]
    # currency: (available, pending)
    balance: dict[str, tuple[int, int]] = field(default_factory=dict)
    cache: OrderedDict[int, CustomerSim] = field(default_factory=OrderedDict)
    currency_of: array = field(default_factory=lambda: array("B"))  # customer: currency code
    descriptions: list[str] = field(default_factory=list)  # balance transactions' descriptions


class StripeSandbox:
    """A deterministic Stripe account. Serve it with `create_app(sandbox)`.

    `StripeSandbox(seed=1, customers=500)` or `StripeSandbox(StripeSandboxConfig(...))`.
    """

    def __init__(
        self,
        config: StripeSandboxConfig | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str | None = None,
        cache_size: int = 4096,
        **overrides: Any,
    ) -> None:
        self.config = config if config is not None else StripeSandboxConfig(**overrides)
        if config is not None and overrides:
            raise TypeError("pass either a config or keyword overrides, not both")
        self.api_key = api_key
        self.webhook_secret = webhook_secret or (
            "whsec_" + stable_b62(f"whsec:{self.config.seed}:{self.config.account_id}", 32)
        )
        self.faults = Faults()
        self.event_visibility = EventVisibility()
        self._deleted_coupons: dict[str, int] = {}  # coupon id: when it was deleted
        self._lock = threading.RLock()
        self._cache_size = cache_size
        self._truth: StripeTruth | None = None
        # The kit's clock, fixed: each instant's state is built whole (see advance()).
        self.clock = SimClock(self.config.start)
        self.clock.advance_to(self.config.now_ts)
        self.state = self._build(self.config.now_ts)

    @classmethod
    def scripted(cls, customers: Any, **options: Any) -> StripeSandbox:
        """A sandbox whose customers follow an explicit script (see scenarios.py)."""
        return ScriptedSandbox(customers, **options)

    # -- clock --------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    @property
    def now_ts(self) -> int:
        return self.clock.timestamp()

    @property
    def start(self) -> datetime:
        return self.config.start

    def advance(self, to: datetime | timedelta | int, *, into_second: float | None = None) -> None:
        """Move the simulated clock forward (new objects and events appear, states change).

        `into_second`: stop the clock that far into second `to` (0 <= f < 1): of the events
        created in that second only the first ones have happened (see visibility.py). By
        default the second is over and all its events are listed.
        """
        if isinstance(to, timedelta):
            target = self.now_ts + int(to.total_seconds())
        elif isinstance(to, datetime):
            if to.tzinfo is None:
                raise ValueError("advance(to) needs a timezone-aware datetime")
            target = int(to.timestamp())
        else:
            target = int(to)
        if into_second is not None and not 0.0 <= into_second < 1.0:
            raise ValueError("into_second must be in [0, 1)")
        elapsed = 1.0 if into_second is None else into_second
        current = self.event_visibility.into_second
        if target < self.now_ts or (
            target == self.now_ts and elapsed < (1.0 if current is None else current)
        ):
            raise ValueError("the sandbox clock only moves forward")
        if target != self.now_ts:
            state = self._build(target)
            with self._lock:  # the clock and the state it was built for move together
                self.clock.advance_to(target)
                self.state = state
        self.event_visibility.into_second = into_second

    # -- what the account's users do ----------------------------------------------------------

    def delay_events(
        self,
        seconds: int | None,
        *,
        types: tuple[str, ...] | list[str] | None = None,
        created_from: datetime | int | None = None,
        share: float = 1.0,
    ) -> None:
        """Stripe's events list is eventually consistent: matching events (of `types`, created
        at or after `created_from`, `share` of them chosen by a stable hash) appear in
        `/v1/events` and `GET /v1/events/:id` only `seconds` after their `created`; None: never
        (a lost event). The objects they describe change at once. Stacks with earlier calls."""
        if isinstance(created_from, datetime):
            created_from = int(created_from.timestamp())
        self.event_visibility.delay(seconds, types=types, created_from=created_from, share=share)

    def clear_event_delays(self) -> None:
        self.event_visibility.delays.clear()

    def delete_coupon(self, coupon_id: str) -> None:
        """`DELETE /v1/coupons/:id` at the clock: the coupon leaves `/v1/coupons` and retrieving
        it answers 404, a `coupon.deleted` event is created; discounts already applied keep
        applying (Stripe: deleting a coupon only stops new redemptions)."""
        coupon = self.state.gen.catalog.coupon_by_id.get(coupon_id)
        if coupon is None or coupon.created > self.state.now or coupon_id in self._deleted_coupons:
            raise KeyError(f"no such coupon: {coupon_id}")
        self._deleted_coupons[coupon_id] = self.state.now
        state = self._build(self.state.now)
        with self._lock:
            self.state = state

    def coupon_deleted(self, coupon_id: str, at: int | None = None) -> bool:
        deleted_at = self._deleted_coupons.get(coupon_id)
        return deleted_at is not None and deleted_at <= (self.state.now if at is None else at)

    # -- customers ----------------------------------------------------------------------------

    @property
    def generator(self) -> Generator:
        return self.state.gen

    @property
    def renderer(self) -> Renderer:
        return self.state.renderer

    @property
    def customer_count(self) -> int:
        return self.state.customers

    def sim(
        self,
        ci: int,
        state: State | None = None,
        *,
        events: bool = False,
        until: int | None = None,
    ) -> CustomerSim:
        """Customer `ci`'s simulation at the clock (cached; with its events if asked).

        `until`: only objects created by then are needed (see Generator.simulate), so a
        cheaper simulation up to that instant will do.
        """
        state = state or self.state
        cache = state.cache
        horizon = state.now if until is None else min(until, state.now)
        with self._lock:
            cs = cache.get(ci)
            if cs is not None and (cs.has_events or not events) and cs.horizon >= horizon:
                cache.move_to_end(ci)
                return cs
        cs = state.gen.simulate(ci, events=events, horizon=horizon)
        with self._lock:
            cache[ci] = cs
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        return cs

    def customers(self) -> list[CustomerSim]:
        """Every customer's simulation (for tests and truth on small sandboxes)."""
        state = self.state
        return [self.sim(ci, state) for ci in range(state.customers)]

    def customer_id(self, ci: int) -> str:
        return self.state.gen.codec.encode("cus", ci, 0)

    def customer_index(self, customer_id: str) -> int | None:
        decoded = self.state.gen.codec.decode("cus", customer_id)
        if decoded is None or decoded[0] >= self.state.customers:
            return None
        return decoded[0]

    # -- counts and events --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Objects per indexed resource at the clock (events: the 30-day window)."""
        out = {name: len(index) for name, index in self.state.index.items()}
        cat = self.state.gen.catalog
        now = self.state.now
        out["products"] = sum(1 for p in cat.products if p.created <= now)
        out["prices"] = sum(1 for p in cat.prices if p.created <= now)
        out["coupons"] = sum(
            1 for c in cat.coupons if c.created <= now and not self.coupon_deleted(c.id)
        )
        return out

    def index_bytes(self) -> int:
        return sum(index.nbytes() for index in self.state.index.values())

    def events_since(
        self, since: datetime | int, types: tuple[str, ...] | None = None
    ) -> list[dict]:
        """Every event created in [since, now], oldest first, rendered (not limited to 30 days).

        Simulates every customer: meant for tests on small sandboxes.
        """
        state = self.state
        t0 = int(since.timestamp()) if isinstance(since, datetime) else int(since)
        rows: list[tuple[int, int, int, dict]] = []
        render = state.renderer
        for ci in range(state.customers):
            cs = self.sim(ci, state, events=True)
            for li in range(cs.n_events):
                t, type_, obj = cs.event(li)
                if t0 <= t <= state.now and (types is None or type_ in types):
                    rows.append((t, ci, li, render.event(cs, li, t, type_, obj)))
        for li, (t, type_, obj) in enumerate(state.catalog_events):
            if t0 <= t <= state.now and (types is None or type_ in types):
                rows.append((t, -1, li, render.event(None, li, t, type_, obj)))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return [r[3] for r in rows]

    @property
    def truth(self) -> StripeTruth:
        if self._truth is None:
            self._truth = StripeTruth(self)
        return self._truth

    # -- index --------------------------------------------------------------------------------

    def _generator(self, now: int) -> Generator:
        """The business simulated up to `now` (scenarios.ScriptedSandbox scripts its own)."""
        if self.config.billing_variety:
            from kpi_pipelines.sandbox.stripe.variety import VarietyGenerator

            return VarietyGenerator(self.config, horizon=now)
        return Generator(self.config, horizon=now)

    def _build(self, now: int) -> State:
        gen = self._generator(now)
        renderer = Renderer(gen)
        n = gen.customer_count(now)
        base = self.config.start_ts - 400 * DAY
        builders = {name: _Builder(_EXTRA.get(name, "")) for name in INDEXED}
        b_cus, b_sub, b_inv, b_ch, b_re, b_bt, b_ev = (builders[name] for name in INDEXED)
        window = now - EVENT_WINDOW
        redemptions: Counter[str] = Counter()
        balance: dict[str, list[int]] = {}
        keep = n <= self._cache_size
        cache: OrderedDict[int, CustomerSim] = OrderedDict()
        codes = EVENT_CODE
        currency_code = {c: i for i, c in enumerate(self.config.currencies)}
        currency_of = array("B")
        descriptions: dict[str, int] = {REFUND_DESCRIPTION: 0}
        bt_amount, bt_fee, bt_source, bt_desc = b_bt.extra
        cus_balance, cus_finalized, cus_flags = b_cus.extra
        ch_amount, ch_bt, ch_desc, ch_flags = b_ch.extra

        def describe(text: str) -> int:
            code = descriptions.get(text)
            if code is None:
                code = descriptions[text] = len(descriptions)
            return code

        for ci in range(n):
            cs = gen.simulate(ci)
            currency_of.append(currency_code[cs.currency])
            b_cus.add(cs.created, ci, 0, 0, base)
            balance_now, delinquent, finalized, billed = customer_facts(cs, now)
            cus_balance.append(balance_now)
            cus_finalized.append(finalized)
            cus_flags.append(int(delinquent) | (2 if billed else 0))
            for sub in cs.subs:
                if sub.created <= now:
                    ended = sub.ended_at is not None and sub.ended_at <= now
                    b_sub.add(sub.created, ci, sub.li, 1 if ended else 0, base)
            for inv in cs.invoices:
                if inv.created > now:
                    break
                b_inv.add(inv.created, ci, inv.li, 0, base)
            for ch in cs.charges:
                if ch.created > now:
                    break
                b_ch.add(ch.created, ci, ch.li, 0, base)
                ch_amount.append(ch.amount)
                ch_bt.append(-1 if ch.bt is None else ch.bt.li)
                ch_desc.append(describe(ch.description))
                refunded = bool(ch.refunds) and ch.refunds[0].created <= now
                ch_flags.append((1 if ch.status == "failed" else 0) | (2 if refunded else 0))
            for rf in cs.refunds:
                if rf.created > now:
                    break
                b_re.add(rf.created, ci, rf.li, 0, base)
            bal = balance.setdefault(cs.currency, [0, 0])
            for bt in cs.bts:
                if bt.created > now:
                    break
                b_bt.add(bt.created, ci, bt.li, 0 if bt.type == "charge" else 1, base)
                bt_amount.append(bt.amount)
                bt_fee.append(bt.fee)
                bt_source.append(bt.source)
                if bt.type == "charge":
                    bt_desc.append(describe(cs.charges[bt.source].description))
                else:
                    bt_desc.append(0)
                bal[0 if bt.available_on <= now else 1] += bt.net
            ev_t, ev_code = cs.ev_t, cs.ev_code
            for li in range(bisect_left(ev_t, window), len(ev_t)):
                t = ev_t[li]
                if t > now:
                    break
                b_ev.add(t, ci, li, ev_code[li], base)
            for disc in cs.discounts:
                if disc.start <= now:
                    redemptions[disc.coupon.id] += 1
            if keep:
                cache[ci] = cs
        cat = gen.catalog
        catalog_events: list[tuple[int, str, object]] = []
        catalog_events += [(p.created, "product.created", p) for p in cat.products]
        catalog_events += [(p.created, "price.created", p) for p in cat.prices]
        catalog_events += [(c.created, "coupon.created", c) for c in cat.coupons]
        catalog_events += [
            (t, "coupon.deleted", cat.coupon_by_id[cid])
            for cid, t in self._deleted_coupons.items()
            if t <= now
        ]
        catalog_events.sort(key=lambda e: e[0])
        for li, (t, type_, _obj) in enumerate(catalog_events):
            if window <= t <= now:
                b_ev.add(t, -1, li, codes[type_], base)
        renderer.coupon_redemptions = dict(redemptions)
        index = {name: builders[name].build(base) for name in INDEXED}
        return State(
            now=now,
            gen=gen,
            renderer=renderer,
            customers=n,
            index=index,
            catalog_events=catalog_events,
            balance={c: (v[0], v[1]) for c, v in balance.items()},
            cache=cache,
            currency_of=currency_of,
            descriptions=sorted(descriptions, key=descriptions.__getitem__),
        )


class ScriptedSandbox(StripeSandbox):
    """A StripeSandbox whose customers follow `customers` (CustomerScript) exactly.

    Served by `create_app(sandbox)` like any sandbox; `advance()` moves its clock through the
    script, and `truth` reports it. Currencies of the scripts are added to `currencies`.
    """

    def __init__(
        self,
        customers: Iterable[CustomerScript],
        *,
        start: datetime = DEFAULT_START,
        now: datetime | None = None,
        seed: int = 0,
        currencies: Sequence[str] = DEFAULT_CURRENCIES,
        account_id: str | None = None,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.scripts = tuple(customers)
        wanted = [c.lower() for c in currencies] + [s.currency for s in self.scripts]
        options: dict[str, Any] = {}
        if account_id is not None:
            options["account_id"] = account_id
        config = StripeSandboxConfig(
            seed=seed,
            customers=max(1, len(self.scripts)),
            start=start,
            now=now or start + timedelta(days=365),
            currencies=tuple(dict.fromkeys(wanted)),
            **options,
        )
        super().__init__(
            config, api_key=api_key, webhook_secret=webhook_secret, cache_size=cache_size
        )

    def _generator(self, now: int) -> Generator:
        return ScriptedGenerator(self.config, self.scripts, horizon=now)


# Catalog events (product/price/coupon.created) are indexed with customer -1; their ids use
# the catalog owner (ids.CATALOG_OWNER).
CATALOG_CI = -1
__all__ = [
    "CATALOG_CI",
    "CATALOG_OWNER",
    "DEFAULT_API_KEY",
    "EVENT_TYPES",
    "ScriptedSandbox",
    "StripeSandbox",
]
