"""Make untrusted text (model output, stored messages, pasted text) harmless to show in a terminal.

A model can emit anything, including terminal escape sequences that move the cursor, rewrite
the screen, set the window title, write the clipboard (OSC 52) or draw fake links (OSC 8), and
bidirectional override characters that make text read differently than it is stored. Before
such text reaches a terminal or the UI, this removes:

- escape sequences: CSI (``ESC [``), OSC/DCS/SOS/PM/APC strings (up to BEL, ST or a newline, so
  an unterminated one cannot swallow the rest of the answer) and two-character escapes;
- C0 and C1 control characters except newline and tab (a carriage return that is not part of
  ``\\r\\n`` would let a line overwrite itself);
- Unicode bidirectional embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069).

Stored text is never changed: this is applied only where text is displayed.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_STRING_INTRODUCERS = "]PX^_"  # OSC, DCS, SOS, PM, APC: run until a string terminator


class StreamSanitizer:
    """Sanitizes text that arrives in pieces; an escape sequence may be split across pieces."""

    def __init__(self) -> None:
        self._state = "text"  # text | esc | csi | string | string_esc | cr

    def feed(self, text: str) -> str:
        if self._state == "text" and not _UNSAFE.search(text):
            return text
        out: list[str] = []
        for ch in text:
            self._step(ch, out)
        return "".join(out)

    def _step(self, ch: str, out: list[str]) -> None:
        state = self._state
        if state == "cr":  # a carriage return survives only as part of \r\n
            self._state = "text"
            state = "text"
        if state == "text":
            if ch == "\x1b":
                self._state = "esc"
            elif ch == "\x9b":
                self._state = "csi"
            elif ch in "\x90\x98\x9d\x9e\x9f":
                self._state = "string"
            elif ch == "\r":
                self._state = "cr"
            elif ch in "\n\t" or not _UNSAFE.match(ch):
                out.append(ch)
        elif ch == "\n":  # a newline always ends a sequence, and is kept
            self._state = "text"
            out.append(ch)
        elif state == "esc":
            self._state = "csi" if ch == "[" else "string" if ch in _STRING_INTRODUCERS else "text"
        elif state == "csi":
            if not 0x20 <= ord(ch) <= 0x3F:  # parameter and intermediate bytes continue; anything else ends it
                self._state = "text"
        elif state == "string":
            if ch in "\x07\x9c":
                self._state = "text"
            elif ch == "\x1b":
                self._state = "string_esc"
        elif state == "string_esc":  # ESC \ is the string terminator; ESC + anything else stays inside
            self._state = "text" if ch == "\\" else "string"

    def flush(self) -> str:
        """End of stream: nothing is held back (an unfinished sequence is simply dropped)."""
        self._state = "text"
        return ""


def sanitize(text: str) -> str:
    """``text`` without control characters, escape sequences or bidi overrides (newlines and tabs kept)."""
    return StreamSanitizer().feed(text)


def json_for_terminal(text: str) -> str:
    """JSON text with each character ``sanitize`` would drop written as a ``\\uXXXX`` escape: safe, same value.

    ``json.dumps`` already escapes C0 controls inside strings; this adds DEL, C1 controls and bidi overrides
    (kept raw by ``ensure_ascii=False``). Outside strings JSON holds only ASCII structure and whitespace.
    """
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
