"""One conversation: ties the store and the engine together for the UI and the CLI.

A turn: store the user's message, stream the answer from the engine, write the answer
as it grows (at most every ``flush_interval`` seconds, and at the end).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from assistant.config import Config
from assistant.engine import Delta, Engine, Stats
from assistant.store import Store

FLUSH_INTERVAL_S = 0.25


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


class Session:
    """A conversation with the on-device model, persisted in the store."""

    def __init__(self, store: Store, engine: Engine, config: Config, conversation_id: int | None = None) -> None:
        self.store, self.engine, self.config = store, engine, config
        self.conversation_id = conversation_id
        self.last = Turn()
        self.flush_interval = FLUSH_INTERVAL_S

    # -- conversation
    def ensure_conversation(self, title: str = "") -> int:
        if self.conversation_id is None:
            self.conversation_id = self.store.new_conversation(
                title=title[:80], model=self.engine.name, system=self.config.generation.system
            )
        return self.conversation_id

    @property
    def system_prompt(self) -> str:
        if self.conversation_id is None:
            return self.config.generation.system
        return self.store.conversation(self.conversation_id)["system"] or ""

    def history(self) -> list[dict[str, str]]:
        """Messages for the model: the system prompt, then the stored turns."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        if self.conversation_id is not None:
            messages += [
                {"role": m["role"], "content": m["content"]}
                for m in self.store.messages(self.conversation_id)
                if m["role"] in ("user", "assistant")
            ]
        return messages

    # -- a turn
    def send(self, text: str, *, max_tokens: int | None = None, temperature: float | None = None) -> Iterator[Delta]:
        """Store the question, stream the answer; ``self.last`` describes the turn when done."""
        conversation_id = self.ensure_conversation(title=text.strip().splitlines()[0] if text.strip() else "")
        self.last = turn = Turn(model=self.engine.name)
        turn.user_message_id = self.store.add_message(conversation_id, "user", text)
        yield from self._answer(turn, max_tokens, temperature)

    def regenerate(self, *, max_tokens: int | None = None, temperature: float | None = None) -> Iterator[Delta]:
        """Drop the last answer and answer the last question again."""
        if self.conversation_id is None:
            return
        messages = self.store.messages(self.conversation_id)
        if messages and messages[-1]["role"] == "assistant":
            self.store.delete_message(messages[-1]["id"])
        self.last = turn = Turn(model=self.engine.name)
        yield from self._answer(turn, max_tokens, temperature)

    def _answer(self, turn: Turn, max_tokens: int | None, temperature: float | None) -> Iterator[Delta]:
        assert self.conversation_id is not None
        settings = self.config.generation
        history = self.history()
        turn.answer_message_id = self.store.add_message(
            self.conversation_id, "assistant", "", model=turn.model, complete=0
        )
        pieces: list[str] = []
        last_flush = time.monotonic()
        try:
            for delta in self.engine.stream(
                history,
                max_tokens=max_tokens or settings.max_tokens,
                temperature=settings.temperature if temperature is None else temperature,
                conversation=self.conversation_id,
            ):
                pieces.append(delta.text)
                yield delta
                if time.monotonic() - last_flush >= self.flush_interval:
                    self.store.update_message(turn.answer_message_id, content="".join(pieces))
                    last_flush = time.monotonic()
        finally:
            self._finish(turn, "".join(pieces))

    def _finish(self, turn: Turn, answer: str) -> None:
        stats = turn.stats = self.engine.stats
        turn.answer = answer
        turn.notes = list(stats.notes)
        self.store.update_message(
            turn.answer_message_id,
            content=answer,
            complete=1 if stats.finish_reason else 0,
            finish_reason=stats.finish_reason,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            ttft_s=round(stats.ttft_s, 4),
            tokens_per_s=round(stats.tokens_per_s, 2),
            route=json.dumps(turn.route) if turn.route else "",
        )
