"""The sandbox kit: what every provider simulator is built from.

- `SimClock` (clock.py): one simulated clock, fixed or running with real time;
- `FaultInjector`, `Fault` (faults.py): scripted faults by request count, per API;
- `ErrorStyle` (errors.py): a provider's error bodies, declared once, used by the injector;
- paging.py: keyset and offset list paging, page sizes;
- `LoopbackServer` (server.py): serves a simulator on 127.0.0.1.
A simulator lives in its own folder beside this one and keeps its own record of the truth,
computed from its own state.
"""

from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.errors import ErrorStyle, json_response
from kpi_pipelines.sandbox.kit.faults import Fault, FaultInjector, FaultKind, answer
from kpi_pipelines.sandbox.kit.paging import PageSize, key_range, newest_first, offset_page
from kpi_pipelines.sandbox.kit.server import LoopbackServer

__all__ = [
    "ErrorStyle",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "LoopbackServer",
    "PageSize",
    "SimClock",
    "answer",
    "json_response",
    "key_range",
    "newest_first",
    "offset_page",
]
