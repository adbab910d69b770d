"""The notes asset: each objective's page and its note pages as plain text in the notes
table, nested blocks included, rewritten only when a page was edited."""

from __future__ import annotations

import pytest

from kpi_pipelines.integrations.notion.notes import CUT, MAX_DEPTH
from kpi_pipelines.sandbox.notion.okrs import note_body
from kpi_pipelines_tests.integrations.notion.world import NotionWorld
from kpi_pipelines_tests.run_results import failure_message

BLOCK_REQUESTS = "GET /v1/blocks/children"


def note_text(title: str, index: int) -> str:
    """What note_body(title, index) reads as, written out by hand."""
    return "\n".join(
        [
            f"Update {index + 1}: {title}",
            f"We reviewed {title.lower()} with the team.",
            "- Wins this week",
            "  - A nested detail",
            "1. First next step",
            "2. Second next step",
            "[x] Send the summary",
            "[ ] Book the review",
            "Details",
            "  Hidden until opened",
            "  [ ] A task inside the toggle",
        ]
    )


def test_each_objective_and_its_note_pages_are_kept_as_plain_text_with_nested_blocks(
    notion: NotionWorld,
) -> None:
    acme = notion.board("Acme", objectives=3, notes_per_objective=2)
    notion.connect("acme", acme)
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    notes = notion.notes("acme")
    workspace = acme.notion
    objectives = [
        p for p in workspace.pages.values() if p.data_source_id == acme.board.objectives.id
    ]
    assert len(notes) == 3 * (1 + 2)
    for objective in objectives:
        title = "".join(objective.values["Objective"])
        own = notes[(objective.id, objective.id)]
        assert own["kind"] == "objective"
        assert own["title"] == title
        assert own["text"] == "\n".join(
            [
                title,
                f"Why it matters: {title.lower()}.",
                "Key results",
                f"  - Reach {objective.values['Target']:g}",
            ]
        )
        assert own["url"].endswith(objective.id.replace("-", ""))
        for index, note_id in enumerate(objective.values["Notes"]):
            note = notes[(note_id, objective.id)]
            assert note["kind"] == "note"
            assert note["title"] == f"{title}: update {index + 1}"
            assert note["text"] == note_text(title, index)
            assert note["last_edited_time"] == workspace.pages[note_id].last_edited_time
    assert len(note_body("x", 0)) == 8  # the body the expected text writes out


def test_notes_are_rewritten_only_when_their_page_was_edited(notion: NotionWorld) -> None:
    acme = notion.board("Acme", objectives=3, notes_per_objective=2)
    notion.connect("acme", acme)
    assert notion.sync("acme").success
    before = notion.notes("acme")
    block_requests = notion.sandbox.stats.requests[BLOCK_REQUESTS]
    assert block_requests > 0

    notion.sandbox.clock.advance(hours=1)
    assert notion.sync("acme").success
    assert notion.sandbox.stats.requests[BLOCK_REQUESTS] == block_requests  # no body read again
    assert notion.notes("acme") == before  # not one row rewritten (synced_at included)

    objective = next(
        p for p in acme.notion.pages.values() if p.data_source_id == acme.board.objectives.id
    )
    note = acme.notion.pages[objective.values["Notes"][0]]
    paragraph = next(b for b in note.blocks if b.type == "paragraph")
    notion.sandbox.clock.advance(hours=1)
    acme.notion.edit_block(paragraph, "A new decision was made.")
    assert notion.sync("acme").success
    after = notion.notes("acme")
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {(note.id, objective.id)}
    assert "A new decision was made." in after[(note.id, objective.id)]["text"]


def test_a_trashed_objective_takes_its_notes_along_and_brings_them_back_when_restored(
    notion: NotionWorld,
) -> None:
    acme = notion.board("Acme", objectives=3, notes_per_objective=1)
    notion.connect("acme", acme)
    assert notion.sync("acme").success
    objective = next(
        p for p in acme.notion.pages.values() if p.data_source_id == acme.board.objectives.id
    )
    notion.sandbox.clock.advance(hours=1)
    acme.notion.trash(objective)
    assert notion.sync("acme").success
    assert not {key for key in notion.notes("acme") if key[1] == objective.id}
    notion.sandbox.clock.advance(hours=1)
    acme.notion.restore(objective)
    assert notion.sync("acme").success
    assert len({key for key in notion.notes("acme") if key[1] == objective.id}) == 2


@pytest.mark.parametrize("blocks", [250])
def test_a_long_body_is_read_page_after_page_of_blocks(notion: NotionWorld, blocks: int) -> None:
    acme = notion.board("Acme", objectives=1, notes_per_objective=0)
    objective = next(iter(acme.notion.pages.values()))
    acme.notion.append_blocks(objective, [("paragraph", f"line {n}") for n in range(blocks)])
    toggle = acme.notion.append_blocks(objective, [("toggle", "More", [])])[0]
    acme.notion.append_blocks(
        objective, [("to_do", f"task {n}", n % 2 == 0) for n in range(120)], under=toggle
    )
    notion.connect("acme", acme)
    before = notion.sandbox.stats.requests[BLOCK_REQUESTS]
    assert notion.sync("acme").success
    # the page's 3 + 250 + 1 blocks at 100 a page, its Key results toggle's child, the
    # More toggle's 120 children at 100 a page
    assert notion.sandbox.stats.requests[BLOCK_REQUESTS] - before == 3 + 1 + 2
    text = notion.notes("acme")[(objective.id, objective.id)]["text"].splitlines()
    own = 4  # the title, why it matters, the key results heading and its item
    assert text[own : own + blocks] == [f"line {n}" for n in range(blocks)]
    assert text[own + blocks] == "More"
    assert text[own + blocks + 1 :] == [
        f"  [{'x' if n % 2 == 0 else ' '}] task {n}" for n in range(120)
    ]


def test_a_block_echoing_the_token_keeps_the_pages_last_note(notion: NotionWorld) -> None:
    acme = notion.board("Acme", objectives=2, notes_per_objective=1)
    notion.connect("acme", acme)
    assert notion.sync("acme").success
    before = notion.notes("acme")
    objective = acme.notion.pages_of(acme.board.objectives)[0]
    notion.sandbox.clock.advance(hours=1)
    acme.notion.append_blocks(objective, [("paragraph", f"the key is {acme.token}")])
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    assert notion.notes("acme") == before  # kept as it was, the echo never stored
    [notes] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "notion_notes"
    ]
    assert notes["pages_rejected"].value == 1
    assert acme.token not in str(notes["errors"].value)


def test_a_body_nested_past_the_bound_is_cut_and_said(notion: NotionWorld) -> None:
    acme = notion.board("Acme", objectives=1, notes_per_objective=0)
    [objective] = acme.notion.pages_of(acme.board.objectives)
    parent = None
    for level in range(MAX_DEPTH + 3):
        [parent] = acme.notion.append_blocks(
            objective, [("toggle", f"level {level}", [])], **({"under": parent} if parent else {})
        )
    notion.connect("acme", acme)
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    text = notion.notes("acme")[(objective.id, objective.id)]["text"]
    assert f"level {MAX_DEPTH - 1}" in text and f"level {MAX_DEPTH}" not in text
    assert text.endswith(CUT)
    [notes] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "notion_notes"
    ]
    assert notes["pages_cut"].value == [objective.id]
