"""Settings: this conversation's system prompt, temperature, max tokens, theme, and the persona new chats use."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, TextArea


@dataclass
class SettingsValues:
    system: str
    system_as_default: bool
    temperature: float
    max_tokens: int
    theme: str
    persona: str = "-"  # a persona's name, or "-" for none (changing it starts a new chat)


class SettingsScreen(ModalScreen[SettingsValues | None]):
    """Edit settings; Save returns the new values, Esc/Cancel returns None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "save", "Save")]
    AUTO_FOCUS = "#system"  # typing goes into the first field, not the scroll container around the form

    def __init__(self, values: SettingsValues, themes: list[str], personas: list[str] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.values, self.themes, self.personas = values, themes, personas or []

    def compose(self):  # noqa: ANN201
        v = self.values
        with VerticalScroll(classes="dialog wide", id="settings"):
            yield Label("System prompt / persona for this conversation", classes="field-label")
            yield TextArea(v.system, id="system", soft_wrap=True, tab_behavior="focus", compact=True)
            yield Checkbox("Also use it for new conversations", v.system_as_default, id="system-default", compact=True)
            with Horizontal(classes="field-row"):
                yield Label("Temperature", classes="field-label")
                yield Input(f"{v.temperature:g}", id="temperature", type="number", compact=True)
            with Horizontal(classes="field-row"):
                yield Label("Max tokens", classes="field-label")
                yield Input(str(v.max_tokens), id="max-tokens", type="integer", compact=True)
            with Horizontal(classes="field-row"):
                yield Label("Theme", classes="field-label")
                yield Select([(t, t) for t in self.themes], value=v.theme, allow_blank=False, id="theme", compact=True)
            with Horizontal(classes="field-row"):
                yield Label("Persona", classes="field-label")
                choices = [("none (a new chat starts when you change it)", "-")] + [(p, p) for p in self.personas]
                yield Select(
                    choices,
                    value=v.persona if v.persona in self.personas else "-",
                    allow_blank=False,
                    id="persona",
                    compact=True,
                )
            yield Label("Enter in a one-line field, or Ctrl+S: Save · Esc: Cancel", classes="dialog-hint")
            yield Label("", id="settings-error")  # in the hint's place when a value is bad
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def read(self) -> SettingsValues:
        """The values in the form; raises ValueError with a readable message if one is bad."""
        try:
            temperature = float(self.query_one("#temperature", Input).value)
        except ValueError:
            raise ValueError("temperature must be a number") from None
        if not 0.0 <= temperature <= 5.0:
            raise ValueError("temperature must be between 0 and 5")
        try:
            max_tokens = int(self.query_one("#max-tokens", Input).value)
        except ValueError:
            raise ValueError("max tokens must be a whole number") from None
        if max_tokens < 1:
            raise ValueError("max tokens must be positive")
        return SettingsValues(
            system=self.query_one("#system", TextArea).text,
            system_as_default=self.query_one("#system-default", Checkbox).value,
            temperature=temperature,
            max_tokens=max_tokens,
            theme=str(self.query_one("#theme", Select).value),
            persona=str(self.query_one("#persona", Select).value),
        )

    def action_save(self) -> None:
        try:
            values = self.read()
        except ValueError as exc:
            self.query_one("#settings-error", Label).update(f"⚠ {exc}")
            self.query_one(".dialog-hint").display = False
            self.query_one("#settings-error").display = True
            return
        self.dismiss(values)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_save()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)
