"""The stop-string scan: where a streamed answer reaches one of its stop strings, which are never shown."""

from __future__ import annotations

from collections.abc import Sequence


class StopScan:
    """Finds stop strings in a streamed answer, holding back text that may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """(the text that can be shown now, whether a stop string was reached)."""
        if not self.stops:
            return piece, False
        self.pending += piece
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            shown, self.pending = self.pending[: min(found)], ""
            return shown, True
        keep = next(
            (
                k
                for k in range(min(len(self.pending), max(map(len, self.stops)) - 1), 0, -1)
                if any(s.startswith(self.pending[-k:]) for s in self.stops)
            ),
            0,
        )
        shown, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return shown, False

    def held(self) -> str:
        held, self.pending = self.pending, ""
        return held
