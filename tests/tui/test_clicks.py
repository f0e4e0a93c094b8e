"""Clicks in the chat (issue 26, rows 20 and 24): the resume note's links act as their keys, and a click on a
message leaves the typing in the message box. Real SmolLM2-135M, real SQLite."""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from textual.widgets.markdown import MarkdownFence
from tui_helpers import PARTIAL, note_text, seed_incomplete, wait_until

pytestmark = pytest.mark.anyio


async def click_word(pilot, view, word: str) -> None:  # noqa: ANN001
    """Click ``word`` in ``view``'s resume note."""
    note = note_text(view)
    await pilot.click(view.query_one(".resume-note"), offset=(cell_len(note[: note.index(word)]) + 2, 0))


@pytest.mark.timeout(120)
async def test_clicking_regenerate_in_the_note_regenerates_as_ctrl_r_does(make_app, store) -> None:  # noqa: ANN001
    """Row 20: the click replaced the answer with nothing and hung the app (every key, Ctrl+Q too, ignored)."""
    conversation, answer_id = seed_incomplete(store)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await click_word(pilot, app.chat.views()[-1], "regenerate")
        await wait_until(pilot, lambda: app.turns_done == 1, "the regenerated answer", 60)
        rows = store.messages(conversation)
        assert len(rows) == 2 and rows[1]["content"] != PARTIAL and rows[1]["complete"] == 1
        assert [v.source for v in app.chat.views()] == [r["content"] for r in rows]
        assert app.screen.focused is app.prompt  # row 24: typing goes on into the message box
        await pilot.press("x")
        assert app.prompt.text == "x"


async def test_clicks_in_the_chat_leave_the_typing_in_the_message_box(make_app, store) -> None:  # noqa: ANN001
    """Row 24: a click on a code block, on ◀ or on "continue" took the focus (to the chat), and the next keys were
    lost until Tab. A click in the chat is for the thing clicked; the keyboard stays with the message box."""
    conversation = store.new_conversation(title="Code", model="SmolLM2-135M-Instruct.Q4_1")
    question = store.add_message(conversation, "user", "Show me a loop.")
    store.add_message(
        conversation, "assistant", "Here:\n\n```python\nfor i in range(3):\n    print(i)\n```\n\nAnd", complete=0
    )
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        answer = app.chat.views()[-1]
        assert app.screen.focused is app.prompt
        await pilot.click(answer.query_one(MarkdownFence))
        await pilot.press("a")
        answer.set_versions((question, 1, 2))  # draw the arrows (a click on ◀ at the first version changes nothing)
        await pilot.pause()
        await pilot.click(answer.query_one(".message-header"), offset=(header(answer).index("◀"), 0))
        await pilot.press("b")
        await click_word(pilot, answer, "continue")
        await wait_until(pilot, lambda: app.turns_done == 1, "the continued answer", 60)
        await pilot.press("c")
        assert app.prompt.text == "abc" and app.screen.focused is app.prompt
        assert store.messages(conversation)[-1]["content"].startswith("Here:")


def header(view) -> str:  # noqa: ANN001 - a MessageView
    return view.query_one(".message-header").render().plain
