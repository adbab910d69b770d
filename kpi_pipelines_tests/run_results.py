"""Reading what a Dagster run reported: its failure message and its materialization metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The message a person sees in the UI for the run's failed step."""
    [event] = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else "") or (
        data.error.message if data.error else ""
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's one materialization, as plain values."""
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}
