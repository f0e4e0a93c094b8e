"""Pasted text is text, never keys (issue 26, row 26): the terminal parser and the message box."""

from __future__ import annotations

import time

import pytest
from textual import events

from assistant.tui.paste import HOLD_S, PASTE_END, PASTE_START, PasteParser

pytestmark = pytest.mark.anyio


def parse(*reads: str) -> list[events.Event]:
    parser = PasteParser()
    return [event for data in reads for event in parser.feed(data)]  # type: ignore[misc]


def test_a_paste_with_escape_sequences_is_one_paste_event_even_split_across_reads() -> None:
    raw = f"x{PASTE_START}one\x1b[2Jtwo\x07three\r\nfour{PASTE_END}y"
    for cut in range(len(raw) + 1):
        got = parse(raw[:cut], raw[cut:]) if 0 < cut < len(raw) else parse(raw)
        keys = [e.character for e in got if isinstance(e, events.Key)]
        pastes = [e.text for e in got if isinstance(e, events.Paste)]
        assert (keys, pastes) == (["x", "y"], ["onetwothree\nfour"]), cut


def test_escape_alone_is_still_the_escape_key() -> None:
    """An ESC at the end of a read may begin a paste's bracket: it waits ``HOLD_S`` for the next read, no longer."""
    parser = PasteParser()
    assert list(parser.feed("\x1b")) == []
    time.sleep(HOLD_S)
    assert [e.key for e in parser.tick() if isinstance(e, events.Key)] == ["escape"]


async def test_the_message_box_drops_control_characters_from_a_paste(make_app) -> None:  # noqa: ANN001
    """A paste that reached the box some other way (a terminal Textual parses itself) is cleaned there too."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.prompt.focus()
        app.post_message(events.Paste("one\x07two\x1b[2J\r\nthree\tfour"))  # as the terminal driver posts it
        await pilot.pause()
        assert app.prompt.text == "onetwo\nthree\tfour" and app.prompt.editing is None
