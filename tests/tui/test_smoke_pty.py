"""Smoke test: the real ``assistant`` command in a pseudo-terminal (pexpect), as a user would run it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from assistant.storage.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from ui_terminal import TerminalUI  # noqa: E402


def launch(home: Path) -> TerminalUI:
    """`python -m assistant` on a 30x100 pty, greedy, short answers; everything it draws is kept (``text``)."""
    return TerminalUI(home, ASSISTANT_MAX_TOKENS="16", ASSISTANT_TEMPERATURE="0")


@pytest.mark.timeout(180)
def test_assistant_command_answers_in_a_terminal_and_remembers(assistant_home: Path) -> None:
    ui = launch(assistant_home)
    ui.wait(lambda: all(ui.shows(s) for s in ("Ask anything", "on-device only", "ctx 0/")), "the model to load")
    asked = len(ui.text)
    ui.child.send("What is 2+2?\r")  # text and Enter in one read, as tmux send-keys, SSH or a paste deliver them

    store = Store(assistant_home / "assistant.db")

    def answered() -> bool:
        rows = [m for c in store.conversations() for m in store.messages(c["id"]) if m["role"] == "assistant"]
        return bool(rows) and bool(rows[-1]["finish_reason"])

    ui.wait(answered, "the answer to be stored", timeout=90)
    answer = [m for m in store.messages(store.latest_conversation_id()) if m["role"] == "assistant"][-1]["content"]
    word = max(re.findall(r"[A-Za-z0-9]+", answer), key=len)
    # the stored answer is on screen (``text`` keeps what was drawn while the store was being polled)
    ui.wait(lambda: ui.shows(word, asked), f"the stored answer's {word!r} on screen")
    assert ui.quit() == 0

    # a restart shows the conversation again
    ui = launch(assistant_home)
    ui.wait(lambda: ui.shows("What is 2+2?") and ui.shows(word), "the conversation after a restart")
    assert ui.quit() == 0
    store.close()
