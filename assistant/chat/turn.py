"""A turn: what a caller asks of it (:class:`TurnOptions`) and what came of it (:class:`Turn`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.chat.grounding import Grounding
from assistant.models.engine import Stats


@dataclass(frozen=True)
class TurnOptions:
    """One turn's settings from a caller other than the UI and the CLI (a server's request).

    ``via`` and ``model_label`` are recorded with the answer; the engine settings go on top of the
    session's default ``sampling`` (those left unset keep the session's, or the engine's, value).
    """

    via: str = ""  # the front door the turn came through, recorded in the answer's route (e.g. "API")
    model_label: str = ""  # stored as the answer's model instead of the engine's (e.g. the name a client asked for)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: Any = None  # a llama_cpp.LlamaGrammar (assistant.models.schema)
    top_p: float | None = None

    def sampling(self) -> dict[str, Any]:
        """The engine settings given here, as ``Engine.stream`` keywords."""
        given = {"stop": self.stop or None, "seed": self.seed, "grammar": self.grammar, "top_p": self.top_p}
        return {name: value for name, value in given.items() if value is not None}


@dataclass
class Turn:
    """The outcome of one exchange."""

    user_message_id: int = 0
    answer_message_id: int = 0
    answer: str = ""
    model: str = ""
    escalated: bool = False
    route: dict[str, Any] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    notes: list[str] = field(default_factory=list)
    grounding: Grounding = field(default_factory=Grounding)  # what your documents added, and their sources
