"""The persona picker: chat as one of your personas (a new chat starts with it), or as the plain assistant."""

from __future__ import annotations

from textual.content import Content
from textual.widgets.option_list import Option

from assistant.chat.persona import Persona
from assistant.tui.screens.dialogs import PickerScreen

NO_PERSONA = "-"  # the option id of the plain assistant (persona names cannot start with '-')


def persona_detail(persona: Persona) -> str:
    """Its state in a line or two: prompted, distilled (with the student's verdict) or stale."""
    verdict = f"\n{persona.student_verdict}" if persona.student_verdict else ""
    if persona.distilled:
        return f"distilled: answers with its own student {persona.student!r}, no prompt{verdict}"
    words = len(persona.context_text().split())
    prompted = f"{words} words of context · model {persona.model or 'the default'}"
    if persona.state == "stale":
        return f"stale: its prompt changed since {persona.student!r} was distilled; answers prompted ({prompted})"
    return f"prompted: {prompted}"


class PersonaPickerScreen(PickerScreen):
    """Pick a persona; returns its name, ``NO_PERSONA`` for none (when ``offer_none``), or None (cancelled)."""

    def __init__(
        self,
        personas: list[Persona],
        current: str,
        title: str = "Chat as a persona",
        *,
        offer_none: bool = True,
        enter: str = "start a new chat as it",
    ) -> None:
        options = [
            Option(Content.assemble((p.name, "bold"), "\n", (persona_detail(p), "dim")), id=p.name) for p in personas
        ]
        if offer_none:
            plain = Content.assemble(("No persona", "bold"), "\n", ("the plain assistant", "dim"))
            options.insert(0, Option(plain, id=NO_PERSONA))
        if not personas:
            options.append(
                Option(Content("no personas yet: `assistant persona add NAME --system FILE`"), disabled=True)
            )
        ids = [o.id for o in options]
        shown = "none" if current in ("", NO_PERSONA) else current
        super().__init__(
            Content.assemble((title, "bold"), f"   (current: {shown})"),
            options,
            ids.index(current) if current in ids else 0,
            f"Enter: {enter} · Esc: Cancel",
            "personas",
        )
