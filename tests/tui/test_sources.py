"""An answer grounded in your documents shows its sources folded under it, opened on click (issue 28).

The snapshot shows a stored answer's sources opened; the live test asks a persona over the handbook through the
real engine (a 512-token window, so the handbook is retrieved) and finds the sources under the answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Collapsible, Static
from tui_helpers import send, wait_idle

from assistant.chat import persona as personas
from assistant.chat.persona import Persona

pytestmark = pytest.mark.anyio
HANDBOOK = Path(__file__).resolve().parents[2] / "bench" / "personas" / "lumen-handbook" / "handbook.md"
SOURCES = {
    "mode": "retrieved",
    "sources": [
        {"path": "/home/me/handbook/badges.md", "start_line": 12, "end_line": 19, "score": 0.0328},
        {"path": "/home/me/handbook/office.md", "start_line": 1, "end_line": 9, "score": 0.0161},
    ],
}


def seed_grounded(store) -> int:  # noqa: ANN001
    conversation = store.new_conversation(title="Badges", model="SmolLM2-135M-Instruct.Q4_1")
    store.add_message(conversation, "user", "What colour badge does a contractor wear?")
    store.add_message(
        conversation,
        "assistant",
        "Contractors wear an **orange** badge [1].",
        model="SmolLM2-135M-Instruct.Q4_1",
        finish_reason="stop",
        sources=json.dumps(SOURCES),
    )
    return conversation


def test_sources_folded_under_the_answer_open_on_click(snap_compare, make_app, store) -> None:  # noqa: ANN001
    conversation = seed_grounded(store)

    async def run_before(pilot) -> None:  # noqa: ANN001
        app = pilot.app
        app.prompt.cursor_blink = False
        await app.open_conversation(conversation)
        await pilot.pause()
        await pilot.click(".sources CollapsibleTitle")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


async def test_a_folded_source_list_opens_on_click(make_app, store) -> None:  # noqa: ANN001
    conversation = seed_grounded(store)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.open_conversation(conversation)
        await pilot.pause()
        fold = app.chat.views()[-1].query_one(".sources", Collapsible)
        assert fold.display and fold.collapsed and fold.title == "📚 Sources (2)"
        await pilot.click(".sources CollapsibleTitle")
        await pilot.pause()
        assert not fold.collapsed
        text = str(fold.query_one(".sources-text", Static).render())
        assert "[1] badges.md · lines 12-19" in text and "/home/me/handbook/office.md" in text
        assert not app.chat.views()[0].query(".sources")  # the question has none; nor has a plain answer


async def test_a_persona_over_documents_answers_with_its_sources_on_screen(make_app, tmp_path: Path) -> None:  # noqa: ANN001
    wick = Persona(name="wick", system="Answer from the handbook.", docs=[str(HANDBOOK)])
    personas.save(wick)  # a chat reads its persona afresh from its file
    app = make_app(persona=wick)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await send(pilot, app, "Who leads the Firmware team?")
        await wait_idle(pilot, app, timeout=180)
        fold = app.chat.views()[-1].query_one(".sources", Collapsible)
        assert fold.display and fold.title.startswith("📚 Sources (")
        text = str(fold.query_one(".sources-text", Static).render())
        assert "[1] handbook.md · lines " in text
