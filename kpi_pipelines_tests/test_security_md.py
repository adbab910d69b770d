"""SECURITY.md names the test behind each promise: every test and file it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "kpi_pipelines_tests"


def _test_file(reference: str) -> Path | None:
    """A reference like `test_x.py` or `webhooks/test_x.py`, found under the test tree."""
    if (TESTS / reference).exists():
        return TESTS / reference
    matches = [p for p in TESTS.rglob(Path(reference).name) if p.as_posix().endswith(reference)]
    return matches[0] if len(matches) == 1 else None


def test_every_test_security_md_names_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    file_of_last_reference: Path | None = None
    named = 0
    for reference in re.findall(r"`([^`]+)`", text):
        path_part, _, test_name = reference.partition("::")
        if path_part.endswith(".py"):
            if path_part.startswith(("benchmarks/", "kpi_pipelines_tests/")):
                assert (ROOT / path_part).exists(), f"SECURITY.md names {reference}"
                file_of_last_reference = ROOT / path_part
            elif "*" not in path_part:
                file_of_last_reference = _test_file(path_part)
                assert file_of_last_reference, f"SECURITY.md names {path_part}: no such test file"
        elif not reference.startswith("::"):
            continue
        if test_name:
            # `::name` continues the file named just before it.
            source = file_of_last_reference.read_text(encoding="utf-8")  # type: ignore[union-attr]
            test_name = test_name.split("[")[0]
            assert re.search(rf"def {re.escape(test_name)}\b", source), (
                f"SECURITY.md names {test_name}, which {file_of_last_reference} does not define"
            )
            named += 1
    assert named >= 20  # the page really names its tests
