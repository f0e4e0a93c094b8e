"""The multi-line message box: Enter sends, Ctrl+J (or Shift+Enter where the terminal sends it) adds a line.

It also holds the message being edited (edit and resend) while the user changes it.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from assistant.tui import mentions, paste
from assistant.tui.widgets.message import MessageView


class PromptInput(TextArea):
    """A TextArea that sends on Enter; Up in an empty box edits the last message."""

    BINDINGS = [
        Binding("enter", "submit", "Send", id="send", priority=True),
        Binding("ctrl+j,shift+enter", "newline", "New line", id="newline", show=False, priority=True),
        Binding("tab", "complete_path", "Complete the @path", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EditLast(Message):
        """Up was pressed in an empty box."""

    class Completions(Message):
        """Tab on an ``@path`` that has several completions (or none)."""

        def __init__(self, candidates: list[str]) -> None:
            super().__init__()
            self.candidates = candidates

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)  # type: ignore[arg-type]
        self.editing: MessageView | None = None  # the user message being edited (Enter resends it)

    def start_edit(self, message: MessageView) -> None:
        """Put ``message`` in the box to be changed and resent (its files go again with it)."""
        self.editing = message
        self.text = message.source
        self.move_cursor(self.document.end)
        files = f" (with its {len(message.files)} file{'s' if len(message.files) > 1 else ''})" if message.files else ""
        self.border_title = f"editing your last message{files} · Enter resends · Esc cancels"
        self.focus()
        self.refresh_bindings()

    def cancel_edit(self) -> None:
        """Stop editing (the text stays in the box)."""
        if self.editing is not None:
            self.editing = None
            self.border_title = None
            self.refresh_bindings()

    async def _on_paste(self, event: events.Paste) -> None:
        """A paste is text: its control characters and escape sequences go (line ends and tabs stay). Textual
        calls this before ``TextArea._on_paste`` (each class's handler, subclass first), which inserts the text."""
        event.text = paste.clean(event.text)

    # Enter and Ctrl+J are priority bindings, which run before keys that arrived in the same read
    # are inserted (tmux send-keys, SSH, auto-typers): defer both until those keys are in the box.
    def action_submit(self) -> None:
        self.call_later(self._submit_now)

    def _submit_now(self) -> None:
        if self.text.strip():
            self.post_message(self.Submitted(self.text))

    def action_newline(self) -> None:
        self.call_later(self.insert, "\n")

    def action_cursor_up(self, select: bool = False) -> None:
        if not self.text and not select:
            self.post_message(self.EditLast())
            return
        super().action_cursor_up(select)

    def action_complete_path(self) -> None:
        """Tab after ``@partial/path`` completes it (as far as the matches agree); elsewhere Tab moves focus."""
        row, column = self.cursor_location
        path = mentions.partial(self.document.get_line(row)[:column])
        if path is None:
            self.screen.focus_next()
            return
        found = mentions.complete(path)
        extended = found[0] if len(found) == 1 else mentions.common_prefix(found)
        if len(found) == 1 and not extended.endswith("/") and any(c.isspace() for c in extended):
            self.replace(mentions.mention(extended) + " ", (row, column - len(path) - 1), (row, column))  # quoted
        elif len(extended) > len(path):
            self.insert(extended[len(path) :] + (" " if len(found) == 1 and not extended.endswith("/") else ""))
        if len(found) != 1:
            self.post_message(self.Completions(found))
