"""What the chat screen's controllers share: the screen, the session, the config and the screen's widgets."""

from __future__ import annotations

from textual.screen import Screen

from assistant.chat.session import Session
from assistant.config import Config
from assistant.models.manager import ModelManager
from assistant.tui.widgets.message import ChatView
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar


class Controller:
    """One concern of the chat screen (conversations, the turn, models…), kept out of the screen's class.

    It works on the screen's widgets through the properties below and reports through ``screen.notify``;
    the screen calls its methods from its actions and message handlers.
    """

    def __init__(self, screen: Screen[None], session: Session, config: Config) -> None:
        self.screen, self.session, self.config = screen, session, config

    @property
    def models(self) -> ModelManager:
        return self.session.models

    @property
    def chat(self) -> ChatView:
        return self.screen.query_one("#chat", ChatView)

    @property
    def prompt(self) -> PromptInput:
        return self.screen.query_one("#prompt", PromptInput)

    @property
    def sidebar(self) -> Sidebar:
        return self.screen.query_one("#sidebar", Sidebar)

    @property
    def status(self) -> StatusBar:
        return self.screen.query_one("#status", StatusBar)
