"""Files in a message: ``@path`` in the message box (Tab completes the path) or the attach dialog.

Above the box a line names the files the message mentions with their token counts, or why one cannot go.
"""

from __future__ import annotations

from textual.content import Content
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
from assistant.tui.screens.dialogs import TextInputScreen

HINT_DELAY_S = 0.3  # the files named in the message box are counted this long after the last key


class Attachments(Controller):
    """Reads the files a message names, shows them above the message box, and asks for one to attach."""

    def __init__(self, screen: Screen[None], session: Session, config: Config) -> None:
        super().__init__(screen, session, config)
        self._hint_timer: Timer | None = None

    @property
    def hint(self) -> Static:
        return self.screen.query_one("#attach-hint", Static)

    def prepare(self, text: str, kept: list[Attachment]) -> tuple[str, list[Attachment]] | None:
        """(the question, ``kept`` files and its ``@path`` files read and counted); None, with one line shown,
        if a file cannot go."""
        question, paths = mentions.split(text)
        question = question.strip() if paths or kept else text
        try:
            attachments = [*kept, *(attach.read(path) for path in paths)]
            if attachments:
                self.session.check_attachments(attachments, question)
        except AssistantError as exc:
            self.screen.notify(str(exc), title="Not sent", severity="error", markup=False)
            return None
        return question, attachments

    def text_changed(self) -> None:
        """The message box changed: count its files once the typing pauses."""
        if self._hint_timer is not None:
            self._hint_timer.stop()
        self._hint_timer = self.screen.set_timer(HINT_DELAY_S, self.update_hint)

    def update_hint(self) -> None:
        """Above the box: the files the message names with their token counts (or why one cannot go)."""
        self._hint_timer = None
        text = self.prompt.text
        question, paths = mentions.split(text)
        typing = mentions.typing(text)  # an @path being typed that names no file yet: its completions, not an error
        if typing is not None:
            paths = [p for p in paths if p != typing[0]]
        line = Content("")
        if typing is not None and not paths:
            found = typing[1]
            line = (
                Content.assemble(("Tab: ", "bold"), "  ".join(mentions.tail(c) for c in found[:12]))
                if found
                else Content("no file matches that path yet")
            )
        elif paths:
            try:
                files = [attach.read(path) for path in paths]
                if self.models.ready:
                    self.session.check_attachments(files, question)
                    line = Content(" · ".join(f"📎 {a.name} {a.tokens} tokens" for a in files))
                else:
                    named = " · ".join(f"📎 {a.name} {a.size:,} bytes" for a in files)
                    line = Content(named + " (tokens: model loading)")
            except AssistantError as exc:
                line = Content.assemble(("⚠ ", "bold"), str(exc)).stylize("$text-error")
        hint = self.hint
        hint.update(line)
        hint.set_class(not line.plain, "-hidden")

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
        prompt, text = self.prompt, self.prompt.text
        prompt.text = f"@{path} {text}" if text else f"@{path} "
        prompt.move_cursor(prompt.document.end)
        prompt.focus()
        self.update_hint()
