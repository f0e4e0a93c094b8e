"""The chat UI: a Textual app over the session, the store, the engine and the registry.

Generation runs in a thread worker that collects the streamed pieces and nudges the UI
thread (at most ~20 times a second, and a timer picks up stragglers); the UI appends what has arrived to the answer's
Markdown through a ``MarkdownStream`` (extended, not re-rendered whole), so the UI never
blocks, the model is not slowed by per-token redraws, and the end of the turn drains the
rest, so no final piece is dropped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Input

from assistant import AssistantError
from assistant.config import Config
from assistant.engine import Delta, Engine
from assistant.registry import DEFAULT_MODEL, Registry
from assistant.persona import Persona
from assistant.session import Session, resumable
from assistant.store import Store
from assistant.text_safety import StreamSanitizer
from assistant.tui.screens.escalation import approver
from assistant.tui.screens.dialogs import ConfirmScreen, TextInputScreen
from assistant.tui.screens.help import HelpScreen, help_markdown
from assistant.tui.screens.models import ModelPickerScreen, gguf_files, model_choices
from assistant.tui.screens.settings import SettingsScreen, SettingsValues
from assistant.tui.widgets.message import ChatView, MessageView, code_blocks, message_meta
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar

MODEL_POLL_S = 4.0
STREAM_INTERVAL_S = 1 / 20  # the worker nudges the UI at most this often; pieces in between are batched

# (binding id, key, action, description, shown in the footer)
ACTIONS = [
    ("stop", "escape", "stop", "Stop", True),
    ("new_conversation", "ctrl+n", "new_conversation", "New chat", True),
    ("pick_model", "ctrl+o", "pick_model", "Model", True),
    ("settings", "ctrl+s", "settings", "Settings", True),
    ("help", "f1", "help", "Help", True),
    ("regenerate", "ctrl+r", "regenerate", "Regenerate the last answer", False),
    ("continue_answer", "f5", "continue_answer", "Continue an incomplete answer", False),
    ("edit_last", "ctrl+g", "edit_last", "Edit and resend your last message", False),
    ("copy_answer", "f3", "copy_answer", "Copy the last answer", False),
    ("copy_code", "f4", "copy_code", "Copy the last code block", False),
    ("search", "ctrl+f", "search", "Search the history", False),
    ("rename_conversation", "f2", "rename_conversation", "Rename the conversation", False),
    ("delete_conversation", "f8", "delete_conversation", "Delete the conversation", False),
    ("toggle_sidebar", "ctrl+b", "toggle_sidebar", "Show/hide the sidebar", False),
    ("quit", "ctrl+q", "quit", "Quit", False),
]
PROMPT_KEYS = [("send", "enter", "Send your message"), ("newline", "ctrl+j,shift+enter", "New line in your message")]
BUSY_ACTIONS = {"regenerate", "continue_answer", "edit_last", "new_conversation", "delete_conversation", "pick_model"}
RESUME_NOTE = (
    "⚠ incomplete — press [b]$continue_key[/b] to [@click=app.continue_answer]continue[/] "
    "or [b]$regenerate_key[/b] to [@click=app.regenerate]regenerate[/]"
)


class AnswerDelta(Message):
    """More of the answer is waiting in ``ChatApp._pending``."""


class AnswerDone(Message):
    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error


class ModelReady(Message):
    def __init__(self, error: str = "", swapped: bool = False) -> None:
        super().__init__()
        self.error, self.swapped = error, swapped


class ChatApp(App[int]):
    """Chat with the on-device model."""

    CSS_PATH = "app.tcss"
    TITLE = "assistant"
    BINDINGS = [
        Binding(key, action, description, id=binding_id, show=show, priority=binding_id == "quit")
        for binding_id, key, action, description, show in ACTIONS
    ]

    generating: reactive[bool] = reactive(False, init=False)

    def __init__(
        self, config: Config, store: Store, *, engine: Engine | None = None, model: str = "", open_latest: bool = True,
        persona: Persona | None = None,
    ) -> None:
        super().__init__()
        self.config, self.store = config, store
        self.registry = Registry(store)
        self.engine = engine
        self.model_key = model or (persona.runtime_model() if persona else "") or config.model.default
        self.session = Session(store, engine, config, persona=persona)  # type: ignore[arg-type]  # engine set on load
        self.open_latest = open_latest
        self._stop = threading.Event()
        self._queued: tuple[str, str] | None = None  # ("send", text) or ("continue", "") asked before the model loaded
        self._pending: list[str] = []  # streamed text not yet on screen (written by the worker thread)
        self._pending_lock = threading.Lock()
        self.turns_done = 0  # answers finished (or stopped) in this session
        self._answer: MessageView | None = None
        self._editing: MessageView | None = None
        self._seen_files: dict[Path, int] = {}
        self._announced: set[Path] = set()  # files present at start or already announced
        self._bad_keys = sorted(set(config.ui.keys) - {b[0] for b in ACTIONS} - {k[0] for k in PROMPT_KEYS})
        self.set_keymap({k: v for k, v in config.ui.keys.items() if k not in self._bad_keys})

    # -- layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat-pane"):
                yield ChatView(id="chat")
                yield PromptInput(id="prompt", placeholder="Ask anything… (Enter sends, Ctrl+J new line)")
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

    async def on_mount(self) -> None:
        self._apply_theme(self.config.ui.theme)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self._bad_keys:
            known = ", ".join(b[0] for b in ACTIONS) + ", send, newline"
            self.notify(f"config [ui] keys: unknown action(s) {', '.join(self._bad_keys)} (known: {known})",
                        severity="warning", markup=False)
        persona = self.session.persona
        self.status.show(policy=self.config.escalation.policy, persona=persona.name if persona else "")
        if self.engine is None:
            self.status.show(model=self.model_key or DEFAULT_MODEL, state="loading model…")
            self._load_model(self.model_key)
        else:
            self.status.show(model=self.engine.name, n_ctx=self.engine.n_ctx)
        latest = self.store.latest_conversation_id() if self.open_latest else None
        await self.refresh_sidebar()
        await self.open_conversation(latest)
        self._seen_files = gguf_files()
        self._announced = set(self._seen_files)
        self.set_interval(MODEL_POLL_S, self._poll_models)
        self.prompt.focus()

    def _welcome(self) -> str:
        model = self.engine.name if self.engine else "the on-device model"
        return (
            f"Ask anything. Answers come from {model}, running on this device.\n\n"
            "Enter sends · Ctrl+J new line · Esc stops · F1 help · Ctrl+P all commands"
        )

    # -- conversations
    async def refresh_sidebar(self) -> None:
        await self.sidebar.show_conversations(self.store.conversations(), self.session.conversation_id)

    async def open_conversation(self, conversation_id: int | None, message_id: int | None = None) -> None:
        if self.generating:
            self.notify("Still answering: press Esc to stop first", severity="warning")
            return
        self._cancel_edit()
        self.session.conversation_id = conversation_id
        messages = self.store.messages(conversation_id) if conversation_id is not None else []
        await self.chat.show(messages, self._welcome())
        self._offer_resume(messages[-1] if messages else None)
        self.sidebar.select(conversation_id)
        self._show_stored_stats(messages)
        if message_id is not None and not self.chat.jump_to(message_id):
            self.notify("That message is no longer there", severity="warning")

    def _show_stored_stats(self, messages: list[dict[str, Any]]) -> None:
        answers = [m for m in messages if m["role"] == "assistant"]
        last = answers[-1] if answers else {}
        self.status.show(
            context_used=(last.get("prompt_tokens") or 0) + (last.get("completion_tokens") or 0),
            tokens_per_s=last.get("tokens_per_s") or 0.0,
            ttft_s=last.get("ttft_s") or 0.0,
            escalated=bool(last.get("escalated")),
        )

    @on(Sidebar.Opened)
    async def _sidebar_opened(self, event: Sidebar.Opened) -> None:
        await self.open_conversation(event.conversation_id, event.message_id)
        if event.message_id is None:
            self.prompt.focus()

    async def action_new_conversation(self) -> None:
        await self.open_conversation(None)
        self.prompt.focus()

    def _target_conversation(self) -> int | None:
        """The conversation highlighted in the sidebar when it has focus, else the open one."""
        if self.focused is not None and self.focused.id == "conversations" and self.sidebar.highlighted_id:
            return self.sidebar.highlighted_id
        return self.session.conversation_id

    @work
    async def action_rename_conversation(self) -> None:
        conversation_id = self._target_conversation()
        if conversation_id is None:
            self.notify("Nothing to rename yet: send a message first", severity="warning")
            return
        conversation = self.store.conversation(conversation_id)
        title = await self.push_screen_wait(TextInputScreen("Rename conversation", conversation["title"] or ""))
        if title:
            self.store.update_conversation(conversation_id, title=title, updated=conversation["updated"])
            await self.refresh_sidebar()

    @work
    async def action_delete_conversation(self) -> None:
        conversation_id = self._target_conversation()
        if conversation_id is None:
            self.notify("Nothing to delete", severity="warning")
            return
        title = self.store.conversation(conversation_id)["title"] or "(untitled)"
        if not await self.push_screen_wait(ConfirmScreen(f"Delete “{title}” and all its messages?")):
            return
        self.store.delete_conversation(conversation_id)
        if self.engine is not None:
            self.engine.forget(conversation_id)
        if conversation_id == self.session.conversation_id:
            await self.open_conversation(None)
        await self.refresh_sidebar()
        self.notify("Conversation deleted")

    def action_search(self) -> None:
        self.sidebar.display = True
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        query = event.value.strip()
        if not query:
            self.sidebar.clear_search()
            return
        self.sidebar.show_results(self.store.search(query, limit=30), query)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#results").focus()

    def action_toggle_sidebar(self) -> None:
        self.sidebar.display = not self.sidebar.display

    # -- a turn
    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        if self.generating:
            self.notify("Still answering: press Esc to stop", severity="warning")
            return
        self.prompt.clear()
        if self.engine is None:
            self._queued = ("send", event.text)
            self.notify("The model is still loading; your message goes out as soon as it is ready")
            return
        await self._send(event.text)

    async def _send(self, text: str) -> None:
        kind = "send"
        if self._editing is not None:
            await self.chat.remove_from(self._editing)
            self._cancel_edit()
            kind = "resend"
        new = self.session.conversation_id is None
        self.session.ensure_conversation(title=text.strip().splitlines()[0])
        await self.chat.add(MessageView("user", text))
        await self._begin_answer(kind, text)
        if new:
            await self.refresh_sidebar()

    async def action_regenerate(self) -> None:
        last = self.chat.last("assistant")
        if self.engine is None or self.session.conversation_id is None or self.chat.last("user") is None:
            self.notify("Nothing to regenerate yet", severity="warning")
            return
        if last is not None and last is self.chat.views()[-1]:
            await self.chat.remove_from(last)
        await self._begin_answer("regenerate", "")

    async def action_continue_answer(self) -> None:
        views = self.chat.views()
        if not views or not views[-1].resumable:
            self.notify("No incomplete answer to continue", severity="warning")
        elif self.engine is None:
            self._queued = ("continue", "")
            self.notify("The model is still loading; the answer continues as soon as it is ready")
        else:
            await self._begin_answer("continue", "", views[-1])

    def _offer_resume(self, last: dict[str, Any] | None) -> None:
        """Mark the last answer if it is incomplete (continue or regenerate it); unmark the others."""
        views = self.chat.views()
        target = views[-1] if views and last and views[-1].message_id == last["id"] and resumable(last) else None
        for view in views:
            if view is target:
                view.offer_resume(self._resume_note())
            elif view.resumable:
                view.offer_resume(None)

    def _resume_note(self) -> Content:
        return Content.from_markup(
            RESUME_NOTE,
            continue_key=key_label(self._key("continue_answer")),
            regenerate_key=key_label(self._key("regenerate")),
        )

    def action_edit_last(self) -> None:
        last = self.chat.last("user")
        if last is None:
            self.notify("No message to edit yet", severity="warning")
            return
        self._editing = last
        self.prompt.text = last.source
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.border_title = "editing your last message · Enter resends · Esc cancels"
        self.prompt.focus()
        self.refresh_bindings()

    @on(PromptInput.EditLast)
    def _edit_last_from_prompt(self) -> None:
        if not self.generating:
            self.action_edit_last()

    def _cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.prompt.border_title = None
            self.refresh_bindings()

    async def _begin_answer(self, kind: str, text: str, view: MessageView | None = None) -> None:
        """Stream an answer into a new message view, or (continuing) into ``view``."""
        assert self.engine is not None
        self._offer_resume(None)
        if view is None:
            view = await self.chat.add(MessageView("assistant", meta=self.engine.name))
        else:
            view.set_meta(f"{self.engine.name} · continuing…")
        self._answer = view
        self._answer.start_stream()
        self._stop.clear()
        self.generating = True
        self._drain_timer = self.set_interval(0.2, self._drain)  # pieces held back by the worker's rate limit
        self._generate(kind, text)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, kind: str, text: str) -> None:
        """Runs in a thread: stream the answer into ``self._pending``, nudging the UI at most every frame."""
        cleaner = StreamSanitizer()
        approve = approver(self, lambda: self.session.last.route.get("reason", ""))
        stream: Iterator[Delta]
        if kind == "send":
            stream = self.session.send(text, approve=approve)
        elif kind == "resend":
            stream = self.session.resend(text, approve=approve)
        elif kind == "continue":
            stream = self.session.continue_()
        else:
            stream = self.session.regenerate(approve=approve)
        error = ""
        last_post = 0.0
        try:
            for delta in stream:
                if piece := cleaner.feed(delta.text):
                    with self._pending_lock:
                        self._pending.append(piece)
                    if time.monotonic() - last_post >= STREAM_INTERVAL_S:
                        last_post = time.monotonic()
                        self.post_message(AnswerDelta())
                if self._stop.is_set():
                    break
        except AssistantError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app keeps running
            error = f"generation failed: {exc}"
        finally:
            stream.close()  # finalises the stored answer (as cancelled if we broke out)
        self.post_message(AnswerDone(error))

    async def _drain(self) -> None:
        """Append everything streamed so far to the answer on screen."""
        with self._pending_lock:
            text = "".join(self._pending)
            self._pending.clear()
        if text and self._answer is not None:
            await self._answer.write(text)

    @on(AnswerDelta)
    async def _answer_delta(self) -> None:
        await self._drain()

    @on(AnswerDone)
    async def _answer_done(self, event: AnswerDone) -> None:
        self._drain_timer.stop()
        await self._drain()
        turn, view = self.session.last, self._answer
        if view is not None:
            await view.finish(turn.answer if not event.error else None)
            view.message_id = turn.answer_message_id or view.message_id
            stored = self.store.message(turn.answer_message_id) if turn.answer_message_id else {}
            view.set_meta(message_meta(stored) if stored else turn.model)
            self._offer_resume(stored or None)
        user = self.chat.last("user")
        if user is not None and turn.user_message_id:
            user.message_id = turn.user_message_id
        self._answer = None
        self.generating = False
        self.turns_done += 1
        stats = turn.stats
        self.status.show(
            context_used=stats.context_used, n_ctx=stats.n_ctx or self.status.info.n_ctx,
            tokens_per_s=stats.tokens_per_s, ttft_s=stats.ttft_s, escalated=turn.escalated,
        )
        for note in turn.notes:
            self.notify(note, severity="warning", markup=False)
        if event.error:
            self.notify(event.error, title="Error", severity="error", markup=False)
        await self.refresh_sidebar()

    def watch_generating(self, generating: bool) -> None:
        self.screen.set_class(generating, "-generating")
        self.status.show(state="generating…" if generating else "")
        self.refresh_bindings()

    def action_stop(self) -> None:
        if self.generating:
            self._stop.set()
            self.session.cancel()  # stops the student or the teacher; the partial answer is kept
        elif self._editing is not None:
            self.prompt.clear()
            self._cancel_edit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating or self._editing is not None
        if action in BUSY_ACTIONS and self.generating:
            return None
        return True

    # -- clipboard
    def action_copy_answer(self) -> None:
        last = self.chat.last("assistant")
        if last is None or not last.source:
            self.notify("No answer to copy yet", severity="warning")
            return
        self.copy_to_clipboard(last.source)
        self.notify(f"Copied the answer ({len(last.source)} chars)")

    def action_copy_code(self) -> None:
        last = self.chat.last("assistant")
        blocks = code_blocks(last.source) if last is not None else []
        if not blocks:
            self.notify("The last answer has no code block", severity="warning")
            return
        self.copy_to_clipboard(blocks[-1])
        self.notify(f"Copied the code block ({len(blocks[-1])} chars)")

    # -- models
    def action_pick_model(self) -> None:
        current = self.engine.name if self.engine else "none"
        self.push_screen(ModelPickerScreen(model_choices(self.registry), current), self._model_picked)

    def _model_picked(self, key: str | None) -> None:
        if key:
            self.model_key = key
            self.status.show(state=f"loading {Path(key).name}…")
            self._load_model(key)

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def _load_model(self, key: str) -> None:
        """Runs in a thread: load the first model, or swap; on failure the old model keeps serving."""
        try:
            path = self.registry.resolve(key)
            swapped = self.engine is not None
            if self.engine is None:
                self.engine = Engine(path, n_ctx=self.config.model.n_ctx, threads=self.config.model.threads)
                self.session.engine = self.engine
            else:
                self.engine.swap(path)
        except AssistantError as exc:
            self.post_message(ModelReady(str(exc)))
        except Exception as exc:  # noqa: BLE001
            self.post_message(ModelReady(f"could not load {key}: {exc}"))
        else:
            self.post_message(ModelReady(swapped=swapped))

    @on(ModelReady)
    async def _model_ready(self, event: ModelReady) -> None:
        self.status.show(state="generating…" if self.generating else "")
        if event.error:
            kept = f" ({self.engine.name} keeps serving)" if self.engine else ""
            self.notify(event.error + kept, title="Model not switched", severity="error", markup=False)
            if self.engine is None:
                self.status.show(model="no model: pick one with Ctrl+O")
            return
        assert self.engine is not None
        self.status.show(model=self.engine.name, n_ctx=self.engine.n_ctx, context_used=0, tokens_per_s=0.0, ttft_s=0.0)
        if event.swapped:
            self.notify(f"Now answering with {self.engine.name}", markup=False)
        if welcome := self.chat.query("#welcome"):
            welcome.first().update(self._welcome())  # type: ignore[attr-defined]
        if self._queued and not self.generating:
            (kind, text), self._queued = self._queued, None
            await (self._send(text) if kind == "send" else self.action_continue_answer())

    def _poll_models(self) -> None:
        """Notice new .gguf files (e.g. a freshly distilled student) once their size is stable."""
        current = gguf_files()
        for path, size in current.items():
            if path not in self._announced and self._seen_files.get(path) == size:
                self._announced.add(path)
                self.notify(f"New model file {path.name}: press Ctrl+O to switch to it", title="New model",
                            timeout=15, markup=False)
        self._seen_files = current

    # -- settings, theme, help
    def action_settings(self) -> None:
        system = self.session.system_prompt
        values = SettingsValues(
            system=system,
            system_as_default=bool(system) and system == self.config.generation.system,
            temperature=self.config.generation.temperature,
            max_tokens=self.config.generation.max_tokens,
            theme=self.theme,
        )
        self.push_screen(SettingsScreen(values, sorted(self.available_themes)), self._settings_saved)

    def _settings_saved(self, values: SettingsValues | None) -> None:
        if values is None:
            return
        from assistant.config import save

        if self.session.conversation_id is not None:
            conversation = self.store.conversation(self.session.conversation_id)
            self.store.update_conversation(self.session.conversation_id, system=values.system,
                                           updated=conversation["updated"])
        if values.system_as_default or self.session.conversation_id is None:
            self.config.generation.system = values.system
        self.config.generation.temperature = values.temperature
        self.config.generation.max_tokens = values.max_tokens
        self.config.ui.theme = values.theme
        self.theme = values.theme
        try:
            path = save(self.config)
        except OSError as exc:
            self.notify(f"could not save settings: {exc}", severity="error", markup=False)
            return
        self.notify(f"Settings saved to {path}", markup=False)

    def _apply_theme(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
        else:
            self.notify(f"config [ui] theme: unknown theme {name!r}", severity="warning", markup=False)

    def _theme_changed(self, theme: Any) -> None:
        if theme.name != self.config.ui.theme:
            from assistant.config import save

            self.config.ui.theme = theme.name
            try:
                save(self.config)
            except OSError as exc:
                self.notify(f"could not save the theme: {exc}", severity="error", markup=False)

    def key_rows(self) -> list[tuple[str, str, str]]:
        """(key, description, config name) for every action, with the user's keymap applied."""
        keymap = self.config.ui.keys
        rows = [(keymap.get(i, key), description, i) for i, key, description in PROMPT_KEYS]
        rows += [(keymap.get(i, key), description, i) for i, key, _a, description, _s in ACTIONS]
        return rows

    def _key(self, binding_id: str) -> str:
        """The key(s) bound to an action, with the user's keymap applied."""
        return next(key for key, _description, i in self.key_rows() if i == binding_id)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_markdown(self.key_rows())))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        commands = {
            "new_conversation": ("New conversation", "Start a new chat"),
            "rename_conversation": ("Rename conversation", "Give this chat a new title"),
            "delete_conversation": ("Delete conversation", "Delete this chat (asks first)"),
            "search": ("Search history", "Full-text search over all your chats"),
            "regenerate": ("Regenerate answer", "Answer your last message again"),
            "continue_answer": ("Continue answer", "Carry on an incomplete answer where it stopped"),
            "edit_last": ("Edit last message", "Change your last message and resend it"),
            "stop": ("Stop answer", "Stop generating; the partial answer is kept"),
            "copy_answer": ("Copy answer", "Copy the last answer to the clipboard"),
            "copy_code": ("Copy code block", "Copy the last code block to the clipboard"),
            "pick_model": ("Switch model", "Pick another model from the registry"),
            "settings": ("Settings", "System prompt, temperature, max tokens, theme"),
            "toggle_sidebar": ("Toggle sidebar", "Show or hide the conversation list"),
            "help": ("Help", "Keys and tips"),
        }
        for action, (title, help_text) in commands.items():
            yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
        yield from super().get_system_commands(screen)


def key_label(keys: str) -> str:
    """The first of a binding's keys as people write it: 'ctrl+r,f9' -> 'Ctrl+R', 'f5' -> 'F5'."""
    return "+".join(part.upper() if len(part) == 1 else part.capitalize() for part in keys.split(",")[0].split("+"))


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
    sys.__stderr__ = private
    try:
        yield
    finally:
        sys.__stderr__ = stream
        private.close()


def run(model: str | None = None, persona: Persona | None = None) -> int:
    """Open the chat UI (the ``assistant`` and ``assistant chat`` commands)."""
    from assistant.config import database_path, load

    config = load()
    store = Store(database_path())
    model = model or (persona.runtime_model() if persona else None)
    Registry(store).resolve(model or config.model.default)  # a bad name is one clear error before the UI opens
    app = ChatApp(config, store, model=model or "", persona=persona)
    try:
        with private_terminal_stream():
            app.run()
    finally:
        if app.engine is not None:
            app.engine.close()
        store.close()
    return app.return_code or 0
