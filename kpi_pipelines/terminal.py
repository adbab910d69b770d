"""What the CLI prints: text that tenants and providers wrote is shown, never obeyed.

Workspace names, connection settings and errors, metric names, dimensions, override
reasons, file names and provider messages reach the terminal through rich. Such text could
carry rich markup (`[link=https://evil.example]` makes a live hyperlink), emoji codes, or
terminal control sequences (`ESC ]0;` retitles the terminal, `ESC ]8;` is a hyperlink,
a bidi override reorders what is shown). `TerminalConsole`, the console the CLI prints
with, never interprets markup or emoji codes in any string (the CLI's own styles are given
with `style=`), and shows every control character (C0 but newline and tab, DEL, C1) and
bidi control as an escape such as `\\x1b` instead of emitting it: in every string it turns
into text (before layout, so tables stay aligned), and again in every segment it writes,
whatever renderable produced it. A command cannot forget it: there is no other way out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

_KEPT = {ord("\n"), ord("\t")}
_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS]
_ESCAPED = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in _CONTROLS
    if code not in _KEPT
}


def visible(text: str) -> str:
    """`text` with every control character and bidi control written as an escape."""
    return text.translate(_ESCAPED)


class TerminalConsole(Console):
    """A rich Console that prints strings as they are (no markup, no emoji codes, no
    highlighting) and never emits a control character that was part of the text."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        options.update(markup=False, emoji=False)
        return super().render_str(visible(text), **options)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control:  # rich's own cursor moves (spinners, live displays)
                yield segment
            else:
                yield Segment(visible(segment.text), segment.style)
