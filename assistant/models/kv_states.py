"""What the KV cache holds, and a bounded cache of other conversations' KV states.

The engine keeps the token sequence of the last turn so the next turn of that conversation evaluates only
its new tokens; switching to another conversation parks the current state here, least recently used
dropped first once the states exceed their byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Prefix:
    """What the KV cache holds: the text it renders to and its exact tokens."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)


@dataclass
class SavedState:
    data: bytes  # llama.cpp's context state (KV cache)
    evaluated: list[int]  # the tokens that state holds
    prefix: Prefix

    @property
    def nbytes(self) -> int:
        return len(self.data)


class StateCache:
    """Saved states by conversation key, the least recently parked dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[object, SavedState] = OrderedDict()

    def park(self, key: object, state: SavedState) -> None:
        self._states[key] = state
        self._states.move_to_end(key)
        while sum(s.nbytes for s in self._states.values()) > self.max_bytes and self._states:
            self._states.popitem(last=False)

    def take(self, key: object) -> SavedState | None:
        """The conversation's state, no longer kept here (None if not cached)."""
        return self._states.pop(key, None)

    def clear(self) -> None:
        self._states.clear()
