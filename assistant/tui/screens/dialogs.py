"""Small modal dialogs: confirm, ask for one line of text, pick one of a list. Each says what Enter does."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no; Esc means no. Enter means no too, unless ``default_yes`` (for a choice that loses nothing)."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes", show=False)]

    def __init__(
        self, question: str, confirm: str = "Delete", cancel: str = "Cancel", default_yes: bool = False
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.question, self.confirm, self.cancel, self.default_yes = question, confirm, cancel, default_yes

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog"):
            yield Label(Content(self.question), classes="dialog-text")
            default = self.confirm if self.default_yes else self.cancel
            hint = f"Enter: {default} (the default) · Y: {self.confirm} · Esc: {self.cancel}"
            yield Label(Content(hint), classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm, variant="primary" if self.default_yes else "error", id="yes")
                yield Button(self.cancel, variant="default" if self.default_yes else "primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.default_yes else "#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextInputScreen(ModalScreen[str | None]):
    """One line of text (e.g. a new title); Esc cancels. With a ``suggester``, Tab takes its suggestion."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("tab", "complete", show=False)]

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

    def action_complete(self) -> None:
        """Tab: take the suggestion shown after the text (as Right does at its end); without one, the next field."""
        field = self.query_one("#value", Input)
        before = field.value
        if self.suggester is not None and field.has_focus:
            field.action_end()
            field.action_cursor_right()
        if field.value == before:
            self.focus_next()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._done(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self._done(event.button.id == "ok")

    def _done(self, ok: bool) -> None:
        value = self.query_one("#value", Input).value.strip()
        self.dismiss(value if ok and value else None)


class PickerScreen(ModalScreen[str | None]):
    """Pick one option of a list: returns its id, or None (Esc). The list opens on ``highlighted``, so the first
    Enter picks, even one pressed before the list has focus; a hint under the list says what Enter does."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("enter", "pick", show=False)]

    def __init__(self, title: Content, options: list[Option], highlighted: int, hint: str, list_id: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_line, self.options, self.highlighted, self.hint, self.list_id = (
            title,
            options,
            highlighted,
            hint,
            list_id,
        )

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog wide"):
            yield Label(self.title_line)
            options = OptionList(*self.options, id=self.list_id, classes="picker-list")
            options.highlighted = self.highlighted
            yield options
            yield Label(Content(self.hint), classes="dialog-hint")

    def action_pick(self) -> None:
        option = self.query_one(OptionList).highlighted_option
        if option is not None and not option.disabled:
            self.dismiss(option.id)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
