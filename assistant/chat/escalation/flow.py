"""The escalation flow of one turn: the router decides, the user approves, the teacher answers or the student does.

Under policy ``ask`` or ``auto`` the router looks at the question and a short draft of the student's
answer. An escalated question (with the last ``context_turns`` turns the user allows, never the system
prompt) goes to the teacher, after the user approved the exact request under ``ask``; the teacher's
answer is stored with ``escalated=1``. If the teacher fails, the student answers and the turn carries
a one-line note. ``Turn.route`` records what was decided and why.

The session imports this module only when escalation is on: it loads the teacher's HTTP client.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from assistant.chat.escalation.router import Route, Router
from assistant.chat.escalation.teacher import EscalationRequest, RemoteTeacher, TeacherError
from assistant.chat.turn import Turn
from assistant.config import Config
from assistant.models.engine import Delta, Deltas, Stats
from assistant.storage.store import Store

Approve = Callable[[EscalationRequest], "bool | str"]  # True sends; False or a reason (str) declines
Student = Callable[[], Deltas]  # starts the on-device answer
TEACHER_CUT_OFF = "\n\n[the teacher's answer broke off; the on-device answer follows]\n\n"


class Escalation:
    """One turn under policy ``ask`` or ``auto``; the teacher is set up (and checked) when it is made."""

    def __init__(self, config: Config, policy: str, approve: Approve | None = None) -> None:
        self.settings, self.policy, self.approve = config.escalation, policy, approve
        self.teacher = RemoteTeacher(config.teacher)

    def answer(
        self,
        turn: Turn,
        history: list[dict[str, str]],
        sampling: dict[str, Any],
        student: Student,
        store: Store,
        cancelled: threading.Event,
    ) -> Deltas:
        """The answer to the last message of ``history``, from the student or the teacher; ``turn`` says which.

        The stored answer is marked as the teacher's (in ``store``) as soon as its first piece arrives.
        """
        started = time.perf_counter()
        deltas = student()
        draft, route = self._route(history[-1]["content"], deltas)
        turn.route = route.to_dict()
        if not route.escalate or cancelled.is_set():
            yield from _prepend(draft, deltas)
            return
        deltas.close()  # nothing is held (engine lock, user's time) while asking or waiting on HTTP
        request = self.teacher.request(
            self._context(history), max_tokens=sampling["max_tokens"], temperature=sampling["temperature"]
        )
        verdict = self._approval(request) if self.policy == "ask" else True
        if verdict is not True:
            turn.route["declined"] = True
            turn.notes.append(f"{verdict}: nothing was sent; answered on-device")
            yield from student()
            return
        yield from self._from_teacher(turn, request, student, store, cancelled, started)

    def _route(self, question: str, student: Deltas) -> tuple[list[Delta], Route]:
        """The router's decision; the student's draft (if one was needed) is returned for reuse."""
        router = Router(self.settings)
        if not router.needs_draft(question):
            return [], router.decide(question, self.policy)
        draft = list(itertools.islice(student, max(1, self.settings.draft_tokens)))
        return draft, router.decide(question, self.policy, draft)

    def _context(self, history: list[dict[str, str]]) -> list[dict[str, str]]:
        """What the teacher may see: the question and the last ``context_turns`` turns, no system prompt."""
        chat = [m for m in history if m["role"] != "system"]
        return chat[-(2 * max(0, self.settings.context_turns) + 1) :]

    def _approval(self, request: EscalationRequest) -> bool | str:
        """True to send; otherwise why not (the approver's own reason, or that it declined)."""
        verdict = self.approve(request) if self.approve is not None else "no way to ask for approval"
        return verdict if verdict is True or isinstance(verdict, str) else "escalation declined"

    def _from_teacher(
        self,
        turn: Turn,
        request: EscalationRequest,
        student: Student,
        store: Store,
        cancelled: threading.Event,
        started: float,
    ) -> Deltas:
        """Stream the teacher's answer; if it fails, the student answers and a note says why."""
        stream = self.teacher.stream(request)
        stats = Stats(finish_reason="cancelled")
        pieces: list[str] = []
        try:
            try:
                first = next(stream, None)
            except TeacherError as exc:
                yield from _fallback(turn, f"teacher unavailable ({exc})", student)
                return
            if first is None:
                yield from _fallback(turn, "the teacher sent an empty answer", student)
                return
            stats.ttft_s = time.perf_counter() - started
            on_device = turn.model
            turn.escalated, turn.model, turn.stats = True, self.teacher.model, stats
            store.update_message(turn.answer_message_id, model=self.teacher.model, escalated=1)
            try:
                for piece in itertools.chain([first], stream):
                    pieces.append(piece)
                    yield Delta(piece, -1, 0.0, 0.0)
            except TeacherError as exc:
                turn.escalated, turn.model = False, on_device
                turn.route["teacher_partial_chars"] = len("".join(pieces))
                yield Delta(TEACHER_CUT_OFF, -1, 0.0, 0.0)
                yield from _fallback(turn, f"the teacher's answer broke off ({exc})", student)
                return
            stats.finish_reason = "cancelled" if cancelled.is_set() else self.teacher.finish_reason or "stop"
        finally:
            stream.close()
            _timings(stats, len(pieces), started)


def _fallback(turn: Turn, why: str, student: Student) -> Deltas:
    turn.notes.append(f"{why}; answered on-device")
    turn.route["fallback"] = why
    yield from student()


def _prepend(draft: list[Delta], student: Deltas) -> Deltas:
    """The student's draft, then the rest of the same stream (no restart)."""
    try:
        yield from draft
        yield from student
    finally:
        student.close()


def _timings(stats: Stats, pieces: int, started: float) -> None:
    """The teacher's figures: its stream's chunks are about one token each."""
    stats.total_s = time.perf_counter() - started
    stats.completion_tokens = pieces
    decode_s = stats.total_s - stats.ttft_s
    stats.tokens_per_s = (pieces - 1) / decode_s if pieces > 1 and decode_s > 0 else 0.0
