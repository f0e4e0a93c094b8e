"""Keys pressed while an answer streams (issue 26, row 25): each works, or says in one line why it waits.
Real SmolLM2-135M, real SQLite."""

from __future__ import annotations

import pytest
from tui_helpers import ask_and_wait_for_text, notices, seed, wait_idle, wait_until

from assistant.tui.screens.models import ModelPickerScreen

pytestmark = pytest.mark.anyio


async def notice_after(pilot, app, key: str) -> str:  # noqa: ANN001
    """Press ``key``; the first notice that comes after it (notices expire: their count is no guide)."""
    seen = {n.identity for n in notices(app)}
    await pilot.press(key)
    await wait_until(pilot, lambda: any(n.identity not in seen for n in notices(app)), f"a notice for {key}", 10)
    return next(n.message for n in notices(app) if n.identity not in seen)


@pytest.mark.timeout(180)
async def test_keys_pressed_while_answering_work_or_say_why_not(make_app, store, tui_config) -> None:  # noqa: ANN001
    """Ctrl+O, Ctrl+N, Ctrl+R and Up did nothing, silently, while the footer still offered them. The model picker
    opens (the README: a model picked then loads beside the one answering and takes over after the answer); the
    others would throw away or fork the answer under way, so each says it waits and how to stop the answer, and the
    answer goes on."""
    seed(store)
    tui_config.generation.max_tokens = 1500
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_and_wait_for_text(pilot, app, "Write a long essay about the history of Rome.", 20)
        conversation = app.session.conversation_id
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPickerScreen), "the model picker", 10)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.chat_screen, "the picker to close", 10)
        assert app.screen.focused is app.prompt, app.screen.focused
        for key in ("ctrl+n", "ctrl+r", "up"):
            assert app.generating, f"the answer ended before {key} could be pressed during it"
            said = await notice_after(pilot, app, key)
            assert "Still answering" in said and "Escape" in said and "\n" not in said, (key, said)
        assert app.generating and app.session.conversation_id == conversation and app.prompt.editing is None
        await pilot.press("escape")
        await wait_idle(pilot, app, turns=1)
