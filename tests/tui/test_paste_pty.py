"""A paste in a real terminal is text, never keys (issue 26, row 26): the real ``assistant`` command in a
pseudo-terminal (pexpect), sent a bracketed paste as a terminal sends one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from assistant.storage.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from ui_terminal import PROMPT_BORDER, TerminalUI  # noqa: E402

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def questions(store: Store) -> list[str]:
    return [m["content"] for c in store.conversations() for m in store.messages(c["id"]) if m["role"] == "user"]


def answered(store: Store, count: int) -> bool:
    rows = [m for c in store.conversations() for m in store.messages(c["id"]) if m["role"] == "assistant"]
    return len(rows) >= count and bool(rows[-1]["finish_reason"])


@pytest.mark.timeout(180)
def test_control_characters_in_a_paste_are_dropped_not_pressed(assistant_home: Path) -> None:
    """Row 26: Textual ended a paste's text at the first escape sequence in it and replayed the rest as keys, so
    ``ESC [2J`` typed ``^[2J``, a BEL after it pressed Ctrl+G (edit the last message: the paste was lost) and a
    carriage return pressed Enter. A paste is inserted as text with its control characters and escape sequences
    removed; its line ends (CR LF, as terminals send them) stay line breaks, its tabs stay."""
    ui = TerminalUI(assistant_home, ASSISTANT_MAX_TOKENS="8", ASSISTANT_TEMPERATURE="0")
    store = Store(assistant_home / "assistant.db")
    try:
        ui.wait(lambda: ui.shows("Ask anything") and ui.shows("ctx 0/"), "the model to load")
        ui.type("hi")  # a message before: Ctrl+G would edit it
        ui.wait(lambda: answered(store, 1), "the first answer", timeout=90)
        mark = len(ui.text)
        ui.child.send(f"{PASTE_START}one\x1b[2Jtwo\x07three\r\nfour\tfive{PASTE_END}")
        ui.wait(lambda: ui.shows(PROMPT_BORDER + "onetwothree", mark), "the paste in the message box", timeout=20)
        ui.child.send("\r")
        ui.wait(lambda: answered(store, 2), "the answer to the paste", timeout=90)
        assert questions(store) == ["hi", "onetwothree\nfour\tfive"]
        assert ui.quit() == 0
    finally:
        if ui.child.isalive():
            ui.kill()
        store.close()
