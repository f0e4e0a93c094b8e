"""A progress bar for long commands: drawn on stderr only when it is a terminal, a few times a second.

Off a terminal (a pipe, a log, a test) it draws nothing: the command's result line says what was done.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24


class Bar:
    """``bar(done, total)`` after each step; :meth:`close` clears the line."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 0.2) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.shown = self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.shown or (now - self.last < self.every_s and done < total):
            return
        self.last = now
        share = done / total if total else 1.0
        filled = int(share * WIDTH)
        rate = done / max(now - self.start, 1e-9)
        eta = f", {(total - done) / rate:.0f} s left" if rate and done < total else ""
        line = f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total} ({rate:.1f}/s{eta})"
        self.stream.write(line + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
