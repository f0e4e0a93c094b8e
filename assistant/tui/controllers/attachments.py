"""Files in a message: ``@path`` in the message box (Tab completes the path) or the attach dialog.

Above the box a line names the files the message mentions with their token counts, or why one cannot go; the
files are counted in a thread (``FileCounts``), so typing never waits for a big file.
"""

from __future__ import annotations

from functools import partial

from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from assistant import AssistantError
from assistant.chat import attach
from assistant.chat.attach import Attachment
from assistant.chat.session import Session
from assistant.config import Config
from assistant.tui import mentions
from assistant.tui.controllers.base import Controller
from assistant.tui.file_counts import FileCounts
from assistant.tui.screens.dialogs import TextInputScreen

HINT_DELAY_S = 0.3  # the files named in the message box are counted this long after the last key


class HintReady(Message):
    """The line above the message box, worked out in a thread for the ``asked``-th change of the box."""

    def __init__(self, asked: int, line: Content) -> None:
        super().__init__()
        self.asked, self.line = asked, line


class Attachments(Controller):
    """Reads the files a message names, shows them above the message box, and asks for one to attach."""

    def __init__(self, screen: Screen[None], session: Session, config: Config) -> None:
        super().__init__(screen, session, config)
        self.counts = FileCounts(session)
        self._hint_timer: Timer | None = None
        self._asked = 0  # changes of the box whose hint was asked for; an older hint that arrives late is dropped

    @property
    def hint(self) -> Static:
        return self.screen.query_one("#attach-hint", Static)

    def prepare(self, text: str, kept: list[Attachment]) -> tuple[str, list[Attachment]] | None:
        """(the question, ``kept`` files and its ``@path`` files read and counted); None, with one line shown, if
        the message cannot go (a file cannot be read, or the message does not fit the model's context)."""
        question, paths = mentions.split(text)
        question = question.strip() if paths or kept else question
        try:
            attachments = [*kept, *(self.counts.read(path) for path in paths)]
            self.session.check_attachments(attachments, question)
        except AssistantError as exc:
            why = str(exc) if paths or kept else self._too_long(question)
            self.screen.notify(why, title="Not sent", severity="error", markup=False)
            return None
        return question, attachments

    def _too_long(self, question: str) -> str:
        """Why a message without files cannot go: its tokens against the model's context."""
        engine = self.session.engine
        tokens = len(engine.model.tokenize(question, first=False))
        return (
            f"your message is {tokens:,} tokens but the model's context holds {engine.n_ctx:,} with room for the "
            "answer; shorten it, or raise n_ctx"
        )

    def text_changed(self) -> None:
        """The message box changed: count its files once the typing pauses."""
        if self._hint_timer is not None:
            self._hint_timer.stop()
        self._hint_timer = self.screen.set_timer(HINT_DELAY_S, self.update_hint)

    def update_hint(self) -> None:
        """Work out the line above the box in a thread; ``show_hint`` puts it up."""
        self._hint_timer = None
        self._asked += 1
        work = partial(self._hint_in_thread, self._asked, self.prompt.text)
        self.screen.run_worker(work, name="hint", group="hint", thread=True, exit_on_error=False)

    def _hint_in_thread(self, asked: int, text: str) -> None:
        self.screen.post_message(HintReady(asked, self.hint_line(text)))

    def show_hint(self, event: HintReady) -> None:
        if event.asked == self._asked:
            self.hint.update(event.line)
            self.hint.set_class(not event.line.plain, "-hidden")

    def hint_line(self, text: str) -> Content:
        """The completions of the ``@path`` being typed, the files named with their token counts (or why one
        cannot go), and the path-like ``@words`` that name no file (they go as text)."""
        question, paths = mentions.split(text)
        typing = mentions.typing(text)
        parts = (
            [Content.assemble(("Tab: ", "bold"), "  ".join(mentions.tail(c) for c in typing[1][:12]))] if typing else []
        )
        if paths:
            parts.append(self._files_line(paths, question))
        loose = [f"@{word}" for word in mentions.not_files(text) if not typing or word != typing[0]]
        if loose:
            parts.append(Content(f"{', '.join(loose)}: no such file, sent as text (@@ writes an @)"))
        return Content(" · ").join(parts)

    def _files_line(self, paths: list[str], question: str) -> Content:
        try:
            files = [self.counts.read(path) for path in paths]
            if not self.models.ready:
                return Content(" · ".join(f"📎 {a.name} {a.size:,} bytes" for a in files) + " (tokens: model loading)")
            self.session.check_attachments(files, question)
            return Content(" · ".join(f"📎 {a.name} {a.tokens} tokens" for a in files))
        except AssistantError as exc:
            return Content.assemble(("⚠ ", "bold"), str(exc)).stylize("$text-error")

    def show_completions(self, candidates: list[str]) -> None:
        """Tab on an ``@path`` that has several completions (or none)."""
        if candidates:
            self.hint.update(Content.assemble(("Tab: ", "bold"), "  ".join(mentions.tail(c) for c in candidates)))
            self.hint.set_class(False, "-hidden")
        else:
            self.screen.notify("No file matches that path", severity="warning")

    async def attach(self) -> None:
        """Ask for a path (Tab completes it) and put ``@path`` in the message box (call it from a worker)."""
        path = await self.screen.app.push_screen_wait(
            TextInputScreen("Attach a file (its path; Tab completes)", "", suggester=mentions.PathSuggester())
        )
        if not path:
            return
        try:
            attach.read(path)
        except AssistantError as exc:
            self.screen.notify(str(exc), title="Not attached", severity="error", markup=False)
            return
        prompt, text, token = self.prompt, self.prompt.text, mentions.mention(path)
        prompt.text = f"{token} {text}" if text else f"{token} "
        prompt.move_cursor(prompt.document.end)
        prompt.focus()
        self.update_hint()
