"""What tenants wrote reaches the terminal as text, never as markup or control sequences.

Every command that prints data, as a user runs it (separate processes on a private embedded
server), rendering as for a colour terminal (FORCE_COLOR), after hostile names and values
were stored through the real code paths: `workspace add`, `connection add`, `import` (a
file's name, its cells, the run's failure recorded on the connection), `override set`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kpi_pipelines_tests.processes import release, run_cli, start_holder

LINK = "[link=https://evil.example]x[/link]"
# Markup, a terminal title (OSC 0), a hyperlink (OSC 8), a clear screen (CSI, and its C1
# form), a bidi override, DEL and an emoji code.
HOSTILE = f"{LINK}\x1b]0;T\x07\x1b]8;;https://evil.example\x1b\\y\x1b[2J\x9b2J\u202eb\x7f:smile:"
HOSTILE_KEY = "team\x1b]0;T\x07[bold]k"  # a column name: no host in it (connection settings)
HOSTILE_FILE = "b[link=mailto:e]x\x1b]0;T\x07.csv"  # a file name has no "/"
# rich's own escape sequences: styles (SGR) and hiding the cursor during a status.
RICH_OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]")
EMITTED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printed(env: dict[str, str], *args: str, ok: bool = True) -> str:
    """What a command printed (stdout and stderr), checked for anything emitted raw."""
    done = run_cli(env, *args, check=False)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    output = done.stdout + done.stderr
    emitted = EMITTED.findall(RICH_OWN.sub("", output))
    assert not emitted, f"{args[:2]} emitted {emitted!r}: {output!r}"
    assert "\x1b]" not in output and "\x07" not in output  # no OSC: no title, no hyperlink
    return output


def test_no_command_renders_what_a_tenant_wrote(private_home, tmp_path: Path) -> None:
    env = {**private_home, "FORCE_COLOR": "1", "TTY_INTERACTIVE": "0"}
    holder = start_holder(env)
    try:
        printed(env, "workspace", "add", "evil", "--name", HOSTILE)
        listed = printed(env, "workspace", "list")
        assert LINK in listed and "\\x1b]0;T\\x07" in listed and "\\u202e" in listed

        mapping = {
            "mapping": {
                "date_column": "day",
                "metric": "orders",
                "value_column": "n",
                "dimension_columns": [HOSTILE_KEY],
            }
        }
        printed(
            env, "connection", "add", "evil", "csv_upload", "--settings-json", json.dumps(mapping)
        )
        refused = printed(
            *(env, "connection", "add", "evil", "csv_upload"),
            *("--settings-json", json.dumps({**mapping, HOSTILE_KEY: 1})),
            ok=False,
        )
        assert "\\x1b]0;T\\x07" in refused

        good = tmp_path / "orders.csv"
        good.write_text(f"day,n,{HOSTILE_KEY}\n2026-01-05,3,{HOSTILE}\n", encoding="utf-8")
        printed(env, "import", "evil", "csv_upload", str(good))
        for shown in (
            printed(env, "kpi", "show", "evil"),
            printed(env, "kpi", "show", "evil", "--metric", "orders", "--days", "100000"),
        ):
            assert LINK in shown and "team\\x1b]0;T\\x07[bold]k=" in shown

        bad = tmp_path / HOSTILE_FILE
        bad.write_text(f"day,n,{HOSTILE_KEY}\n2026-01-06,{HOSTILE},a\n", encoding="utf-8")
        failed = printed(env, "import", "evil", "csv_upload", str(bad), ok=False)
        assert "b[link=mailto:e]x\\x1b]0;T\\x07.csv was rejected" in failed
        connections = printed(env, "connection", "list", "evil")  # its last error
        assert "b[link=mailto:e]x\\x1b]0;T\\x07.csv" in connections

        printed(
            *(env, "override", "set", "evil", "csv_upload", "orders", "2026-01-05", "4"),
            *("--dimension", f"{HOSTILE_KEY}={HOSTILE}", "--reason", HOSTILE, "--user", HOSTILE),
        )
        overrides = printed(env, "override", "list", "evil")
        assert overrides.count("[link=https://evi") == 2  # who set it, why (cut to the column)

        rates = tmp_path / HOSTILE_FILE.replace(".csv", "-rates.csv")
        rates.write_text(f"day,base,quote,rate\n2026-01-01,EUR,USD,{HOSTILE}\n", encoding="utf-8")
        printed(env, "fx", "import", str(rates), ok=False)
    finally:
        release(holder)
