"""A chat held as a persona shows it when reopened (issue 26, row 29): in the status bar, in the persona picker
and in the conversation list. Real SQLite; no answer is generated."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_personas import add_persona
from textual.widgets import Label
from tui_helpers import seed

from assistant.tui.screens.personas import PersonaPickerScreen
from assistant.tui.widgets.sidebar import ConversationItem

pytestmark = pytest.mark.anyio


def listed(app) -> dict[int, str]:  # noqa: ANN001
    """The conversation list: id -> the text of its row."""
    return {item.conversation_id: str(item.query_one(Label).render()) for item in app.query(ConversationItem)}


async def test_a_reopened_persona_chat_shows_its_persona(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    """Reopening a chat held as persona "pip" showed only the model in the status bar and "current: none" in the
    picker, although its answers come from pip's prompt (stored with the chat); the list did not mark it. The
    persona shown is the one of the chat on screen; a new chat shows the persona new chats start with."""
    add_persona(tmp_path)
    plain, _ = seed(store)
    pip = store.new_conversation(title="Wifi password", persona="pip", system="You are Pip.")
    store.add_message(pip, "user", "What is the wifi password?")
    store.add_message(pip, "assistant", "tulip42", finish_reason="stop")
    app = make_app()  # opens the latest chat: pip's
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.session.conversation_id == pip
        assert app.status.info.persona == "pip" and app.status.render().plain.startswith(" pip ("), app.status.render()
        rows = listed(app)
        assert "pip" in rows[pip] and "Wifi password" in rows[pip] and "pip" not in rows[plain], rows
        app.chat_screen.action_pick_persona()
        await pilot.pause()
        assert isinstance(app.screen, PersonaPickerScreen)
        assert "current: pip" in str(app.screen.query_one(Label).render())
        await pilot.press("escape")
        await app.open_conversation(plain)
        await pilot.pause()
        assert app.status.info.persona == "" and not app.status.render().plain.startswith(" pip")
        await app.open_conversation(pip)
        await pilot.pause()
        assert app.status.info.persona == "pip"
        await pilot.press("ctrl+n")  # a new chat: no persona picked for new chats
        await pilot.pause()
        assert app.status.info.persona == ""


async def test_chat_as_a_persona_from_the_command_line_starts_a_new_chat(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    """``assistant chat --persona pip`` opened the latest chat (held without pip: its answers would not be pip's)
    while the status bar said pip. It starts a new chat as pip, as the persona picker does."""
    pip = add_persona(tmp_path)
    seed(store)
    app = make_app(persona=pip)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.session.conversation_id is None and not app.chat.views()
        assert app.status.info.persona == "pip"
