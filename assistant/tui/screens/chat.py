"""The chat screen: the conversation list, the messages, the message box and the status bar.

The screen lays the widgets out and holds the key bindings (``keys.py``); each action and message goes
to the controller that owns its concern (``tui/controllers/``). Everything goes through the
:class:`Session` and its :class:`ModelManager`; nothing here touches the store or the engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Static, TextArea

from assistant.chat.session import Session
from assistant.config import Config
from assistant.tui.controllers.attachments import Attachments, HintReady
from assistant.tui.controllers.conversations import Conversations
from assistant.tui.controllers.distill import DistillEnded, Distiller, DistillProgress
from assistant.tui.controllers.models import ModelReady, ModelSwitch
from assistant.tui.controllers.personas import Personas
from assistant.tui.controllers.settings import Settings
from assistant.tui.controllers.turns import Turns
from assistant.tui.controllers.versions import Versions
from assistant.tui.keys import ACTIONS, WAITS_FOR_THE_ANSWER, bindings, key_label, key_of, key_rows
from assistant.tui.screens.help import HelpScreen, help_markdown
from assistant.tui.streaming import AnswerDelta, AnswerDone
from assistant.tui.widgets.distill_bar import DistillBar
from assistant.tui.widgets.message import ChatView, code_blocks
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar

NARROW_COLUMNS = 80  # below this width the sidebar collapses (Ctrl+B still shows it)


class ChatScreen(Screen[None]):
    """Chat with the on-device model."""

    BINDINGS = [b for b in bindings() if b.action != "quit"]  # quit is the app's (it works over any dialog)

    def __init__(self, session: Session, config: Config, *, open_latest: bool = True) -> None:
        super().__init__()
        self.session, self.config, self.open_latest = session, config, open_latest
        self._mounted = asyncio.Event()
        self._narrow = False  # the terminal is narrower than NARROW_COLUMNS (the sidebar collapses)
        shared = (self, session, config)  # what every controller works with
        self.conversations = Conversations(*shared)
        self.attachments = Attachments(*shared)
        self.model_switch = ModelSwitch(*shared)
        self.turns = Turns(
            *shared, attachments=self.attachments, conversations=self.conversations, model_switch=self.model_switch
        )
        self.versions = Versions(*shared, conversations=self.conversations)
        self.personas = Personas(*shared, conversations=self.conversations, model_switch=self.model_switch)
        self.distiller = Distiller(*shared, personas=self.personas)
        self.settings = Settings(*shared, personas=self.personas)

    # -- layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat-pane"):
                yield ChatView(id="chat")
                yield Static(id="attach-hint", classes="-hidden")
                yield PromptInput(id="prompt", placeholder="Ask anything… (Enter sends, Ctrl+J new line)")
        yield DistillBar(id="distill-bar")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def chat(self) -> ChatView:
        return self.query_one("#chat", ChatView)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def sidebar(self) -> Sidebar:
        return self.query_one("#sidebar", Sidebar)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def generating(self) -> bool:
        """An answer is being streamed."""
        return self.chat.generating

    async def on_mount(self) -> None:
        persona = self.session.persona
        self.status.show(policy=self.config.escalation.policy, persona=persona.name if persona else "")
        self.watch(self.chat, "generating", self._generating_changed, init=False)
        self.model_switch.start()
        await self.conversations.refresh()
        await self.conversations.open(self.session.latest() if self.open_latest else None)
        self.model_switch.watch_folder()
        self._fit_width(self.size.width)
        self.prompt.focus()
        self._mounted.set()

    async def mounted(self, timeout: float) -> None:
        """Wait until the screen has composed and opened its first conversation (at most ``timeout`` s)."""
        await asyncio.wait_for(self._mounted.wait(), timeout)

    def on_resize(self, event: events.Resize) -> None:
        self._fit_width(event.size.width)

    def _fit_width(self, width: int) -> None:
        """Hide the sidebar and tighten the footer when the terminal becomes narrow (and undo it when it widens)."""
        narrow = width < NARROW_COLUMNS
        if narrow != self._narrow and self.query("#sidebar"):  # (a resize may come before the widgets exist)
            self._narrow = narrow
            self.sidebar.display = not narrow
            self.query_one(Footer).compact = narrow  # every key's label still fits

    def _generating_changed(self, generating: bool) -> None:
        self.set_class(generating, "-generating")
        self.status.show(state="generating…" if generating else "")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating or self.prompt.editing is not None
        return True

    def waits(self, action: str) -> bool:
        """Whether ``action`` must wait for the answer being streamed; if so, say so in one line."""
        if self.generating:
            stop = key_label(key_of(self.config.ui.keys, "stop"))
            what = WAITS_FOR_THE_ANSWER[action]
            self.notify(f"Still answering: press {stop} to stop it, then {what}", severity="warning", markup=False)
        return self.generating

    def palette_actions(self) -> list[tuple[str, str, Any]]:
        """(title, help, callback) of every action the command palette offers."""
        return [(a.palette[0], a.palette[1], getattr(self, f"action_{a.name}")) for a in ACTIONS if a.palette]

    async def stop_for_quit(self, timeout: float) -> None:
        """Stop the answer being streamed at its next token and wait (at most ``timeout`` s) until it is stored;
        stop a distillation (as Ctrl-C: it resumes when started again)."""
        self.distiller.quit()
        await self.turns.stop_for_quit(timeout)

    # -- conversations
    @on(Sidebar.Opened)
    async def _sidebar_opened(self, event: Sidebar.Opened) -> None:
        await self.conversations.open(event.conversation_id, event.message_id)
        if event.message_id is None:
            self.prompt.focus()

    async def action_new_conversation(self) -> None:
        if self.waits("new_conversation"):
            return
        await self.conversations.open(None)
        self.prompt.focus()

    @work
    async def action_rename_conversation(self) -> None:
        await self.conversations.rename()

    @work
    async def action_delete_conversation(self) -> None:
        if not self.waits("delete_conversation"):
            await self.conversations.delete()

    def action_search(self) -> None:
        self.sidebar.display = True
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        self.conversations.search(event.value)

    def action_toggle_sidebar(self) -> None:
        self.sidebar.display = not self.sidebar.display

    # -- a turn
    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        await self.turns.submit(event.text)

    async def action_regenerate(self) -> None:
        if not self.waits("regenerate"):
            await self.turns.regenerate()

    async def action_continue_answer(self) -> None:
        if not self.waits("continue_answer"):
            await self.turns.continue_answer()

    def action_edit_last(self) -> None:
        if not self.waits("edit_last"):
            self.turns.edit_last()

    @on(PromptInput.EditLast)  # Up in an empty box
    def _edit_last_from_prompt(self) -> None:
        self.action_edit_last()

    def action_stop(self) -> None:
        self.turns.stop()

    @on(AnswerDelta)
    async def _answer_delta(self) -> None:
        await self.turns.drain()

    @on(AnswerDone)
    async def _answer_done(self, event: AnswerDone) -> None:
        await self.turns.finish(event)

    # -- files: ``@path`` in the message box (Tab completes the path), or the attach dialog
    @on(TextArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        self.attachments.text_changed()

    @on(HintReady)
    def _hint_ready(self, event: HintReady) -> None:
        self.attachments.show_hint(event)

    @on(PromptInput.Completions)
    def _completions(self, event: PromptInput.Completions) -> None:
        self.attachments.show_completions(event.candidates)

    @work
    async def action_attach_file(self) -> None:
        """Ask for a path (Tab completes it) and put ``@path`` in the message box."""
        await self.attachments.attach()

    def action_link(self, name: str) -> None:
        """A link in a message (continue, regenerate): run ``action_name`` on the screen's own turn, as the arrows do
        (regenerating removes the clicked note; awaited inside the note's click it would wait for itself)."""
        self.call_later(getattr(self, f"action_{name}"))

    # -- versions (branches): regenerate and edit-and-resend keep the earlier ones
    def action_version(self, parent_id: int, position: int) -> None:
        """The arrows' click: switch on the screen's own turn (the clicked header is redrawn away)."""
        self.call_later(self.versions.show, parent_id, position)

    async def action_previous_version(self) -> None:
        await self.versions.step(-1)

    async def action_next_version(self) -> None:
        await self.versions.step(1)

    # -- clipboard
    def action_copy_answer(self) -> None:
        last = self.chat.last("assistant")
        if last is None or not last.answer:
            self.notify("No answer to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(last.answer)
        self.notify(f"Copied the answer ({len(last.answer)} chars)")

    def action_copy_code(self) -> None:
        last = self.chat.last("assistant")
        blocks = code_blocks(last.answer) if last is not None else []
        if not blocks:
            self.notify("The last answer has no code block", severity="warning")
            return
        self.app.copy_to_clipboard(blocks[-1])
        self.notify(f"Copied the code block ({len(blocks[-1])} chars)")

    # -- models
    def action_pick_model(self) -> None:
        self.model_switch.pick()

    @on(ModelReady)
    async def _model_ready(self, event: ModelReady) -> None:
        self.model_switch.loaded(event)
        await self.turns.model_loaded(event)

    # -- personas: chat as one, distil one into its own student
    def action_pick_persona(self) -> None:
        if not self.waits("pick_persona"):
            self.personas.pick()

    def action_distill_persona(self) -> None:
        self.distiller.ask()

    @on(DistillProgress)
    def _distill_progress(self, event: DistillProgress) -> None:
        self.query_one(DistillBar).show(event.progress)

    @on(Button.Pressed, "#distill-cancel")
    def action_cancel_distill(self) -> None:
        self.distiller.cancel()

    @on(DistillEnded)
    def _distill_ended(self, event: DistillEnded) -> None:
        self.distiller.ended(event)

    # -- settings and help
    def action_settings(self) -> None:
        self.settings.open()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(help_markdown(key_rows(self.config.ui.keys))))
