"""Make model output harmless to display: drop control characters and terminal escape sequences."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INTRODUCERS = {"[": "csi", "]": "string", "P": "string", "_": "string", "^": "string", "X": "string"}


class ControlFilter:
    """Removes control characters and escape sequences from streamed text, even split across pieces.

    Newlines and tabs are kept. A CSI sequence ends at its final byte; OSC/DCS strings end at
    BEL, ST or a newline (so an unterminated one cannot swallow the rest of the answer).
    """

    def __init__(self) -> None:
        self._state = "text"

    def feed(self, text: str) -> str:
        if self._state == "text" and not _UNSAFE.search(text):
            return text
        out: list[str] = []
        for ch in text:
            if self._state != "text":
                self._step(ch, out)
            elif ch == "\x1b":
                self._state = "esc"
            elif ch == "\x9b":
                self._state = "csi"
            elif ch == "\x9d":
                self._state = "string"
            elif ch in "\n\t" or not _UNSAFE.match(ch):
                out.append(ch)
        return "".join(out)

    def _step(self, ch: str, out: list[str]) -> None:
        state = self._state
        if ch == "\n":
            self._state = "text"
            out.append(ch)
        elif state == "esc":
            self._state = _INTRODUCERS.get(ch, "text")
        elif state == "csi":
            if not 0x20 <= ord(ch) <= 0x3F:  # parameters and intermediates continue, anything else ends it
                self._state = "text"
        elif state == "string":
            if ch == "\x07":
                self._state = "text"
            elif ch == "\x1b":
                self._state = "esc"  # ESC \ (string terminator): the backslash ends the sequence


def clean(text: str) -> str:
    """``text`` with control characters and escape sequences removed (newlines and tabs kept)."""
    return ControlFilter().feed(text)
