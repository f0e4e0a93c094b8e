"""Personas: chat as one of the user's personas (a new chat starts with it, on its model or student if it has one)."""

from __future__ import annotations

from pathlib import Path

from textual.screen import Screen

from assistant import AssistantError
from assistant.chat import persona as personas
from assistant.chat.session import Session
from assistant.config import Config
from assistant.tui.controllers.base import Controller
from assistant.tui.controllers.conversations import Conversations
from assistant.tui.controllers.models import ModelSwitch
from assistant.tui.screens.personas import NO_PERSONA, PersonaPickerScreen


class Personas(Controller):
    """Picks the persona new chats use."""

    def __init__(
        self,
        screen: Screen[None],
        session: Session,
        config: Config,
        *,
        conversations: Conversations,
        model_switch: ModelSwitch,
    ) -> None:
        super().__init__(screen, session, config)
        self.conversations, self.model_switch = conversations, model_switch
        self._before = ""  # the model that served before a persona's own model was loaded ('' when none was)
        conversations.follow_persona = self.follow

    @property
    def current(self) -> str:
        """The persona of the chat on screen (or, for a new chat, the one it starts with), or ``NO_PERSONA``."""
        return self.conversations.persona_of(self.session.conversation_id) or NO_PERSONA

    def pick(self) -> None:
        """Open the persona picker; a new chat starts as the persona picked."""
        self.screen.app.push_screen(PersonaPickerScreen(personas.all_personas(), self.current), self._picked)

    def _picked(self, name: str | None) -> None:
        if name is not None:
            self.screen.call_later(self.use, "" if name == NO_PERSONA else name)

    async def use(self, name: str) -> None:
        """Start a new chat as persona ``name`` ('' for none), loading its model (or its student) if it has one."""
        if self.chat.generating:
            self.screen.notify("Still answering: press Esc to stop first", severity="warning")
            return
        try:
            persona = personas.load(name) if name else None
        except AssistantError as exc:
            self.screen.notify(str(exc), severity="error", markup=False)
            return
        self.session.use_persona(persona)
        await self.conversations.open(None)  # the status bar shows the persona; its model loads (``follow``)
        self.screen.notify(f"New chat as {name}" if name else "New chat without a persona", markup=False)

    def follow(self) -> None:
        """The chat on screen answers as its persona: the persona's student (or its base model) loads; a chat without
        one goes back to the model that served before a persona's."""
        persona = self.session.persona
        model = persona.runtime_model() if persona else ""
        if model and not self._before:
            self._before = self.models.key
        elif not model:
            model, self._before = self._before, ""
        if model and not self._serving(model):
            self.status.show(state=f"loading {Path(model).name}…")
            self.model_switch.load(model)

    def _serving(self, model: str) -> bool:
        """Whether ``model`` (any of its names, or its file) is the one serving or loading."""
        try:
            return self.models.resolve(model) == self.models.resolve(self.model_switch.wanted or self.models.key)
        except AssistantError:  # unknown: loading it says why
            return False
