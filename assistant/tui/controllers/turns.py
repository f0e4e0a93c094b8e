"""A turn: send a message (or regenerate, continue, edit and resend it) and stream the answer onto the screen.

The session's stream runs in a worker thread; :class:`AnswerStream` hands its pieces over and posts
``AnswerDelta`` and ``AnswerDone`` to the screen, which passes them on to :meth:`Turns.drain` and
:meth:`Turns.finish`. One answer streams at a time (``ChatView.generating``).
"""

from __future__ import annotations

import asyncio
from functools import partial

from textual.screen import Screen
from textual.timer import Timer

from assistant.chat import attach
from assistant.chat.attach import Attachment
from assistant.chat.session import Session
from assistant.config import Config
from assistant.tui.controllers.attachments import Attachments
from assistant.tui.controllers.base import Controller
from assistant.tui.controllers.conversations import Conversations
from assistant.tui.controllers.models import ModelReady, ModelSwitch
from assistant.tui.screens.escalation import approver
from assistant.tui.streaming import AnswerDone, AnswerStream
from assistant.tui.widgets.message import MessageView, ShownFile, message_meta, resume_note

DRAIN_S = 0.2  # pieces held back by the worker's rate limit reach the screen at least this often


class Turns(Controller):
    """Sends the user's messages and streams the answers into the chat."""

    def __init__(
        self,
        screen: Screen[None],
        session: Session,
        config: Config,
        *,
        attachments: Attachments,
        conversations: Conversations,
        model_switch: ModelSwitch,
    ) -> None:
        super().__init__(screen, session, config)
        self.attachments, self.conversations, self.model_switch = attachments, conversations, model_switch
        self.stream = AnswerStream()
        self.done = 0  # answers finished (or stopped) on this screen
        self.answer: MessageView | None = None  # the answer being streamed
        self._queued: tuple[str, str] | None = None  # ("send", text) or ("continue", "") asked before the model loaded
        self._quitting = False
        self._drain_timer: Timer | None = None

    async def submit(self, text: str) -> None:
        """Enter in the message box: send ``text`` now, or once the model has loaded."""
        if self.chat.generating:
            self.screen.notify("Still answering: press Esc to stop", severity="warning")
            return
        if not self.models.ready and self.models.error:
            self.screen.notify(self.model_switch.failure(), title="No model", severity="error", markup=False)
            return  # the message stays in the box
        if not self.models.ready:
            self.prompt.clear()
            self._queued = ("send", text)
            self.screen.notify("The model is still loading; your message goes out as soon as it is ready")
            return
        await self.send(text)

    async def send(self, text: str) -> None:
        """Send ``text`` (its ``@path`` files attached); a file that cannot go leaves the text in the box."""
        prompt, chat = self.prompt, self.chat
        editing = prompt.editing
        kept = [f.attachment() for f in editing.files] if editing is not None else []
        prepared = self.attachments.prepare(text, kept)
        if prepared is None:
            if not prompt.text:
                prompt.text = text
            return
        prompt.clear()
        question, attachments = prepared
        kind = "send"
        if editing is not None:
            await chat.remove_from(editing)
            prompt.cancel_edit()
            kind = "resend"
        new = self.session.conversation_id is None
        self.session.ensure_conversation(title=(question.strip() or text.strip()).splitlines()[0])
        shown = [ShownFile(a.name, a.size, a.tokens, a.text, a.sha256) for a in attachments]
        await chat.add(MessageView("user", question, files=shown))
        await self._begin(kind, attach.compose(question, attachments), attachments=attachments)
        if new:
            await self.conversations.refresh()

    async def regenerate(self) -> None:
        """Answer the last message again (the earlier answer stays as a version)."""
        chat = self.chat
        last = chat.last("assistant")
        if not self.models.ready or self.session.conversation_id is None or chat.last("user") is None:
            self.screen.notify("Nothing to regenerate yet", severity="warning")
            return
        if last is not None and last is chat.views()[-1]:
            await chat.remove_from(last)
        await self._begin("regenerate", "")

    async def continue_answer(self) -> None:
        """Carry on an incomplete last answer where it stopped (once the model has loaded)."""
        views = self.chat.views()
        if not views or not views[-1].resumable:
            self.screen.notify("No incomplete answer to continue", severity="warning")
        elif not self.models.ready and self.models.error:
            self.screen.notify(self.model_switch.failure(), title="No model", severity="error", markup=False)
        elif not self.models.ready:
            self._queued = ("continue", "")
            self.screen.notify("The model is still loading; the answer continues as soon as it is ready")
        else:
            await self._begin("continue", "", views[-1])

    async def model_loaded(self, event: ModelReady) -> None:
        """What was asked for while the model loaded goes out now, or back in the box if no model serves."""
        if event.error and not self.models.ready:
            if self._queued and self._queued[0] == "send" and not self.prompt.text:
                self.prompt.text = self._queued[1]
            self._queued = None
        elif not event.error and self._queued and not self.chat.generating:
            (kind, text), self._queued = self._queued, None
            await (self.send(text) if kind == "send" else self.continue_answer())

    def edit_last(self) -> None:
        """Put the last user message in the box to be changed and resent."""
        last = self.chat.last("user")
        if last is None:
            self.screen.notify("No message to edit yet", severity="warning")
            return
        self.prompt.start_edit(last)

    async def _begin(
        self, kind: str, text: str, view: MessageView | None = None, attachments: list[Attachment] | None = None
    ) -> None:
        """Stream an answer into a new message view, or (continuing) into ``view``."""
        chat = self.chat
        chat.offer_resume(None)
        if view is None:
            view = await chat.add(MessageView("assistant", meta=self.models.name))
        else:
            view.set_meta(f"{self.models.name} · continuing…")
        self.answer = view
        view.start_stream(self.session.reasoning_starts_inside())
        self.stream.begin()
        chat.generating = True
        self._drain_timer = self.screen.set_interval(DRAIN_S, self.drain)
        self.screen.run_worker(
            partial(self._generate, kind, text, attachments or []),
            name="generate",
            group="generate",
            exclusive=True,
            thread=True,
            exit_on_error=False,
        )

    def _generate(self, kind: str, text: str, attachments: list[Attachment]) -> None:
        """Runs in a thread: the session's stream for this kind of turn, pumped to the screen."""
        approve = approver(self.screen.app, lambda: self.session.last.route.get("reason", ""))
        if kind == "send":
            stream = self.session.send(text, approve=approve, attachments=attachments)
        elif kind == "resend":
            stream = self.session.resend(text, approve=approve, attachments=attachments)
        elif kind == "continue":
            stream = self.session.continue_()
        else:
            stream = self.session.regenerate(approve=approve)
        self.stream.pump(stream, self.screen.post_message)

    async def drain(self) -> None:
        """Append everything streamed so far to the answer on screen."""
        text = self.stream.take()
        if text and self.answer is not None:
            await self.answer.write(text)

    async def finish(self, event: AnswerDone) -> None:
        """The stream has ended: show the answer as stored, its figures and any notes."""
        if self._drain_timer is not None:
            self._drain_timer.stop()
        if self._quitting:  # the answer is stored; the screen is going away
            return
        await self.drain()
        chat, turn, view = self.chat, self.session.last, self.answer
        stored = self.session.message(turn.answer_message_id) if turn.answer_message_id else None
        if view is not None:
            await view.finish(turn.answer if not event.error else None)
            view.message_id = turn.answer_message_id or view.message_id
            view.set_meta(message_meta(stored) if stored else turn.model)
            view.set_sources(turn.grounding.sources)
            chat.offer_resume(stored, resume_note(self.config.ui.keys))
        user = chat.last("user")
        if user is not None and turn.user_message_id:
            user.message_id = turn.user_message_id
        chat.mark_versions(self.session.branch_points())
        self.answer = None
        chat.generating = False
        self.done += 1
        stats = turn.stats
        self.status.show(
            context_used=stats.context_used,
            n_ctx=stats.n_ctx or self.status.info.n_ctx,
            tokens_per_s=stats.tokens_per_s,
            ttft_s=stats.ttft_s,
            draft_acceptance=stats.acceptance,
            escalated=turn.escalated,
        )
        for note in turn.notes:
            self.screen.notify(note, severity="warning", markup=False)
        if event.error:
            self.screen.notify(event.error, title="Error", severity="error", markup=False)
        await self.conversations.refresh()

    def stop(self) -> None:
        """Esc: stop the answer (the partial answer is kept), or stop editing."""
        if self.chat.generating:
            self.stream.stop.set()
            self.session.cancel()  # stops the student or the teacher; the partial answer is kept
        elif self.prompt.editing is not None:
            self.prompt.clear()
            self.prompt.cancel_edit()

    async def stop_for_quit(self, timeout: float) -> None:
        """Stop the answer being streamed at its next token and wait (at most ``timeout`` s) until it is stored."""
        self._quitting = True
        if not self.stream.idle.is_set():
            self.stream.stop.set()
            self.session.cancel()
            await asyncio.to_thread(self.stream.idle.wait, timeout)
