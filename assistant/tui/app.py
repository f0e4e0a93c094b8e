"""The chat UI: a Textual app holding one :class:`ChatScreen` over a session and its model manager.

The app wires the parts together (config, session, model manager, keymap, theme) and quits
cleanly; the chat itself lives in ``screens/chat.py``, the widgets in ``widgets/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen

from assistant.chat.persona import Persona
from assistant.chat.session import Session
from assistant.config import Config, database_path, load, save
from assistant.models.engine import Engine
from assistant.models.manager import ModelManager
from assistant.storage.store import Store
from assistant.tui.keys import KNOWN, bindings
from assistant.tui.paste import whole_pastes
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.screens.dialogs import ConfirmScreen

QUIT_WAIT_S = 0.8  # quitting mid-answer waits this long at most for the answer to stop and be stored


class ChatApp(App[int]):
    """Chat with the on-device model."""

    CSS_PATH = "app.tcss"
    TITLE = "assistant"
    BINDINGS = [b for b in bindings() if b.action == "quit"]  # a priority binding: quits over any dialog

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        engine: Engine | None = None,
        model: str = "",
        open_latest: bool = True,
        persona: Persona | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store  # for tests and benchmarks that seed or read history; the UI goes through the session
        self.models = ModelManager(config, store, engine)
        if model := model or (persona.runtime_model() if persona else ""):
            self.models.key = model
        self.session = Session(store, self.models, config, persona=persona)
        # chatting as a persona starts a new chat with it, as the persona picker does
        self.chat_screen = ChatScreen(self.session, config, open_latest=open_latest and persona is None)
        self._bad_keys = sorted(set(config.ui.keys) - KNOWN)
        self._quit_asked = False  # Ctrl+Q during a distillation asked whether to quit
        self.set_keymap({k: v for k, v in config.ui.keys.items() if k not in self._bad_keys})

    def get_default_screen(self) -> Screen:
        return self.chat_screen

    async def on_mount(self) -> None:
        await self.chat_screen.mounted(timeout=30.0)  # the chat is on screen before the app reports ready
        if self.config.ui.theme in self.available_themes:
            self.theme = self.config.ui.theme
        else:
            self.notify(f"config [ui] theme: unknown theme {self.config.ui.theme!r}", severity="warning", markup=False)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self._bad_keys:
            self.notify(
                f"config [ui] keys: unknown action(s) {', '.join(self._bad_keys)} (known: {', '.join(sorted(KNOWN))})",
                severity="warning",
                markup=False,
                timeout=15,
            )

    def _theme_changed(self, theme: Any) -> None:
        if theme.name != self.config.ui.theme:
            self.config.ui.theme = theme.name
            try:
                save(self.config)
            except OSError as exc:
                self.notify(f"could not save the theme: {exc}", severity="error", markup=False)

    async def action_quit(self) -> None:
        """Quit; an answer being streamed stops at its next token and is stored (incomplete) first. A distillation
        running in the background would stop too: that is asked first (Enter, or Ctrl+Q again, quits)."""
        distilling = self.chat_screen.distiller.running
        if distilling and not self._quit_asked:
            self._quit_asked = True
            question = f"Quit? The distillation of {distilling} stops; it resumes where it stopped when started again."
            self.push_screen(
                ConfirmScreen(question, confirm="Quit", cancel="Keep running", default_yes=True), self._quit_if
            )
            return
        await self.chat_screen.stop_for_quit(QUIT_WAIT_S)
        self.exit()

    async def _quit_if(self, yes: bool | None) -> None:
        self._quit_asked = bool(yes)
        if yes:
            await self.action_quit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for title, help_text, callback in self.chat_screen.palette_actions():
            yield SystemCommand(title, help_text, callback)
        yield from super().get_system_commands(screen)

    # -- the chat screen's widgets and counters, for tests and benchmarks (bench/bench_ui.py observes turns with them)
    engine = property(lambda self: self.models.engine if self.models.ready else None, doc="None while loading")
    chat = property(lambda self: self.chat_screen.chat)
    prompt = property(lambda self: self.chat_screen.prompt)
    sidebar = property(lambda self: self.chat_screen.sidebar)
    status = property(lambda self: self.chat_screen.status)
    generating = property(lambda self: self.chat_screen.generating, doc="an answer is being streamed")
    turns_done = property(lambda self: self.chat_screen.turns.done, doc="answers finished (or stopped) so far")

    async def open_conversation(self, conversation_id: int | None, message_id: int | None = None) -> None:
        await self.chat_screen.conversations.open(conversation_id, message_id)


@contextmanager
def private_terminal_stream() -> Iterator[None]:
    """Give Textual its own descriptor for the terminal while the app runs.

    Textual's driver writes frames to ``sys.__stderr__``; llama-cpp-python (``verbose=False``)
    points file descriptors 1 and 2 at /dev/null while it loads a model, and a model loads
    in a worker thread while the UI runs, so frames written meanwhile would vanish.
    """
    stream = sys.__stderr__
    if stream is None or not stream.isatty():
        yield
        return
    private = os.fdopen(os.dup(stream.fileno()), "w", encoding=stream.encoding or "utf-8", errors="replace")
    # typeshed declares sys.__stderr__ Final (the interpreter's original stream), but swapping it is the point here:
    # Textual reads it when it starts, and it is restored below.
    sys.__stderr__ = private  # type: ignore[misc]
    try:
        yield
    finally:
        sys.__stderr__ = stream  # type: ignore[misc]  # (Final in typeshed, as above)
        private.close()


def run(model: str | None = None, persona: Persona | None = None) -> int:
    """Open the chat UI (the ``assistant`` and ``assistant chat`` commands)."""
    config = load()
    store = Store(database_path())
    app = ChatApp(config, store, model=model or "", persona=persona)
    app.models.resolve()  # a bad name is one clear error before the UI opens
    try:
        with private_terminal_stream(), whole_pastes():
            app.run()
    finally:
        app.models.close()
        store.close()
    return app.return_code or 0
