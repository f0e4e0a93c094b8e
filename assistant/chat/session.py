"""One conversation's turns: the session ties the store and the engine together for the UI, the CLI and the server.

A turn: store the user's message, stream the answer from the engine, write the answer as it grows (at
most every ``flush_interval`` seconds, and at the end). Under an escalation policy other than ``never``
the answer comes through the escalation flow (``assistant.chat.escalation.flow``), which may hand the
question to the remote teacher; policy ``never`` (the default) opens no connection and does not even load
the HTTP client. The session also gives the UI its conversations, versions and attachments.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant import AssistantError
from assistant.chat import attach, branches, grounding
from assistant.chat import persona as personas
from assistant.chat.attach import Attachment
from assistant.chat.grounding import Grounding
from assistant.chat.persona import Persona, check_fits
from assistant.chat.reasoning import answer_only, opens_in_prompt
from assistant.chat.turn import Turn, TurnOptions
from assistant.config import POLICIES, Config
from assistant.models.engine import ContextLengthError, Deltas, Engine
from assistant.models.manager import ModelManager
from assistant.storage.store import Conversation, Message, SearchHit, Store, StoreError

if TYPE_CHECKING:  # loaded by _escalation only when escalation is on (it loads the teacher's HTTP client)
    from assistant.chat.escalation.flow import Approve, Escalation

FLUSH_INTERVAL_S = 0.25
NO_OPTIONS = TurnOptions()


class Session:
    """A conversation with the on-device model, persisted in the store.

    ``models`` is the process's :class:`ModelManager` (or one engine, wrapped in a manager of its
    own); the session takes its engine from it at each turn, so a swap or a late first load is seen.
    A ``persona`` gives new conversations its system prompt and settings, and its name.
    ``sampling`` holds more engine settings for all the session's turns (``top_p``, ``stop``, ``seed``,
    ``grammar``), which the CLI and the tests may set; a turn's own ``TurnOptions`` go on top.
    """

    def __init__(
        self,
        store: Store,
        models: ModelManager | Engine,
        config: Config,
        conversation_id: int | None = None,
        persona: Persona | None = None,
        documents: Sequence[Path] = (),
    ) -> None:
        self.store, self.config = store, config
        self.documents = list(documents)  # answers are grounded in these files (else in the persona's docs, if any)
        self.index_progress: grounding.Progress | None = None  # told (done, total) while the documents are indexed
        self.models = models if isinstance(models, ModelManager) else ModelManager(config, store, models)
        self.conversation_id = conversation_id
        self.persona = persona  # the conversation's: new ones take its system prompt and settings, and record its name
        self.picked = persona  # the persona new conversations start with (``use_persona``)
        self.persona_problem = ""  # why the persona of the conversation opened last could not be read
        self._stale_told = False  # a stale persona's note goes with the first turn as it (see _persona_notes)
        self.last = Turn()
        self.flush_interval = FLUSH_INTERVAL_S
        self.sampling: dict[str, Any] = {}  # the default engine settings of every turn (top_p, stop, seed, grammar)
        self._cancel = threading.Event()

    @property
    def engine(self) -> Engine:
        """The engine serving now (``NoModelError`` if no model has loaded)."""
        return self.models.engine

    # -- conversations
    def conversations(self) -> list[Conversation]:
        """Every conversation, newest first."""
        return self.store.conversations()

    def latest(self) -> int | None:
        return self.store.latest_conversation_id()

    def open(self, conversation_id: int | None) -> list[Message]:
        """Make ``conversation_id`` the current one (None: a new, not yet stored one, as the persona picked for new
        chats); its messages. A stored conversation brings its persona back, read afresh (it may have been edited,
        distilled or gone stale since): ``persona_problem`` says why not, when it cannot be read."""
        self.conversation_id = conversation_id
        if conversation_id is None:
            self._adopt(self.picked)
            return []
        name = self.store.conversation(conversation_id).persona
        self.persona_problem = ""
        try:
            self._adopt(personas.load(name) if name else None)
        except AssistantError as exc:
            self._adopt(None)
            self.persona_problem = f"persona {name!r} cannot be read ({exc}); this chat goes on without it"
        return self.store.messages(conversation_id)

    def _adopt(self, persona: Persona | None) -> None:
        if (self.persona.name if self.persona else "") != (persona.name if persona else ""):
            self._stale_told = False
        self.persona = persona

    def new(self) -> None:
        """Start a new conversation; it is stored with its first message."""
        self.open(None)

    def title(self, conversation_id: int) -> str:
        return self.store.conversation(conversation_id)["title"] or ""

    def rename(self, conversation_id: int, title: str) -> None:
        """Give a conversation a new title (its place in the list, by last activity, is kept)."""
        conversation = self.store.conversation(conversation_id)
        self.store.update_conversation(conversation_id, title=title, updated=conversation["updated"])

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages; deleting the current one starts a new one."""
        self.store.delete_conversation(conversation_id)
        self.models.forget(conversation_id)
        if conversation_id == self.conversation_id:
            self.new()

    def use_persona(self, persona: Persona | None) -> None:
        """Chat as ``persona`` (None: the plain assistant) from a new conversation on."""
        self.picked, self.persona, self._stale_told = persona, persona, False
        self.new()

    def set_system_prompt(self, text: str) -> None:
        """This conversation's system prompt (a new conversation takes the configured one)."""
        if self.conversation_id is not None:
            conversation = self.store.conversation(self.conversation_id)
            self.store.update_conversation(self.conversation_id, system=text, updated=conversation["updated"])

    def search(self, query: str, limit: int = 30) -> list[SearchHit]:
        """Full-text search over every conversation's messages."""
        return self.store.search(query, limit=limit)

    def message(self, message_id: int) -> Message:
        return self.store.message(message_id)

    def ensure_conversation(self, title: str = "", system: str | None = None) -> int:
        """The current conversation, stored now if it is new.

        ``system``: a caller's system prompt (a server's client), after the persona's or instead of the configured one.
        """
        if self.conversation_id is None:
            self.check_persona_fits()
            self.conversation_id = self.store.new_conversation(
                title=title[:80],
                model=self.models.name,
                system=self._new_system(system),
                persona=self.persona.name if self.persona else "",
            )
        return self.conversation_id

    def _new_system(self, caller: str | None = None) -> str:
        if self.persona:
            return "\n\n".join(part for part in (self.persona.runtime_system(), caller) if part)
        return self.config.generation.system if caller is None else caller

    def check_persona_fits(self) -> None:
        """A prompted persona whose context does not fit the engine's window is refused, never cut."""
        if self.persona and (system := self.persona.runtime_system()):
            check_fits(self.persona, len(self.engine.model.tokenize(system, first=True)), self.engine.n_ctx)

    def _persona_notes(self) -> list[str]:
        """Once per session and persona: why a stale persona answers prompted (``Persona.stale_note``)."""
        if self.persona is None or self.persona.state != "stale" or self._stale_told:
            return []
        self._stale_told = True
        return [self.persona.stale_note()]

    @property
    def system_prompt(self) -> str:
        if self.conversation_id is None:
            return self._new_system()
        return self._persona_system(self.store.conversation(self.conversation_id))

    def _persona_system(self, conversation: Conversation) -> str:
        """A stored conversation's system prompt. One its persona's student started holds none of the persona's
        prompt (the student learnt it); once the persona runs prompted again (stale, or its student dropped), the
        persona's prompt goes first, or the conversation would go on without it."""
        stored, persona = conversation.system, self.persona
        if persona is None or persona.name != conversation.persona or persona.distilled:
            return stored
        runtime = persona.runtime_system()
        by_student = bool(persona.student) and conversation.model.lower() == persona.student.lower()
        if (stored and not by_student) or stored.startswith(runtime):  # it holds the persona's prompt, or never had one
            return stored
        return "\n\n".join(part for part in (runtime, stored) if part)

    def history(self) -> list[dict[str, str]]:
        """Messages for the model: the system prompt, then the stored turns.

        Earlier answers go back without their reasoning blocks (as reasoning models expect); the
        last message is kept whole, since ``continue_`` may be carrying it on.
        """
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        if self.conversation_id is not None:
            stored = [m for m in self.store.messages(self.conversation_id) if m.role in ("user", "assistant")]
            messages += [
                {"role": m.role, "content": answer_only(m.content) if m.role == "assistant" else m.content}
                for m in stored[:-1]
            ] + [m.as_chat() for m in stored[-1:]]
        return messages

    # -- a turn
    def send(
        self,
        text: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        escalate: str | None = None,
        approve: Approve | None = None,
        attachments: list[Attachment] | None = None,
        options: TurnOptions = NO_OPTIONS,
        grounded: Grounding | None = None,
    ) -> Deltas:
        """Store the question, stream the answer; ``self.last`` describes the turn when done.

        ``escalate`` overrides the escalation policy for this turn; ``approve`` is asked (with
        the exact request) before anything is sent under the ``ask`` policy. ``attachments`` are
        recorded with the question, whose text already holds their blocks (``attach.compose``).
        ``options``: this turn's settings from a server's request. ``grounded``: what the documents add to the
        question, when the caller has shown it already (``ground``).
        """
        escalation = self._escalation(escalate, approve)
        question = attach.question_of(text, attachments or [])
        title = question.strip().splitlines()[0][:80] if question.strip() else ""
        history = [*self.history(), {"role": "user", "content": text}]
        self.last = turn = Turn(model=self.models.label(self.engine.name))
        if self.conversation_id is None:
            self.check_persona_fits()
        turn.notes = self._persona_notes()
        turn.grounding = grounded or self.ground(history, self._sampling(max_tokens, temperature)["max_tokens"])
        history[-1] = {"role": "user", "content": turn.grounding.message(text)}
        turn.notes += turn.grounding.notes
        # one transaction: a failed write (a full disk) leaves no empty conversation and no unanswered question
        self.conversation_id, turn.user_message_id, turn.answer_message_id = self.store.start_turn(
            self.conversation_id,
            text,
            turn.model,
            title=title,
            system=self._new_system(),
            persona=self.persona.name if self.persona else "",
        )
        attach.save(self.store, turn.user_message_id, attachments or [])
        yield from self._answer(turn, history, escalation, self._sampling(max_tokens, temperature, options), options)

    def regenerate(
        self,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        escalate: str | None = None,
        approve: Approve | None = None,
    ) -> Deltas:
        """Answer the last question again; the earlier answer is kept as another version (``branches``)."""
        if self.conversation_id is None:
            return
        escalation = self._escalation(escalate, approve)
        messages = self.store.messages(self.conversation_id)
        if messages and messages[-1].role == "assistant":
            branches.fork(self.store, self.conversation_id, messages[-2].id if len(messages) > 1 else 0)
        self.last = turn = Turn(model=self.models.label(self.engine.name))
        history = self.history()
        if history and history[-1]["role"] == "user":
            turn.grounding = self.ground(history, self._sampling(max_tokens, temperature)["max_tokens"])
            history[-1] = {"role": "user", "content": turn.grounding.message(history[-1]["content"])}
        turn.answer_message_id = self.store.add_message(
            self.conversation_id, "assistant", "", model=turn.model, complete=0
        )
        yield from self._answer(turn, history, escalation, self._sampling(max_tokens, temperature))

    def continue_(self, *, max_tokens: int | None = None, temperature: float | None = None) -> Deltas:
        """Carry on the last answer where it stopped (a crash, a stop or the token limit).

        The model sees the history with the partial answer as the start of its own turn; what it
        adds is appended to the same stored message, which is marked complete when it finishes.
        Only the new text is yielded. Always on-device (a teacher cannot resume a partial answer).
        """
        self.last = turn = Turn(model=self.models.label(self.engine.name))
        messages = self.store.messages(self.conversation_id) if self.conversation_id is not None else []
        if not messages or not resumable(messages[-1]):
            raise AssistantError("no incomplete answer to continue")
        last = messages[-1]
        turn.answer_message_id = last.id
        turn.route = json.loads(last.route) if last.route else {}
        self.store.update_message(last.id, complete=0, finish_reason="")  # a crash now leaves it resumable
        sampling = self._sampling(max_tokens, temperature)
        history = self.history()
        if len(history) > 1 and history[-2]["role"] == "user":  # the question again with what the documents add
            turn.grounding = self.ground(history[:-1], sampling["max_tokens"])  # (the same passages: the cached
            history[-2] = {"role": "user", "content": turn.grounding.message(history[-2]["content"])}  # prompt)
        stream = self.engine.stream(history, conversation=self.conversation_id, continue_final=True, **sampling)
        yield from self._relay(turn, stream, earlier=last.content, earlier_tokens=last.completion_tokens or 0)

    def resend(self, text: str, **kwargs: Any) -> Deltas:
        """Edit-and-resend: ask ``text`` in place of the last question; the earlier one and its answer are kept
        as another version (``branches``)."""
        if self.conversation_id is not None:
            messages = self.store.messages(self.conversation_id)
            users = [m.id for m in messages if m.role == "user"]
            if users:
                before = [m.id for m in messages if m.id < users[-1]]
                branches.fork(self.store, self.conversation_id, before[-1] if before else 0)
        yield from self.send(text, **kwargs)

    def document_paths(self) -> list[Path]:
        """The files answers are grounded in: the caller's (``ask --docs``), else the persona's (``persona --docs``)."""
        return self.documents or [Path(p) for p in (self.persona.docs if self.persona else [])]

    def ground(self, history: list[dict[str, str]], max_tokens: int | None = None) -> Grounding:
        """What the documents add to the last message of ``history`` (``chat.grounding``); nothing without any."""
        paths = self.document_paths()
        if not paths:
            return Grounding()
        limit = max_tokens or self._sampling(None, None)["max_tokens"]
        return grounding.ground(self.store, paths, history, self.engine, limit, self.index_progress)

    def cancel(self) -> None:
        """Stop the answer being streamed (the student's or the teacher's); the partial answer is kept."""
        self._cancel.set()
        self.models.cancel()

    def reasoning_starts_inside(self) -> bool:
        """Whether the model's chat template opens the ``<think>`` block in the prompt (answers start inside it)."""
        return opens_in_prompt(self.engine.model.template.render([{"role": "user", "content": "?"}]))

    def check_attachments(self, attachments: list[Attachment], question: str) -> None:
        """Count each file's tokens with the model that answers; refuse a message that cannot fit (one line)."""
        attach.count_and_check(attachments, question, self.engine, self._sampling(None, None)["max_tokens"])

    def attachments(self, message_id: int) -> list[attach.AttachmentRecord]:
        """The files recorded with a stored message (name, size, sha256, tokens)."""
        return attach.of_message(self.store, message_id)

    def branch_points(self) -> list[branches.BranchPoint]:
        """Where this conversation has other versions, and which one is on screen."""
        return branches.points(self.store, self.conversation_id) if self.conversation_id is not None else []

    def switch_version(self, parent_id: int, position: int) -> None:
        """Show version ``position`` of the branch point after ``parent_id``; the next turn continues from it."""
        if self.conversation_id is not None:
            branches.switch(self.store, self.conversation_id, parent_id, position)

    # -- the turn's machinery
    def _escalation(self, override: str | None, approve: Approve | None) -> Escalation | None:
        """This turn's escalation flow, None under ``never``; the policy and the teacher are checked now, before
        anything is stored."""
        policy = override or self.config.escalation.policy
        if policy not in POLICIES:
            raise AssistantError(f"unknown escalation policy {policy!r} (use {', '.join(POLICIES)})")
        if policy == "never":
            return None
        from assistant.chat.escalation.flow import Escalation  # deliberately lazy: it loads httpx

        return Escalation(self.config, policy, approve)

    def _sampling(
        self, max_tokens: int | None, temperature: float | None, options: TurnOptions = NO_OPTIONS
    ) -> dict[str, Any]:
        """The engine settings of a turn: the session's, the turn's options', then max_tokens and temperature (given,
        or the persona's, or the configured ones)."""
        settings, persona = self.config.generation, self.persona
        if temperature is None:
            temperature = persona.temperature if persona and persona.temperature is not None else settings.temperature
        return {
            **self.sampling,
            **options.sampling(),
            "max_tokens": max_tokens or (persona.max_tokens if persona else None) or settings.max_tokens,
            "temperature": temperature,
        }

    def _answer(
        self,
        turn: Turn,
        history: list[dict[str, str]],
        escalation: Escalation | None,
        sampling: dict[str, Any],
        options: TurnOptions = NO_OPTIONS,
    ) -> Deltas:
        """Answer the last message of ``history`` into the stored (empty) answer ``turn.answer_message_id``."""

        def student() -> Deltas:
            return self.engine.stream(history, conversation=self.conversation_id, **sampling)

        if escalation is None:
            turn.route = {"policy": "never", "escalate": False, "reason": "answered on-device"}
            deltas = student()
        else:
            deltas = escalation.answer(turn, history, sampling, student, self.store, self._cancel)
        yield from self._relay(turn, deltas, options=options)

    def _relay(
        self,
        turn: Turn,
        deltas: Deltas,
        *,
        earlier: str = "",
        earlier_tokens: int = 0,
        options: TurnOptions = NO_OPTIONS,
    ) -> Deltas:
        """Yield ``deltas``, writing the growing answer (after ``earlier``, a continued answer's text) to the store
        at most every ``flush_interval``, and whole at the end (``_finish``)."""
        self._cancel.clear()
        flushed = time.monotonic()
        pieces, failed, refused = [earlier], False, False
        try:
            for delta in deltas:
                pieces.append(delta.text)
                yield delta
                if time.monotonic() - flushed >= self.flush_interval:
                    self.store.update_message(turn.answer_message_id, content="".join(pieces))
                    flushed = time.monotonic()
                if self._cancel.is_set():
                    break
        except StoreError:  # a full disk: the answer so far is kept, marked failed
            failed = True
            raise
        except ContextLengthError:  # refused before a token: the question is kept, no empty answer to continue
            refused = not "".join(pieces)
            raise
        finally:
            deltas.close()
            if refused:
                self.store.delete_message(turn.answer_message_id)
            else:
                self._finish(turn, "".join(pieces), earlier_tokens, failed, options)

    def _finish(
        self, turn: Turn, answer: str, earlier_tokens: int = 0, failed: bool = False, options: TurnOptions = NO_OPTIONS
    ) -> None:
        """Write the final answer and its stats; ``earlier_tokens`` were generated before a continue.

        ``failed``: a write failed mid-answer (a full disk); the answer is stored as far as it got, marked
        ``failed``, using the store's reserve if need be.
        """
        stats = turn.stats = turn.stats if turn.escalated else self.engine.stats
        turn.answer = answer
        turn.notes = [*stats.notes, *turn.notes]
        if not turn.escalated and stats.model:  # the model that answered (a swap may follow the turn's start)
            turn.model = self.models.label(stats.model)
        if options.via:
            turn.route = {**turn.route, "via": options.via, "answered_by": turn.model}
        turn.model = options.model_label or turn.model
        finish_reason = "failed" if failed else stats.finish_reason
        self.store.update_message(
            turn.answer_message_id,
            reserve=failed,
            content=answer,
            model=turn.model,
            escalated=int(turn.escalated),
            complete=1 if finish_reason else 0,
            finish_reason=finish_reason,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=earlier_tokens + stats.completion_tokens,
            ttft_s=round(stats.ttft_s, 4),
            tokens_per_s=round(stats.tokens_per_s, 2),
            route=json.dumps(turn.route) if turn.route else "",
            **({"sources": turn.grounding.dumps()} if turn.grounding.sources else {}),
        )


def resumable(message: Message) -> bool:
    """An answer that can be continued: cut off by a crash (never completed), a stop, the token limit or a
    failed write (a full disk)."""
    return message.role == "assistant" and (
        not message.complete or message.finish_reason in ("cancelled", "length", "failed")
    )
