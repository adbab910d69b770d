"""The simulator held to Meta's own field types: the `facebook-business` SDK's field maps
(`AdsInsights`, `AdsActionStats`, `AdAccount`, `Campaign`, `AdReportRun` `_field_types`).
Every field the simulator serves is in the map of its node type, with the JSON type the
map says; an `actions` list holds `AdsActionStats`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from facebook_business.adobjects.abstractobject import AbstractObject
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.adobjects.adsactionstats import AdsActionStats
from facebook_business.adobjects.adsinsights import AdsInsights
from facebook_business.adobjects.campaign import Campaign

from kpi_pipelines.sandbox.kit import Outcome
from kpi_pipelines.sandbox.meta.app import ACCOUNT_NODE_FIELDS, CAMPAIGN_FIELDS
from kpi_pipelines.sandbox.meta.insights import FIELDS
from kpi_pipelines_tests.sandbox.meta.conftest import ACCOUNT, Graph

SCALARS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "datetime": str,
    "float": (int, float),
    "int": int,
    "unsigned int": int,
    "bool": bool,
}
ITEMS: dict[str, type[AbstractObject]] = {"AdsActionStats": AdsActionStats}


def problems(obj: dict[str, Any], sdk: type[AbstractObject], where: str) -> list[str]:
    """What in `obj` the SDK's field map of `sdk` does not allow."""
    found = []
    for name, value in obj.items():
        kind = sdk._field_types.get(name)
        if kind is None:
            found.append(f"{where}.{name}: not a field of {sdk.__name__}")
        elif kind.startswith("list<"):
            item = ITEMS[kind[5:-1]]
            if not isinstance(value, list) or not value:
                found.append(f"{where}.{name}: {kind} served as {value!r}")
            for n, entry in enumerate(value if isinstance(value, list) else []):
                found += problems(entry, item, f"{where}.{name}[{n}]")
        elif kind in SCALARS:
            if isinstance(value, bool) != (kind == "bool") or not isinstance(value, SCALARS[kind]):
                found.append(f"{where}.{name}: {kind} served as {type(value).__name__}")
        else:  # an enum of the node type (Campaign.Status, ...)
            values = {str(v) for k, v in vars(getattr(sdk, kind)).items() if not k.startswith("_")}
            if value not in values:
                found.append(f"{where}.{name}: {value!r} is not a {sdk.__name__}.{kind}")
    return found


def test_insights_rows_have_the_sdk_field_types(graph: Graph) -> None:
    today = graph.account.local_day()
    span = {"since": (today - timedelta(days=60)).isoformat(), "until": today.isoformat()}
    found, served = [], set()
    for level in ("campaign", "account"):
        rows = graph.get(
            f"act_{ACCOUNT}/insights",
            fields=",".join(FIELDS),
            level=level,
            time_range=json.dumps(span),
            time_increment=1,
            limit=5000,
        ).json()["data"]
        assert len(rows) > 60
        for n, row in enumerate(rows):
            found += problems(row, AdsInsights, f"{level}[{n}]")
            served |= set(row)
    assert found == []
    assert served == set(FIELDS)  # every field was served somewhere (none left untested)


def test_accounts_campaigns_and_report_runs_have_the_sdk_field_types(graph: Graph) -> None:
    node = graph.get(f"act_{ACCOUNT}", fields=",".join(ACCOUNT_NODE_FIELDS)).json()
    assert set(node) == set(ACCOUNT_NODE_FIELDS)
    found = problems(node, AdAccount, "account")
    campaigns = graph.get(
        f"act_{ACCOUNT}/campaigns",
        fields=",".join(CAMPAIGN_FIELDS),
        effective_status='["ACTIVE","PAUSED","ARCHIVED"]',
    ).json()["data"]
    for campaign in campaigns:
        found += problems(campaign, Campaign, f"campaign {campaign['id']}")
    graph.sandbox.jobs.script(Outcome.fail(after=2))
    for _ in range(2):
        run_id = graph.post(f"act_{ACCOUNT}/insights", fields="spend", level="account").json()[
            "report_run_id"
        ]
        for _ in range(4):
            found += problems(graph.get(run_id).json(), AdReportRun, f"report run {run_id}")
    assert found == []
