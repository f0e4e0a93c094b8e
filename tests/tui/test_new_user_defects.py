"""Defects a new user hit in the chat UI (issue 19, rows 1, 8, 9, 11 and 16), each driven by Textual's pilot.

The real SmolLM2-135M student and a real SQLite store, as in ``test_app.py``.
"""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input, TextArea
from tui_helpers import ask_and_wait_for_text, until

from assistant.session import resumable

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(120)
async def test_quit_while_streaming_stops_within_a_token_and_keeps_the_partial_answer(  # row 1
    make_app, store, tui_config, engine  # noqa: ANN001
) -> None:
    tui_config.generation.max_tokens = 1500
    app = make_app()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await ask_and_wait_for_text(pilot, app, "Write a long essay about the history of Rome.", 20)
            conversation = app.session.conversation_id
            pressed = time.monotonic()
            await pilot.press("ctrl+q")
            await until(pilot, lambda: not app.is_running, 5.0, "the app to exit")
        deadline = pressed + 1.0
        while engine.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        stopped_after = time.monotonic() - pressed
        assert not engine.busy and stopped_after < 1.0, f"still generating {stopped_after:.2f} s after Ctrl+Q"
    finally:
        engine.cancel()  # if the test failed, do not leave the shared engine writing an essay
    answer = store.messages(conversation)[-1]
    assert answer["role"] == "assistant" and answer["content"].strip()
    assert answer["finish_reason"] == "cancelled" and resumable(answer)  # kept, marked incomplete
    assert answer["completion_tokens"] < 1500


async def test_dialogs_take_typing_in_their_first_field_at_once(make_app, store) -> None:  # noqa: ANN001 - row 8
    from tui_helpers import seed

    seed(store)
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"Be brief.")
        assert app.screen.focused is app.screen.query_one("#system", TextArea)
        assert app.screen.query_one("#system", TextArea).text == "Be brief."
        await pilot.press("escape")
        app.prompt.focus()
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("end", *" (2)")
        assert app.screen.query_one(Input).value == "Monads (2)"
