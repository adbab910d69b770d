"""Simulated ad accounts: what the Meta, LinkedIn and X Ads simulators are built on.

A platform simulator subclasses `AdSandbox` (sandbox.py: its clock, its accounts with the
platform's restatement window, campaign id shape and conversion kinds, its fault script and
tokens), adds its own pieces from the kit (`ReportJobs`, `CallBudget`, an `ErrorStyle`) and
renders what an account reports in its own wire format; tests compare the pipeline's
kpi_data with the account's truth, never with a rendered response.

    class MetaSandbox(AdSandbox):
        restatement = Restatement(conversion_days=28, billing_days=1)
        campaign_id_shape = staticmethod(lambda key: stable_digits(f"meta:{key}", 18))

    sandbox = MetaSandbox(seed=7)
    account = sandbox.add_account("1234567890", time_zone="Asia/Tokyo", currency="JPY",
                                  campaigns=20)

    account.campaigns(as_of=t)           # [CampaignState(id, name, status, start, end, ...)]
    account.daily(since, until, campaign_ids=ids, as_of=t)
        # {(campaign_id, day): Figures}: only rows with delivery (no delivery: no row)
    account.account_daily(since, until)  # {day: Figures} the account's total (level=account)
    account.figures(cid, start, end)     # whole hours in [start, end) (X's windows)
    f = account.day_figures(cid, day)    # one row or None
    f.spend.text() / str(f.spend.major) / f.spend.micros   # Meta / LinkedIn / X money
    f.impressions, f.clicks
    f.conversions                        # {(kind, channel): (count, value in minor units)}
    f.by_kind()                          # {"purchase": (count, Money)}: every channel
    f.by_kind(["web"])                   # the web pixel's view only
    f.count(WEB_CONVERSIONS), f.value(WEB_CONVERSIONS)     # LinkedIn's conversions

Days are the account's own (its IANA `time_zone`): `account.local_day(instant)`,
`account.day_bounds(day)`. Figures restate: an hour's delivery shows `delay` after it ends,
billing credits take back spend and clicks within `billing_days`, and conversions keep
arriving for `conversion_days` (`account.settled_at(day)`: when a day stops changing;
`account.restated(since, until, earlier, later)`: which rows a clock move changed).

The truth (kpi-definitions.md's ad metrics, in the account's currency):
`account.truth_by_campaign_day(...)`, `account.truth_by_day(...)`, `account.truth(...)`
give `AdMetrics` (`ad_spend`, `impressions`, `clicks`, `conversions`, `conversion_value`,
and `ctr`, `cpc`, `cpm`, `roas` from the summed parts, None on a zero denominator;
`.kpis()` as kpi_data's metric keys), under a `ConversionRule` (PURCHASES for Meta,
WEB_CONVERSIONS for LinkedIn, WEB_PURCHASES for X).

Tests script what they need: `add_campaign`, `set_status`, `rename`, and `script_day`
(a day's exact figures with `ScriptedConversions` arriving when said).
"""

from kpi_pipelines.sandbox.kit.ads.account import AdAccount, AdAccounts
from kpi_pipelines.sandbox.kit.ads.figures import AdMetrics, Figures
from kpi_pipelines.sandbox.kit.ads.model import (
    CHANNELS,
    DEFAULT_KINDS,
    PURCHASES,
    STATUSES,
    WEB_CONVERSIONS,
    WEB_PURCHASES,
    CampaignState,
    ConversionKind,
    ConversionRule,
    Restatement,
    ScriptedConversions,
    Status,
)
from kpi_pipelines.sandbox.kit.ads.sandbox import DEFAULT_START, AdSandbox

__all__ = [
    "CHANNELS",
    "DEFAULT_KINDS",
    "DEFAULT_START",
    "PURCHASES",
    "STATUSES",
    "WEB_CONVERSIONS",
    "WEB_PURCHASES",
    "AdAccount",
    "AdAccounts",
    "AdMetrics",
    "AdSandbox",
    "CampaignState",
    "ConversionKind",
    "ConversionRule",
    "Figures",
    "Restatement",
    "ScriptedConversions",
    "Status",
]
