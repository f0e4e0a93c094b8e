"""Settings: the conversation's system prompt (or the default one), temperature, max tokens, theme and persona;
saved to config.toml."""

from __future__ import annotations

from textual.screen import Screen

from assistant.chat import persona as personas
from assistant.chat.session import Session
from assistant.config import Config, save
from assistant.tui.controllers.base import Controller
from assistant.tui.controllers.personas import Personas
from assistant.tui.screens.personas import NO_PERSONA
from assistant.tui.screens.settings import SettingsScreen, SettingsValues


class Settings(Controller):
    """Opens the settings dialog and applies and saves what it returns."""

    def __init__(self, screen: Screen[None], session: Session, config: Config, *, personas: Personas) -> None:
        super().__init__(screen, session, config)
        self.personas = personas

    def open(self) -> None:
        """Open the settings dialog on the current values."""
        system = self.session.system_prompt
        generation = self.config.generation
        values = SettingsValues(
            system=system,
            system_as_default=bool(system) and system == generation.system,
            temperature=generation.temperature,
            max_tokens=generation.max_tokens,
            theme=self.screen.app.theme,
            persona=self.personas.current,
        )
        screen = SettingsScreen(values, sorted(self.screen.app.available_themes), personas.names())
        self.screen.app.push_screen(screen, self._saved)

    def _saved(self, values: SettingsValues | None) -> None:
        if values is None:
            return
        if values.persona != self.personas.current:
            self.screen.call_later(self.personas.use, "" if values.persona == NO_PERSONA else values.persona)
        self.session.set_system_prompt(values.system)
        if values.system_as_default or self.session.conversation_id is None:
            self.config.generation.system = values.system
        self.config.generation.temperature = values.temperature
        self.config.generation.max_tokens = values.max_tokens
        self.config.ui.theme = values.theme
        self.screen.app.theme = values.theme
        try:
            path = save(self.config)
        except OSError as exc:
            self.screen.notify(f"could not save settings: {exc}", severity="error", markup=False)
            return
        self.screen.notify(f"Settings saved to {path}", markup=False)
