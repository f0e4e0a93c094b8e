"""Pasted text is text, never keys.

Textual's terminal parser ends a bracketed paste at the first escape sequence inside it and replays the rest as
key presses (``ESC [2J`` types ``^[2J``, a BEL after it is Ctrl+G, a carriage return is Enter). ``PasteParser``
takes each whole paste before that parser sees any of it; ``clean`` makes pasted text safe to insert.
A terminal that does not bracket its pastes sends them as typing: nothing can tell the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from textual import events
from textual._xterm_parser import XTermParser
from textual.message import Message

from assistant.text_safety import sanitize

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
HOLD_S = 0.05  # the end of a read that may begin a bracket waits this long for the next read


def clean(text: str) -> str:
    """Pasted text with its line ends as ``\\n``, tabs kept, every other control character and escape sequence
    removed."""
    return sanitize(text.replace("\r\n", "\n").replace("\r", "\n"))


def _held_back(data: str, bracket: str) -> int:
    """How many characters at the end of ``data`` may begin ``bracket`` (kept for the next read)."""
    return next((n for n in range(len(bracket) - 1, 0, -1) if data.endswith(bracket[:n])), 0)


class PasteParser(XTermParser):
    """Textual's parser, given everything but bracketed pastes; each paste becomes one cleaned ``Paste`` event."""

    def __init__(self, debug: bool = False) -> None:
        super().__init__(debug)
        self._paste: list[str] | None = None  # the text of a paste under way
        self._held = ""  # the end of the last read, which may begin a bracket (or be the Escape key)
        self._held_at = 0.0

    def feed(self, data: str) -> Iterable[Message]:
        if not data:  # the end of input
            return super().feed(data)
        self._held_at = time.monotonic()
        return list(self._split(self._held + data))

    def tick(self) -> Iterable[Message]:
        """Called every 0.1 s at most: what was held back and not followed within ``HOLD_S`` was no bracket."""
        if not self._held or time.monotonic() - self._held_at < HOLD_S:
            return super().tick()
        held, self._held = self._held, ""
        if self._paste is not None:
            self._paste.append(held)
            return []
        if held == "\x1b":  # nothing followed it: the Escape key
            return [events.Key("escape", "\x1b")]
        return [*super().feed(held), *super().tick()]

    def _split(self, data: str) -> Iterator[Message]:
        self._held = ""
        while data:
            bracket = PASTE_START if self._paste is None else PASTE_END
            at = data.find(bracket)
            if at == -1:
                held = _held_back(data, bracket)
                data, self._held = data[: len(data) - held], data[len(data) - held :]
            text, data = data[: len(data) if at == -1 else at], "" if at == -1 else data[at + len(bracket) :]
            if self._paste is not None:
                self._paste.append(text)
            elif text:
                yield from super().feed(text)
            if at != -1:
                if self._paste is not None:
                    yield events.Paste(clean("".join(self._paste)))
                self._paste = [] if self._paste is None else None


@contextmanager
def whole_pastes() -> Iterator[None]:
    """While the app runs, its terminal driver reads input with ``PasteParser`` (Textual's Linux driver makes its
    parser by the name ``XTermParser`` when it starts reading)."""
    from textual.drivers import linux_driver

    original = linux_driver.XTermParser
    linux_driver.XTermParser = PasteParser  # type: ignore[misc]
    try:
        yield
    finally:
        linux_driver.XTermParser = original  # type: ignore[misc]
