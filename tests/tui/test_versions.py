"""Branches in the chat UI (issue 18): regenerate and edit-and-resend keep the earlier versions, ``◀ n/m ▶``
switches them, and the conversation continues from the version on screen. Real SmolLM2-135M, real SQLite."""

from __future__ import annotations

import pytest
from tui_helpers import send, wait_idle

from assistant.tui.widgets.message import MessageView

pytestmark = pytest.mark.anyio


def header(view: MessageView) -> str:
    return view.query_one(".message-header").render().plain  # type: ignore[attr-defined]


async def test_regenerate_keeps_both_versions_and_the_arrows_switch_them(make_app, store, tui_config) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Name a colour.")
        await wait_idle(pilot, app, turns=1)
        cid = app.session.conversation_id
        question, first = store.messages(cid)
        tui_config.generation.max_tokens = 4  # the second answer is a shorter one: the versions differ
        await pilot.press("ctrl+r")
        await wait_idle(pilot, app, turns=2)
        second = store.messages(cid)[-1]
        assert second["content"] != first["content"]
        shown = app.chat.views()
        assert shown[1].versions == (question["id"], 2, 2) and "◀ 2/2 ▶" in header(shown[1])
        assert shown[0].versions is None

        await pilot.press("alt+left")  # the earlier answer comes back, on screen and in the store
        await pilot.pause()
        shown = app.chat.views()
        assert [v.source for v in shown] == [question["content"], first["content"]]
        assert "◀ 1/2 ▶" in header(shown[1])
        assert [m["content"] for m in store.messages(cid)] == [question["content"], first["content"]]
        await pilot.press("alt+left")  # already the first: nothing changes
        await pilot.pause()
        assert app.chat.views()[1].versions[1:] == (1, 2)  # type: ignore[index]

        tui_config.generation.max_tokens = 8
        await send(pilot, app, "And another one?")  # continues from version 1
        await wait_idle(pilot, app, turns=3)
        rows = store.messages(cid)
        assert [m["content"] for m in rows[:3]] == [question["content"], first["content"], "And another one?"]
        assert len(rows) == 4 and len(app.chat.views()) == 4

    app = make_app()  # a restart: the versions are still there, and the arrow's click switches them
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        answer = app.chat.views()[1]
        assert answer.versions == (question["id"], 1, 2)
        text = header(answer)
        await pilot.click(answer.query_one(".message-header"), offset=(text.index("▶"), 0))
        await pilot.pause()
        assert [v.source for v in app.chat.views()] == [question["content"], second["content"]]
        assert app.chat.views()[1].versions == (question["id"], 2, 2)


async def test_edit_and_resend_keeps_the_first_question_as_a_version(make_app, store) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Name a colour.")
        await wait_idle(pilot, app, turns=1)
        cid = app.session.conversation_id
        await pilot.press("up")
        app.prompt.text = "Name a fruit."
        await pilot.press("enter")
        await wait_idle(pilot, app, turns=2)
        question = app.chat.views()[0]
        assert question.source == "Name a fruit." and question.versions == (0, 2, 2)
        await pilot.press("alt+left")
        await pilot.pause()
        assert [m["content"] for m in store.messages(cid)][0] == "Name a colour."
        assert app.chat.views()[0].source == "Name a colour." and "◀ 1/2 ▶" in header(app.chat.views()[0])
        await pilot.press("alt+right")
        await pilot.pause()
        assert app.chat.views()[0].source == "Name a fruit."
