"""Which stored conversation a request to `assistant serve` continues, and the session that answers it.

OpenAI clients resend the whole growing message list each turn. The server remembers each whole
answer's conversation under the fingerprint of the messages that will continue it, so the next
request finds it: the session then renders the stored history, which the engine's KV cache
already holds, and only the new question is evaluated. A request that matches nothing starts a
new stored conversation holding the turns it sent before its question (in one transaction, with a look at
the stop flag every ``CHECK_EVERY`` messages: 3,000 of them take about a second). A request the
engine refuses (a message too long for the window) leaves the store as it found it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

from assistant.chat.persona import Persona
from assistant.chat.session import Session
from assistant.config import Config
from assistant.models.manager import ModelManager
from assistant.server.request import ChatRequest
from assistant.storage.store import Store

VIA = "API"
CHECK_EVERY = 64  # messages stored between two looks at the stop flag


class Stopped(Exception):
    """The request was stopped while its earlier turns were being stored; none of them was."""


class Conversations:
    """The last ``keep`` conversations' fingerprints; without history (an in-memory store) forgotten ones are
    deleted, so memory stays bounded."""

    def __init__(self, store: Store, models: ModelManager, config: Config, history: bool, keep: int = 256) -> None:
        self.store, self.models, self.config, self.history, self.keep = store, models, config, history, keep
        self._open: OrderedDict[str, int] = OrderedDict()

    def session(
        self, request: ChatRequest, persona: Persona | None, stopped: Callable[[], bool] = lambda: False
    ) -> tuple[Session, bool]:
        """A session on the conversation ``request`` continues (or a new one), as the named persona if any, and
        whether it continues one; ``Stopped`` if ``stopped()`` turns true while a new one's turns are stored."""
        conversation_id = self._open.pop(request.key(), None)
        session = Session(self.store, self.models, self.config, conversation_id, persona=persona)
        if conversation_id is None:
            self._start(session, request, stopped)
        return session, conversation_id is not None

    def _start(self, session: Session, request: ChatRequest, stopped: Callable[[], bool]) -> None:
        """A new conversation holding the turns the client sent before its question."""
        first = next((text for role, text in request.earlier if role == "user"), request.question).strip()
        title = first.splitlines()[0] if first else ""
        conversation_id = session.ensure_conversation(title=title, system=request.system or None)
        route = json.dumps({"via": VIA})

        def store_all() -> None:
            for i, (role, text) in enumerate(request.earlier):
                if i % CHECK_EVERY == 0 and stopped():
                    raise Stopped  # rolls back the messages stored so far
                model = request.model if role == "assistant" else ""
                self.store.add_message(conversation_id, role, text, model=model, route=route)

        try:
            self.store.atomic(store_all)
        except Stopped:
            self.store.delete_conversation(conversation_id)
            raise

    def refused(self, request: ChatRequest, session: Session, continued: bool) -> None:
        """Undo a turn the engine refused: its question and empty answer go, and so does a conversation this
        request started; one it ``continued`` can be continued again."""
        conversation_id = session.conversation_id
        if conversation_id is None:
            return
        if not continued:
            self.store.delete_conversation(conversation_id)
            return
        for message_id in (session.last.user_message_id, session.last.answer_message_id):
            if message_id:
                self.store.delete_message(message_id)
        self._open[request.key()] = conversation_id

    def finished(self, request: ChatRequest, answer: str, conversation_id: int, whole: bool) -> None:
        """Remember a whole answer's conversation under the messages that will continue it."""
        if whole:
            self._open[request.key(answer)] = conversation_id
        elif not self.history:
            self._drop(conversation_id)
        while len(self._open) > self.keep:
            self._drop(self._open.popitem(last=False)[1])

    def _drop(self, conversation_id: int) -> None:
        self.models.forget(conversation_id)
        if not self.history:
            self.store.delete_conversation(conversation_id)
