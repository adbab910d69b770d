"""The sandbox's layout rule: no file over 600 lines (import circles are ruled out for the
whole package by kpi_pipelines_tests/test_layers.py)."""

from __future__ import annotations

from pathlib import Path

import kpi_pipelines.sandbox

ROOT = Path(kpi_pipelines.sandbox.__file__).parent
MAX_LINES = 600


def test_no_file_in_the_sandbox_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in ROOT.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
