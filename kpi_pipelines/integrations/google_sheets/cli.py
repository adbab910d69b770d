"""`kpi-pipelines sheets import WORKSPACE`: a Typer sub-app for cli.py to mount as `sheets`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

sheets_app = typer.Typer(help="Google Sheets imports.", no_args_is_help=True)


@sheets_app.command("import")
def sheets_import(
    workspace_id: str,
    connection: Annotated[str | None, typer.Option(help="Connection name, if several.")] = None,
    range_: Annotated[
        str | None,
        typer.Option("--range", help="Another A1 range than the connection's, e.g. \"'Q3'!A1:D\"."),
    ] = None,
) -> None:
    """Import a workspace's Google Sheet, all-or-nothing, as a Dagster run."""
    from kpi_pipelines.cli import _run_provider  # cli.py mounts this app: import at call time

    config: dict[str, Any] = {}
    if connection:
        config["connection"] = connection
    if range_:
        config["range"] = range_
    if not _run_provider("google_sheets", workspace_id, config):
        raise typer.Exit(code=1)
