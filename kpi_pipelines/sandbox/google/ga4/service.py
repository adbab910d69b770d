"""The GA4 service: properties, quota controls, and the runReport route."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines.sandbox.google._common import Fault, GoogleApiErrors, google_error
from kpi_pipelines.sandbox.google.ga4.quota import QUOTA_MESSAGES, QuotaKind, quota_status
from kpi_pipelines.sandbox.google.ga4.request import SERVICE, BadRequest
from kpi_pipelines.sandbox.google.ga4.site import GA4Property
from kpi_pipelines.sandbox.google.oauth import ANALYTICS, ANALYTICS_READONLY, OAuthServer
from kpi_pipelines.sandbox.kit import FaultInjector, SimClock

_PROPERTY_ID_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/property-id"


@dataclass
class GA4Service:
    """All GA4 properties of the sandbox."""

    clock: SimClock
    oauth: OAuthServer
    seed: int = 0
    legacy_conversions: Literal["reject", "alias"] = "reject"
    properties: dict[str, GA4Property] = field(default_factory=dict)
    # property -> dimension value -> what reports show instead (see relabel)
    relabelled: dict[str, dict[str, str]] = field(default_factory=dict)

    def add_property(self, property_id: str, **options: Any) -> GA4Property:
        """Create a synthetic property (options: see GA4Property; seed defaults to the
        sandbox's)."""
        options.setdefault("seed", self.seed)
        prop = GA4Property(property_id, self.clock, **options)
        self.properties[property_id] = prop
        return prop

    def property(self, property_id: str) -> GA4Property:
        return self.properties[property_id]

    def truth_by_date(self, property_id: str, start: date, end: date, **kw: Any) -> dict:
        return self.properties[property_id].truth_by_date(start, end, **kw)

    def truth_by_date_channel(self, property_id: str, start: date, end: date, **kw: Any) -> dict:
        return self.properties[property_id].truth_by_date_channel(start, end, **kw)

    def relabel(self, property_id: str, value: str, shown: str) -> None:
        """Reports of the property show the dimension value `value` as `shown`: what a
        hostile or broken API would send (a huge label, a secret echoed back)."""
        self.relabelled.setdefault(property_id, {})[value] = shown

    # -- quota controls -------------------------------------------------------------------
    def script_quota_error(self, property_id: str, kind: QuotaKind, times: int = 1) -> None:
        """The next `times` runReport calls on the property fail with this quota error."""
        if kind not in QUOTA_MESSAGES:
            raise ValueError(f"unknown quota kind {kind!r}")
        self.properties[property_id].quota.scripted.extend([kind] * times)

    def consume_tokens(self, property_id: str, tokens: int, project: str | None = None) -> None:
        """Use up `tokens` of the current hour's and day's quota (as other clients would)."""
        prop = self.properties[property_id]
        with prop._lock:
            prop.quota.consume(self.clock.now(), project, tokens)

    def exhaust(self, property_id: str, kind: Literal["hourly", "daily"] = "hourly") -> None:
        """Use up the rest of the current hour's (or day's) tokens."""
        prop = self.properties[property_id]
        with prop._lock:
            remaining = prop.quota.remaining(self.clock.now(), "")[kind]
            if remaining > 0:
                prop.quota.consume(self.clock.now(), None, remaining)

    # -- the handler -----------------------------------------------------------------------
    def quota_error(self, kind: QuotaKind) -> Response:
        return google_error(429, QUOTA_MESSAGES[kind])

    async def run_report(self, property_id: str, raw: bytes, project: str) -> Response:
        prop = self.properties.get(property_id)
        if prop is None:
            return google_error(
                403,
                "User does not have sufficient permissions for this property. "
                f"To learn more about Property ID, see {_PROPERTY_ID_URL}.",
            )
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return google_error(400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received. Expected an object.")
        with prop._lock:
            if prop.quota.scripted:
                return self.quota_error(prop.quota.scripted.pop(0))
            if prop.in_flight >= prop.quota.concurrent_requests:
                return self.quota_error("concurrent")
            prop.in_flight += 1
        try:
            if prop.latency:
                await asyncio.sleep(prop.latency)
            with prop._lock:
                now = self.clock.now()
                exhausted = prop.quota.exhausted(now, project)
                if exhausted is not None:
                    return self.quota_error(exhausted)
                try:
                    result = prop.report(body, legacy_conversions=self.legacy_conversions)
                except BadRequest as exc:
                    return google_error(400, exc.message, details=exc.details)
                report, tokens = result.response, result.tokens
                prop.quota.consume(now, project, tokens)
                prop.reports_served += 1
                if result.return_property_quota:
                    remaining = prop.quota.remaining(now, project)
                    quota = prop.quota
                    report["propertyQuota"] = {
                        "tokensPerDay": quota_status(tokens, remaining["daily"]),
                        "tokensPerHour": quota_status(tokens, remaining["hourly"]),
                        "concurrentRequests": quota_status(
                            0, quota.concurrent_requests - (prop.in_flight - 1)
                        ),
                        "serverErrorsPerProjectPerHour": quota_status(
                            0, quota.server_errors_per_project_per_hour
                        ),
                        "potentiallyThresholdedRequestsPerHour": quota_status(
                            0, quota.potentially_thresholded_requests_per_hour
                        ),
                        "tokensPerProjectPerHour": quota_status(
                            tokens, remaining["project_hourly"]
                        ),
                    }
            for row in report.get("rows", ()) if property_id in self.relabelled else ():
                for cell in row.get("dimensionValues", ()):
                    cell["value"] = self.relabelled[property_id].get(cell["value"], cell["value"])
            return JSONResponse(report)
        finally:
            with prop._lock:
                prop.in_flight -= 1


class GA4Errors(GoogleApiErrors):
    def quota(self, fault: Fault) -> Response:
        # A quota fault names its quota by Google's message; the concurrent-requests one
        # (which clears in seconds) unless it says otherwise.
        return google_error(429, fault.message or QUOTA_MESSAGES["concurrent"])


def ga4_routes(service: GA4Service, oauth: OAuthServer, faults: FaultInjector) -> list[Route]:
    errors = GA4Errors()

    async def run_report(request: Request) -> Response:
        async def handle() -> Response:
            auth = oauth.authenticate(
                request.headers.get("authorization"), (ANALYTICS_READONLY, ANALYTICS), SERVICE
            )
            if isinstance(auth, Response):
                return auth
            return await service.run_report(
                request.path_params["property_id"],
                await request.body(),
                oauth.project_number(auth.client_id),
            )

        return await faults.serve("ga4", errors, handle)

    return [Route("/v1beta/properties/{property_id}:runReport", run_report, methods=["POST"])]
