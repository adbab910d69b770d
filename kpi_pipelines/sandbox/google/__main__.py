"""Serve the Google sandbox in its own process.

    python -m kpi_pipelines.sandbox.google serve --port 8790 [--seed 0] [--realtime]

Prints one line, `listening on http://127.0.0.1:<port>`, then the demo credentials, and serves
until SIGINT or SIGTERM. Port 0 picks a free port (the printed line says which).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

import uvicorn

from kpi_pipelines.sandbox.google._common import DEFAULT_START
from kpi_pipelines.sandbox.google.app import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    DEMO_REFRESH_TOKEN,
    DEMO_SPREADSHEET_ID,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import listening_socket, serve_command


def _parser() -> argparse.ArgumentParser:
    parser, serve = serve_command(
        "python -m kpi_pipelines.sandbox.google",
        "serve the token endpoint, GA4 and Sheets",
        port=8790,
    )
    serve.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=DEFAULT_START,
        help="the simulated clock's start, ISO 8601 with an offset",
    )
    serve.add_argument(
        "--realtime", action="store_true", help="let the simulated clock run with real time"
    )
    serve.add_argument("--token-lifetime", type=int, default=3599, help="seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sandbox = GoogleSandbox.demo(
        seed=args.seed,
        start=args.start,
        realtime=args.realtime,
        token_lifetime=args.token_lifetime,
    )
    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    print(
        f"client_id={DEMO_CLIENT_ID} client_secret={DEMO_CLIENT_SECRET} "
        f"refresh_token={DEMO_REFRESH_TOKEN} property={DEMO_PROPERTY_ID} "
        f"spreadsheet={DEMO_SPREADSHEET_ID}",
        flush=True,
    )
    config = uvicorn.Config(
        create_google_app(sandbox), log_level="warning", access_log=False, log_config=None
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
