"""The settings screen saves into the user's config file: comments kept, environment overrides never written."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from assistant.config import load
from assistant.tui.app import ChatApp
from assistant.tui.screens.settings import SettingsScreen

pytestmark = pytest.mark.anyio

COMMENTED = """\
# written by hand; keep this comment
[generation]
max_tokens = 200   # long enough

# the desktop teacher
[teacher]
url = "http://127.0.0.1:8080/v1"
model = "qwen"
"""


async def test_a_settings_save_keeps_comments_and_leaves_overrides_out(
    store,
    engine,
    assistant_home: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    path = assistant_home / "config.toml"
    path.write_text(COMMENTED)
    monkeypatch.setenv("ASSISTANT_ESCALATION", "auto")
    monkeypatch.setenv("ASSISTANT_TEMPERATURE", "0")
    app = ChatApp(load(), store, engine=engine)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+s")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#max-tokens", Input).value = "300"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
    assert path.read_text() == COMMENTED.replace("max_tokens = 200   # long enough", "max_tokens = 300   # long enough")
