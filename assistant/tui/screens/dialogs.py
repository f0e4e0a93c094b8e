"""Small modal dialogs: confirm, and ask for one line of text."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no; Esc means no."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes", show=False)]

    def __init__(self, question: str, confirm: str = "Delete") -> None:
        super().__init__(classes="dialog-screen")
        self.question, self.confirm = question, confirm

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog"):
            yield Label(Content(self.question), classes="dialog-text")
            hint = f"Enter: Cancel (the default) · Y: {self.confirm} · Esc: Cancel"
            yield Label(Content(hint), classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm, variant="error", id="yes")
                yield Button("Cancel", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextInputScreen(ModalScreen[str | None]):
    """One line of text (e.g. a new title); Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, prompt: str, value: str = "", suggester: Suggester | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.prompt, self.value, self.suggester = prompt, value, suggester

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog"):
            yield Label(Content(self.prompt), classes="dialog-text")
            yield Input(self.value, id="value", suggester=self.suggester)
            yield Label(Content("Enter: OK · Esc: Cancel"), classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._done(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self._done(event.button.id == "ok")

    def _done(self, ok: bool) -> None:
        value = self.query_one("#value", Input).value.strip()
        self.dismiss(value if ok and value else None)
