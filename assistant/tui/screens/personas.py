"""The persona picker: chat as one of your personas (a new chat starts with it), or as the plain assistant."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from assistant.chat.persona import Persona

NO_PERSONA = "-"  # the option id of the plain assistant (persona names cannot start with '-')


def persona_detail(persona: Persona) -> str:
    if persona.distilled:
        return f"distilled: answers with its own student {persona.student!r}, no prompt"
    words = len(persona.context_text().split())
    return f"prompted: {words} words of context · model {persona.model or 'the default'}"


class PersonaPickerScreen(ModalScreen[str | None]):
    """Pick a persona; returns its name, ``NO_PERSONA`` for none, or None (cancelled)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, personas: list[Persona], current: str, title: str = "Chat as a persona") -> None:
        super().__init__(classes="dialog-screen")
        self.personas, self.current, self.title_text = personas, current, title

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog wide", id="persona-picker"):
            yield Label(Content.assemble((self.title_text, "bold"), f"   (current: {self.current or 'none'})"))
            options = [
                Option(Content.assemble(("No persona", "bold"), "\n", ("the plain assistant", "dim")), id=NO_PERSONA)
            ]
            options += [
                Option(Content.assemble((p.name, "bold"), "\n", (persona_detail(p), "dim")), id=p.name)
                for p in self.personas
            ]
            if not self.personas:
                options.append(
                    Option(Content("no personas yet: `assistant persona add NAME --system FILE`"), disabled=True)
                )
            yield OptionList(*options, id="personas")

    def on_mount(self) -> None:
        ids = [NO_PERSONA, *(p.name for p in self.personas)]
        self.query_one(OptionList).highlighted = ids.index(self.current) if self.current in ids else 0

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
