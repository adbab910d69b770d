"""An objectives (OKR) board in a simulated Notion workspace, that lives on the clock, and
its record of the truth.

The board is two databases, as teams keep OKRs in Notion: **Objectives** (one page per
objective: title, status with Notion's status groups, progress as a percent number, the
key result's current value and target, owner, due date, quarter, tags, a period with an
end, a summary, a checkbox, a relation to its notes, formulas of each result type and
rollups of each kind over the notes) and **Notes** (meeting notes and updates, related to
objectives). Each objective's page and each note page has a body of blocks: headings,
paragraphs, bulleted and numbered lists, to-dos, toggles with children.

With `evolve=True` the board changes as simulated days pass (`catch_up`, run before every
request): key results move and statuses follow them, objectives are trashed and restored
two days later, notes and pages are edited, new objectives appear. Every change is
scripted per day from the seed, at its own minute of the working day, so the board at any
instant is a pure function of the seed and the clock.

The truth (`truth()`, and `daily[day]`: the board at the end of each day it lived through)
is computed from the board's own values, never from what the API renders:
objectives_total (live objectives), objectives_completed (status in the Complete group),
objective_progress (mean progress, 0..1: the Progress value, else current / target, else 1
when done and 0 otherwise) and each objective's fields.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from kpi_pipelines.sandbox.notion.model import (
    Database,
    DataSource,
    Formula,
    NotionWorkspace,
    Option,
    Page,
    Property,
    Rollup,
    User,
)

STATUSES = {
    "Not started": "To-do",
    "In progress": "In progress",
    "At risk": "In progress",
    "Done": "Complete",
}
DONE = frozenset(name for name, group in STATUSES.items() if group == "Complete")
QUARTERS = ("2025-Q2", "2025-Q3", "2025-Q4")
TAGS = ("growth", "product", "revenue", "hiring", "platform")
PEOPLE = (
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Katherine Johnson", "katherine@example.com"),
)
THEMES = (
    ("Grow weekly active teams", 400.0),
    ("Cut onboarding time", 10.0),
    ("Ship the public API", 12.0),
    ("Raise net revenue retention", 110.0),
    ("Hire the platform team", 5.0),
    ("Reduce support backlog", 200.0),
    ("Launch in Germany", 50.0),
    ("Improve trial conversion", 25.0),
    ("Harden the billing pipeline", 8.0),
    ("Publish the security whitepaper", 1.0),
)
# When scripted changes happen: during the working day (UTC), so a day's end is its truth.
WORKDAY_START = time(9, 0)


@dataclass(frozen=True)
class ObjectiveTruth:
    id: str
    title: str
    status: str | None
    done: bool
    progress: float
    value: float | None
    target: float | None
    owner: str | None
    due: date | None


@dataclass(frozen=True)
class BoardTruth:
    objectives_total: int
    objectives_completed: int
    objective_progress: float | None  # None: no live objective
    objectives: dict[str, ObjectiveTruth]


def objective_properties(notes: DataSource) -> list[Property]:
    """The Objectives schema: every property type a real OKR database uses."""

    def number(values: Any, name: str) -> float | None:
        value = values.get(name)
        return float(value) if isinstance(value, int | float) else None

    def attainment(values: Any) -> float | None:
        current, target = number(values, "Current"), number(values, "Target")
        return round(current / target, 4) if current is not None and target else None

    def health(values: Any) -> str:
        return "on track" if values.get("Status") in ("In progress", "Done") else "needs attention"

    def review(values: Any) -> tuple[date, None] | None:
        due = values.get("Due")
        return (due[0] - timedelta(days=7), None) if due else None

    return [
        Property("Objective", "title"),
        Property(
            "Status",
            "status",
            options=tuple(
                Option(name, color)
                for name, color in zip(STATUSES, ("gray", "blue", "orange", "green"), strict=True)
            ),
            groups={
                group: tuple(n for n, g in STATUSES.items() if g == group)
                for group in ("To-do", "In progress", "Complete")
            },
        ),
        Property("Progress", "number", number_format="percent"),
        Property("Current", "number"),
        Property("Target", "number"),
        Property("Owner", "people"),
        Property("Due", "date"),
        Property("Period", "date"),
        Property("Quarter", "select", options=tuple(Option(q, "purple") for q in QUARTERS)),
        Property("Tags", "multi_select", options=tuple(Option(t, "yellow") for t in TAGS)),
        Property("Summary", "rich_text"),
        Property("Committed", "checkbox"),
        Property("Notes", "relation", relation=notes.id),
        Property(
            "Attainment",
            "formula",
            formula=Formula('prop("Current") / prop("Target")', "number", attainment),
        ),
        Property(
            "Health",
            "formula",
            formula=Formula(
                'if(prop("Status") == "At risk", "needs attention", "on track")', "string", health
            ),
        ),
        Property(
            "Stretch",
            "formula",
            formula=Formula(
                'prop("Target") > 100', "boolean", lambda v: (number(v, "Target") or 0) > 100
            ),
        ),
        Property(
            "Next review",
            "formula",
            formula=Formula('dateSubtract(prop("Due"), 7, "days")', "date", review),
        ),
        Property("Note count", "rollup", rollup=Rollup("Notes", "Name", "count")),
        Property("Last note", "rollup", rollup=Rollup("Notes", "Date", "latest_date")),
        Property("Note titles", "rollup", rollup=Rollup("Notes", "Name", "show_original")),
        Property("Effort", "rollup", rollup=Rollup("Notes", "Hours", "sum")),
    ]


NOTE_PROPERTIES = [
    Property("Name", "title"),
    Property("Date", "date"),
    Property("Hours", "number"),
]


def note_body(theme: str, index: int) -> list[tuple[Any, ...]]:
    return [
        ("heading_2", f"Update {index + 1}: {theme}"),
        ("paragraph", ["We reviewed ", f"{theme.lower()}", " with the team."]),
        ("bulleted_list_item", "Wins this week", [("bulleted_list_item", "A nested detail")]),
        ("numbered_list_item", "First next step"),
        ("numbered_list_item", "Second next step"),
        ("to_do", "Send the summary", True),
        ("to_do", "Book the review", False),
        (
            "toggle",
            "Details",
            [("paragraph", "Hidden until opened"), ("to_do", "A task inside the toggle", False)],
        ),
    ]


@dataclass
class ObjectivesBoard:
    workspace: NotionWorkspace
    objectives_db: Database
    objectives: DataSource
    notes_db: Database
    notes: DataSource
    people: list[User]
    seed: int = 0
    evolve: bool = True
    daily: dict[date, BoardTruth] = field(default_factory=dict)
    _applied: datetime | None = None  # the instant the scripted changes are applied up to
    _restores: dict[str, datetime] = field(default_factory=dict)
    # Each day's script, made once from the board as that day began (so what the board
    # becomes does not depend on when anyone looked at it).
    _scripts: dict[date, list[tuple[datetime, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls,
        workspace: NotionWorkspace,
        *,
        seed: int = 0,
        objectives: int = 8,
        notes_per_objective: int = 2,
        evolve: bool = True,
        created: datetime | None = None,
    ) -> ObjectivesBoard:
        """A board of `objectives` objectives (themes in turn) created over the 30 days
        before `created` (default: now), each with notes."""
        now = created or workspace.clock.now()
        rng = random.Random(f"okrs:{seed}")
        people = [workspace.add_user(name, email) for name, email in PEOPLE]
        author = people[0].id
        start = now - timedelta(days=30)
        notes_db, notes = workspace.add_database("Notes", NOTE_PROPERTIES, by=author, created=start)
        objectives_db, source = workspace.add_database(
            "Objectives", objective_properties(notes), by=author, created=start
        )
        board = cls(workspace, objectives_db, source, notes_db, notes, people, seed, evolve)
        for index in range(objectives):
            born = start + timedelta(
                days=30 * index / max(objectives, 1), minutes=rng.randint(0, 600)
            )
            board.add_objective(index, rng, born, notes_per_objective)
        board._applied = now  # the board lives from here
        return board

    # -- building ----------------------------------------------------------------------------
    def add_objective(
        self, index: int, rng: random.Random, born: datetime, notes_per_objective: int = 2
    ) -> Page:
        theme, target = THEMES[index % len(THEMES)]
        title = theme if index < len(THEMES) else f"{theme} ({index // len(THEMES) + 1})"
        owner = self.people[index % len(self.people)]
        current = round(target * rng.uniform(0, 0.6), 2) if index % 4 else 0.0
        status = "Not started" if current == 0 else ("At risk" if index % 5 == 2 else "In progress")
        due = (born + timedelta(days=rng.randint(30, 90))).date()
        values: dict[str, Any] = {
            "Objective": [title]
            if index % 3
            else [title.split(" ", 1)[0] + " ", title.split(" ", 1)[1]],
            "Status": status,
            "Progress": round(current / target, 4),
            "Current": current,
            "Target": target,
            "Owner": [owner.id] if index % 7 != 6 else [],
            "Due": (due, None) if index % 6 != 5 else None,
            "Period": (born.date(), due),
            "Quarter": QUARTERS[index % len(QUARTERS)],
            "Tags": [TAGS[index % len(TAGS)], TAGS[(index + 2) % len(TAGS)]],
            "Summary": [f"Key result: {title.lower()} to {target:g}."],
            "Committed": index % 2 == 0,
            "Notes": [],
        }
        page = self.workspace.add_page(
            self.objectives,
            values,
            by=owner.id,
            created=born,
            blocks=[
                ("heading_1", title),
                ("paragraph", f"Why it matters: {title.lower()}."),
                ("toggle", "Key results", [("bulleted_list_item", f"Reach {target:g}")]),
            ],
        )
        for n in range(notes_per_objective):
            note = self.workspace.add_page(
                self.notes,
                {
                    "Name": [f"{title}: update {n + 1}"],
                    "Date": ((born + timedelta(days=n + 1)).date(), None),
                    "Hours": float(1 + (index + n) % 4),
                },
                by=owner.id,
                created=born + timedelta(days=n),
                blocks=note_body(title, n),
            )
            page.values["Notes"].append(note.id)
        return page

    # -- the clock ---------------------------------------------------------------------------
    def catch_up(self) -> None:
        """Apply the scripted changes due by now (each at its own minute), recording each
        finished day's truth."""
        if not self.evolve:
            return
        now = self.workspace.clock.now()
        with self._lock:
            applied = self._applied or now
            if now <= applied:
                return
            day = applied.date()
            while True:
                if day not in self._scripts:
                    self._scripts[day] = self._day_script(day)
                for when, change in self._scripts[day]:
                    if applied < when <= now:
                        with self.workspace.lock:
                            change(when)
                end = datetime.combine(day + timedelta(days=1), time.min, UTC)
                if end > now:
                    break
                if end > applied:
                    self.daily[day] = self.truth()
                self._scripts.pop(day, None)
                day += timedelta(days=1)
            self._applied = now

    def _day_script(self, day: date) -> list[tuple[datetime, Any]]:
        """The day's changes, in time order (a pure function of the seed and the day)."""
        rng = random.Random(f"okrs:{self.seed}:{day.isoformat()}")
        moment = datetime.combine(day, WORKDAY_START, UTC)
        script: list[tuple[datetime, Any]] = []

        def at(minutes: int, change: Any) -> None:
            nonlocal moment
            moment = moment + timedelta(minutes=minutes)
            script.append((moment, change))

        for page_id, restore_at in sorted(self._restores.items()):
            if restore_at.date() == day:
                at(1, lambda when, page_id=page_id: self._restore(page_id, when))
        for page in sorted(self._all_objectives(), key=lambda p: p.created_time):
            if page.in_trash or page.created_time.date() >= day:
                continue
            draw = rng.random()
            if draw < 0.45:
                step = rng.uniform(0.05, 0.25)
                at(
                    rng.randint(3, 20),
                    lambda when, page=page, step=step: self._progress(page, step, when),
                )
            elif draw < 0.49:
                at(rng.randint(3, 20), lambda when, page=page: self._trash(page, when))
            elif draw < 0.64:
                words = rng.choice(("Blocked on legal", "Great week", "Scope cut", "Customer call"))
                at(
                    rng.randint(3, 20),
                    lambda when, page=page, words=words: self._note(page, words, when),
                )
        if rng.random() < 0.3:
            index = len(self._all_objectives())
            at(
                rng.randint(3, 20),
                lambda when, index=index: self.add_objective(
                    index, random.Random(f"okrs:{self.seed}:new:{index}"), when, 1
                ),
            )
        return script

    def _all_objectives(self) -> list[Page]:
        return [p for p in self.workspace.pages.values() if p.data_source_id == self.objectives.id]

    def _progress(self, page: Page, step: float, when: datetime) -> None:
        target = page.values.get("Target") or 1.0
        current = min(target, round((page.values.get("Current") or 0.0) + target * step, 2))
        status = page.values.get("Status")
        if current >= target:
            status = "Done"
        elif status == "Not started":
            status = "In progress"
        self.workspace.update(
            page, at=when, Current=current, Status=status, Progress=round(current / target, 4)
        )

    def _trash(self, page: Page, when: datetime) -> None:
        self.workspace.trash(page, at=when)
        self._restores[page.id] = when + timedelta(days=2)

    def _restore(self, page_id: str, when: datetime) -> None:
        self.workspace.restore(self.workspace.pages[page_id], at=when)
        del self._restores[page_id]

    def _note(self, page: Page, words: str, when: datetime) -> None:
        notes = self.workspace.related(page, "Notes")
        if notes and len(words) % 2:
            note = notes[-1]
            paragraph = next(b for b in note.blocks if b.type == "paragraph")
            self.workspace.edit_block(
                paragraph, [f"{words}: ", f"update of {when:%b %d}."], at=when
            )
        else:
            self.workspace.append_blocks(page, [("paragraph", f"{when:%b %d}: {words}.")], at=when)

    # -- the truth ---------------------------------------------------------------------------
    def truth(self) -> BoardTruth:
        """The board now, from its own values."""
        with self.workspace.lock:
            live = [p for p in self._all_objectives() if not p.in_trash]
            objectives = {p.id: self._objective_truth(p) for p in live}
        progress = [o.progress for o in objectives.values()]
        return BoardTruth(
            objectives_total=len(objectives),
            objectives_completed=sum(o.done for o in objectives.values()),
            objective_progress=sum(progress) / len(progress) if progress else None,
            objectives=objectives,
        )

    def _objective_truth(self, page: Page) -> ObjectiveTruth:
        values = page.values
        status = values.get("Status")
        done = status in DONE
        current, target = values.get("Current"), values.get("Target")
        if isinstance(values.get("Progress"), int | float):
            progress = float(values["Progress"])
        elif isinstance(current, int | float) and target:
            progress = current / target
        else:
            progress = 1.0 if done else 0.0
        owners = [self.workspace.users[u].name for u in values.get("Owner") or ()]
        due = values.get("Due")
        return ObjectiveTruth(
            id=page.id,
            title="".join(values.get("Objective") or []),
            status=status,
            done=done,
            progress=min(1.0, max(0.0, progress)),
            value=float(current) if isinstance(current, int | float) else None,
            target=float(target) if isinstance(target, int | float) else None,
            owner=", ".join(owners) or None,
            due=(due[0] if isinstance(due[0], date) else None) if due else None,
        )
