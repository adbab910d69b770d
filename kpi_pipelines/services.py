"""Long-running local services started together and stopped together: what
`kpi-pipelines ui` and `dev` run (a code server, Dagster's webserver and daemon, and for `dev`
the webhook receiver). Each runs in a process group of its
own; when one exits, or on Ctrl-C or SIGTERM, every one is stopped (SIGTERM, then SIGKILL
after a grace period), so nothing outlives the command, and the embedded PostgreSQL stops
with its last user."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType

GRACE_SECONDS = 15.0


class _Stop(Exception):
    """SIGTERM or SIGHUP: stop like Ctrl-C does."""


def run_services(
    services: Mapping[str, Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    ready: Mapping[str, Callable[[], bool]] | None = None,
    on_started: str | None = None,
) -> int:
    """Run every service (with `env` added to this process's environment), in order, until
    one exits or the user stops them; a service named in `ready` must pass its check before
    the next one starts. Returns the exit code of the first that exited (0 when stopped by a
    signal)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, command in services.items():
            started[name] = subprocess.Popen(
                list(command), env={**os.environ, **(env or {})}, start_new_session=True
            )
            check = (ready or {}).get(name)
            while check is not None and not check():
                if (code := _first_exit(started)) is not None:
                    return code
                time.sleep(0.5)
        if on_started:
            print(on_started, flush=True)
        while (code := _first_exit(started)) is None:
            time.sleep(0.5)
        return code
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        _stop_all(started.values())
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _first_exit(started: Mapping[str, subprocess.Popen]) -> int | None:
    for name, process in started.items():
        if process.poll() is not None:
            print(f"{name} exited with code {process.returncode}; stopping the others", flush=True)
            return process.returncode
    return None


def _stop_all(processes: Iterable[subprocess.Popen]) -> None:
    running = [p for p in processes if p.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.killpg(process.pid, sig)
