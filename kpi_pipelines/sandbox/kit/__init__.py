"""The sandbox kit: what every provider simulator is built from.

- `SimClock` (clock.py): one simulated clock, fixed or running with real time;
- `FaultInjector`, `Fault` (faults.py): scripted faults by request count, per API;
- `ErrorStyle` (errors.py): a provider's error bodies, declared once, used by the injector;
- paging.py: keyset and offset list paging, page sizes;
- `LoopbackServer` (server.py): serves a simulator on 127.0.0.1;
- `Money` (money.py): exact amounts in minor units, rendered as each API wants;
- `stable_digits`, `stable_base36` (ids.py): ids in a platform's shape from a stable text;
- `ReportJobs`, `Outcome` (jobs.py): async report jobs with scripted outcomes;
- `CallBudget`, `Usage` (usage.py): rate limits and usage a platform renders its way;
- `TokenBook`, `Token` (tokens.py): issued credentials that expire or are revoked on the clock;
- `ConsentDesk`, `AuthorizationRequest` (consent.py): the consent page's request and redirect
  back (state echoed), one-time authorization codes, PKCE checks, loopback redirects;
- `DemoSlot`, `LoopbackDemo` (demo.py): the demo simulator contract's common part;
- ads/ (`AdSandbox`, `AdAccount`, `ReportJobs`' ad use, ...): simulated ad accounts and
  their truth (import from `kpi_pipelines.sandbox.kit.ads`).
A simulator lives in its own folder beside this one and keeps its own record of the truth,
computed from its own state.
"""

from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.consent import (
    AuthorizationRequest,
    ConsentDesk,
    IssuedCode,
    redirect_allowed,
)
from kpi_pipelines.sandbox.kit.errors import ErrorStyle, json_response
from kpi_pipelines.sandbox.kit.faults import Fault, FaultInjector, FaultKind, answer
from kpi_pipelines.sandbox.kit.ids import stable_base36, stable_digits
from kpi_pipelines.sandbox.kit.jobs import Job, JobPhase, Outcome, ReportJobs, TooManyJobs
from kpi_pipelines.sandbox.kit.money import Money, minor_unit_exponent
from kpi_pipelines.sandbox.kit.paging import PageSize, key_range, newest_first, offset_page
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.kit.tokens import Token, TokenBook
from kpi_pipelines.sandbox.kit.usage import CallBudget, Usage

__all__ = [
    "AuthorizationRequest",
    "CallBudget",
    "ConsentDesk",
    "ErrorStyle",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "IssuedCode",
    "Job",
    "JobPhase",
    "LoopbackServer",
    "Money",
    "Outcome",
    "PageSize",
    "ReportJobs",
    "SimClock",
    "Token",
    "TokenBook",
    "TooManyJobs",
    "Usage",
    "answer",
    "json_response",
    "key_range",
    "minor_unit_exponent",
    "newest_first",
    "offset_page",
    "redirect_allowed",
    "stable_base36",
    "stable_digits",
]
