"""Long-running local services started together and stopped together: what
`kpi-pipelines ui` and `dev` run (a code server, Dagster's webserver and daemon, and for `dev`
the webhook receiver). Each runs in a process group of its own; when one exits, or on
Ctrl-C, SIGTERM or SIGHUP, every one is stopped (SIGTERM, then SIGKILL after a grace
period), so nothing outlives the command, and the embedded PostgreSQL stops with its last
user.

What the services print (sensor ticks, every event of every run, access logs) goes to a log
file (`ServiceLog`), colour codes removed; the terminal gets only their warnings and errors,
beside what the command itself says (services up, runs started and finished).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import FrameType
from typing import IO

from kpi_pipelines.terminal import visible

GRACE_SECONDS = 15.0


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: stop as Ctrl-C does. Not an Exception (like
    KeyboardInterrupt), so no `except Exception` swallows it."""


def stop_on_signals() -> None:
    """From now on SIGTERM (a process manager, `kill`) and SIGHUP (the terminal closed)
    raise Stopped, so cleanup runs (finally blocks, atexit: the embedded PostgreSQL stops
    with its last user) where their default action would end the process before it. A
    SIGHUP ignored on purpose (nohup) stays ignored."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_stopped)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


# A function that shows a person one line: (text, level), level a `logging` level.
Say = Callable[[str, int], None]

# Colour and cursor sequences (CSI): Dagster colours its log lines even into a pipe.
_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# `2026-12-06 17:03:10 +0000 - dagster.daemon - WARNING - message` (Dagster's format)
_DAGSTER_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)? [+-]\d{4} - (?P<logger>\S+)"
    r" - (?P<level>[A-Z]+) - (?P<message>.*)$"
)
# `WARNING:  message` (uvicorn's format) and `WARNING:name:message` (Python's default)
_LEVEL_FIRST = re.compile(r"^(?P<level>WARNING|ERROR|CRITICAL):\s*(?P<message>.*)$")
# A run's own events (`job - run id - pid - [step -] STEP_FAILURE - ...`): the command
# reports each run's start and outcome itself.
_RUN_EVENT = re.compile(r"^\S+ - [0-9a-f-]{36} - \d+ - (?:\S+ - )?[A-Z][A-Z_]+ - ")
_LEVELS = {"WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
# Longest line read at once (a longer one is read in pieces): what a service prints never
# makes us hold more.
MAX_LINE_BYTES = 64 * 1024
# A warning a service repeats (a sensor's, every tick) is shown again after this long only.
REPEAT_SECONDS = 600.0


def plain(line: str) -> str:
    """`line` without its colour and cursor sequences."""
    return _CSI.sub("", line)


def notable(line: str) -> tuple[str, int] | None:
    """A service's output line a person should see, as (text, level): a warning or an
    error; None for the rest (informational lines, debug events, sensor ticks, tracebacks'
    lines, which the log file keeps)."""
    found = _DAGSTER_LINE.match(line)
    if found and found["level"] in _LEVELS:
        if _RUN_EVENT.match(found["message"]):
            return None
        return f"{found['logger']}: {found['message']}", _LEVELS[found["level"]]
    found = _LEVEL_FIRST.match(line)
    if found:
        return found["message"], _LEVELS[found["level"]]
    return None


class ServiceLog:
    """Every line the services print goes to `path` (colour codes removed and other control
    characters escaped, each with the time and the service's name; a new file each time,
    rotated past `max_bytes`, the last `backups` ones kept as `.1`, `.2`, ...), and the
    notable ones (warnings, errors) to `say`, prefixed with the service's name, a repeated
    one once per REPEAT_SECONDS. `handler()` takes this process's own log records the same
    way."""

    def __init__(
        self, path: Path, say: Say, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # what services print may name tenants
        self.path = path
        self.say = say
        self._file = RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        if path.stat().st_size:
            self._file.doRollover()
        self._file.setFormatter(logging.Formatter("%(asctime)s %(name)s | %(message)s"))
        self._readers: list[threading.Thread] = []
        self._shown: dict[str, float] = {}  # notable line: when it was last shown
        self._lock = threading.Lock()

    def write(self, source: str, text: str, level: int = logging.INFO) -> None:
        for line in text.splitlines() or [""]:
            self._file.handle(logging.LogRecord(source, level, "", 0, line, None, None))

    def follow(self, name: str, stream: IO[bytes]) -> None:
        """Read a service's output (a pipe) until it closes, in a thread."""
        reader = threading.Thread(
            target=self._read, args=(name, stream), name=f"output of {name}", daemon=True
        )
        reader.start()
        self._readers.append(reader)

    def _read(self, name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
                line = visible(plain(raw.decode("utf-8", "replace").rstrip("\r\n")))
                self.write(name, line)
                shown = notable(line)
                if shown is not None and self._first_in_a_while(f"{name}: {shown[0]}"):
                    self.say(f"{name}: {shown[0]}", shown[1])

    def _first_in_a_while(self, text: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._shown.get(text, -REPEAT_SECONDS) < REPEAT_SECONDS:
                return False
            if len(self._shown) > 1000:  # forget what has not been said for a while
                self._shown = {t: at for t, at in self._shown.items() if now - at < REPEAT_SECONDS}
            self._shown[text] = now
            return True

    def handler(self) -> logging.Handler:
        """A logging handler for this process's own records: all to the file, warnings
        and errors also to `say`."""
        log = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = record.getMessage()
                log.write(record.name, text, record.levelno)
                if record.levelno >= logging.WARNING:
                    log.say(text, record.levelno)

        return _Handler()

    def close(self, timeout: float = 5.0) -> None:
        for reader in self._readers:
            reader.join(timeout)
        self._file.close()


def run_services(
    services: Mapping[str, Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    ready: Mapping[str, Callable[[], bool]] | None = None,
    on_started: str | None = None,
    output: ServiceLog | None = None,
) -> int:
    """Run every service (with `env` added to this process's environment), in order, until
    one exits or the user stops them; a service named in `ready` must pass its check before
    the next one starts. With `output`, what the services print goes there (else to this
    process's terminal). Returns the exit code of the first that exited (0 when stopped by
    a signal)."""

    def say(text: str, level: int = logging.INFO) -> None:
        if output is None:
            print(text, flush=True)
        else:
            output.write("services", text, level)
            output.say(text, level)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    stop_on_signals()
    started: dict[str, subprocess.Popen] = {}
    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if output else {}
    try:
        for name, command in services.items():
            started[name] = subprocess.Popen(
                list(command),
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **piped,  # type: ignore[call-overload]
            )
            if output is not None:
                output.follow(name, started[name].stdout)  # type: ignore[arg-type]
            check = (ready or {}).get(name)
            while check is not None and not check():
                if (code := _first_exit(started, say, output)) is not None:
                    return code
                time.sleep(0.5)
        if on_started:
            say(on_started)
        while (code := _first_exit(started, say, output)) is None:
            time.sleep(0.5)
        return code
    except (KeyboardInterrupt, Stopped):
        say("stopping every service")
        return 0
    finally:
        _stop_all(started.values())
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _first_exit(
    started: Mapping[str, subprocess.Popen], say: Say, output: ServiceLog | None
) -> int | None:
    for name, process in started.items():
        if process.poll() is not None:
            where = f" (its output: {output.path})" if output else ""
            say(
                f"{name} exited with code {process.returncode}{where}; stopping the others",
                logging.ERROR,
            )
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
