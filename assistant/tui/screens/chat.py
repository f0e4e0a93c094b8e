"""The chat screen: the conversation list, the messages, the message box and the status bar.

Everything it does goes through the :class:`Session` (conversations, turns) and the session's
:class:`ModelManager` (loading and switching models); it never touches the store or the engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Static, TextArea

from assistant import AssistantError
from assistant.chat import attach
from assistant.chat import persona as personas
from assistant.chat.attach import Attachment
from assistant.chat.session import Session, resumable
from assistant.config import Config, save
from assistant.models.manager import ModelManager
from assistant.storage.store import Message as StoredMessage
from assistant.tui import mentions
from assistant.tui.distill_job import DistillJob, Outcome, Progress
from assistant.tui.keys import ACTIONS, BUSY_ACTIONS, bindings, key_label, key_of, key_rows
from assistant.tui.screens.dialogs import ConfirmScreen, TextInputScreen
from assistant.tui.screens.escalation import approver
from assistant.tui.screens.help import HelpScreen, help_markdown
from assistant.tui.screens.models import ModelPickerScreen, gguf_files, model_choices
from assistant.tui.screens.personas import NO_PERSONA, PersonaPickerScreen
from assistant.tui.screens.settings import SettingsScreen, SettingsValues
from assistant.tui.streaming import AnswerDelta, AnswerDone, AnswerStream
from assistant.tui.widgets.distill_bar import DistillBar
from assistant.tui.widgets.message import ChatView, MessageView, ShownFile, code_blocks, message_meta
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar

MODEL_POLL_S = 4.0
HINT_DELAY_S = 0.3  # the files named in the message box are counted this long after the last key
NARROW_COLUMNS = 80  # below this width the sidebar collapses (Ctrl+B still shows it)
RESUME_NOTE = (
    "⚠ incomplete — press [b]$continue_key[/b] to [@click=screen.continue_answer]continue[/] "
    "or [b]$regenerate_key[/b] to [@click=screen.regenerate]regenerate[/]"
)


class ModelReady(Message):
    def __init__(self, key: str, error: str = "", swapped: bool = False) -> None:
        super().__init__()
        self.key, self.error, self.swapped = key, error, swapped


class DistillProgress(Message):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class DistillEnded(Message):
    def __init__(self, name: str, outcome: Outcome) -> None:
        super().__init__()
        self.name, self.outcome = name, outcome


class ChatScreen(Screen[None]):
    """Chat with the on-device model."""

    BINDINGS = [b for b in bindings() if b.action != "quit"]  # quit is the app's (it works over any dialog)

    generating: reactive[bool] = reactive(False, init=False)

    def __init__(self, session: Session, config: Config, *, open_latest: bool = True) -> None:
        super().__init__()
        self.session, self.config, self.open_latest = session, config, open_latest
        self.stream = AnswerStream()
        self._mounted = asyncio.Event()
        self.turns_done = 0  # answers finished (or stopped) on this screen
        self._answer: MessageView | None = None  # the answer being streamed
        self._editing: MessageView | None = None  # the user message being edited
        self._queued: tuple[str, str] | None = None  # ("send", text) or ("continue", "") asked before the model loaded
        self._quitting = False
        self._failed_key = ""  # the model that failed to load, when none serves
        self._hint_timer: Timer | None = None
        self.distill_job: DistillJob | None = None  # a persona being distilled in its own process
        self.distill_args: list[str] = []  # more arguments for `distill persona` (the tests' tiny recipe: --ci)
        self._narrow = False  # the terminal is narrower than NARROW_COLUMNS (the sidebar collapses)
        self._seen_files: dict[Path, int] = {}
        self._announced: set[Path] = set()  # model files present at start or already announced

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
    def models(self) -> ModelManager:
        return self.session.models

    async def on_mount(self) -> None:
        persona = self.session.persona
        self.status.show(policy=self.config.escalation.policy, persona=persona.name if persona else "")
        if self.models.ready:
            self.status.show(model=self.models.name, n_ctx=self.models.n_ctx)
            self._warn_if_base_model()
        else:
            self.status.show(model=self.models.key, state="loading model…")
            self._load_model(self.models.key)
        await self.refresh_sidebar()
        await self.open_conversation(self.session.latest() if self.open_latest else None)
        self._seen_files = gguf_files()
        self._announced = set(self._seen_files)
        self.set_interval(MODEL_POLL_S, self.poll_models)
        self._fit_width(self.size.width)
        self.prompt.focus()
        self._mounted.set()

    async def mounted(self, timeout: float) -> None:
        """Wait until the screen has composed and opened its first conversation (at most ``timeout`` s)."""
        await asyncio.wait_for(self._mounted.wait(), timeout)

    def _welcome(self) -> str:
        model = self.models.name or "the on-device model"
        return (
            f"Ask anything. Answers come from {model}, running on this device.\n\n"
            "Enter sends · Ctrl+J new line · Esc stops · F1 help · Ctrl+P all commands"
        )

    def on_resize(self, event: events.Resize) -> None:
        self._fit_width(event.size.width)

    def _fit_width(self, width: int) -> None:
        """Hide the sidebar when the terminal becomes narrow (and show it again when it widens)."""
        narrow = width < NARROW_COLUMNS
        if narrow != self._narrow and self.query("#sidebar"):  # (a resize may come before the widgets exist)
            self._narrow = narrow
            self.sidebar.display = not narrow

    # -- conversations
    async def refresh_sidebar(self) -> None:
        await self.sidebar.show_conversations(self.session.conversations(), self.session.conversation_id)

    async def open_conversation(self, conversation_id: int | None, message_id: int | None = None) -> None:
        if self.generating:
            self.notify("Still answering: press Esc to stop first", severity="warning")
            return
        self._cancel_edit()
        messages = self.session.open(conversation_id)
        files = {
            m["id"]: found for m in messages if m["role"] == "user" and (found := self.session.attachments(m["id"]))
        }
        await self.chat.show(messages, self._welcome(), files)
        self._offer_resume(messages[-1] if messages else None)
        self._show_versions()
        self.sidebar.select(conversation_id)
        self._show_stored_stats(messages)
        if message_id is not None and not self.chat.jump_to(message_id):
            self.notify("That message is no longer there", severity="warning")

    def _show_stored_stats(self, messages: list[StoredMessage]) -> None:
        answers = [m for m in messages if m.role == "assistant"]
        if not answers:
            self.status.show(context_used=0, tokens_per_s=0.0, ttft_s=0.0, escalated=False)
            return
        last = answers[-1]
        self.status.show(
            context_used=(last.prompt_tokens or 0) + (last.completion_tokens or 0),
            tokens_per_s=last.tokens_per_s or 0.0,
            ttft_s=last.ttft_s or 0.0,
            escalated=last.escalated,
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
        dialog = TextInputScreen("Rename conversation", self.session.title(conversation_id))
        title = await self.app.push_screen_wait(dialog)
        if title:
            self.session.rename(conversation_id, title)
            await self.refresh_sidebar()

    @work
    async def action_delete_conversation(self) -> None:
        conversation_id = self._target_conversation()
        if conversation_id is None:
            self.notify("Nothing to delete", severity="warning")
            return
        title = self.session.title(conversation_id) or "(untitled)"
        if not await self.app.push_screen_wait(ConfirmScreen(f"Delete “{title}” and all its messages?")):
            return
        current = conversation_id == self.session.conversation_id
        self.session.delete(conversation_id)
        if current:
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
        self.sidebar.show_results(self.session.search(query, limit=30), query)

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
        if not self.models.ready and self.models.error:
            self.notify(self._load_failure(), title="No model", severity="error", markup=False)
            return  # the message stays in the box
        if not self.models.ready:
            self.prompt.clear()
            self._queued = ("send", event.text)
            self.notify("The model is still loading; your message goes out as soon as it is ready")
            return
        await self._send(event.text)

    def _with_files(self, text: str, kept: list[Attachment]) -> tuple[str, list[Attachment]] | None:
        """(the question, ``kept`` files and its ``@path`` files read and counted); None, with one line shown,
        if a file cannot go."""
        question, paths = mentions.split(text)
        question = question.strip() if paths or kept else text
        try:
            attachments = [*kept, *(attach.read(path) for path in paths)]
            if attachments:
                self.session.check_attachments(attachments, question)
        except AssistantError as exc:
            self.notify(str(exc), title="Not sent", severity="error", markup=False)
            return None
        return question, attachments

    async def _send(self, text: str) -> None:
        """Send ``text`` (its ``@path`` files attached); a file that cannot go leaves the text in the box."""
        kept = [f.attachment() for f in self._editing.files] if self._editing is not None else []
        prepared = self._with_files(text, kept)
        if prepared is None:
            if not self.prompt.text:
                self.prompt.text = text
            return
        self.prompt.clear()
        question, attachments = prepared
        kind = "send"
        if self._editing is not None:
            await self.chat.remove_from(self._editing)
            self._cancel_edit()
            kind = "resend"
        new = self.session.conversation_id is None
        self.session.ensure_conversation(title=(question.strip() or text.strip()).splitlines()[0])
        shown = [ShownFile(a.name, a.size, a.tokens, a.text, a.sha256) for a in attachments]
        await self.chat.add(MessageView("user", question, files=shown))
        await self._begin_answer(kind, attach.compose(question, attachments), attachments=attachments)
        if new:
            await self.refresh_sidebar()

    async def action_regenerate(self) -> None:
        last = self.chat.last("assistant")
        if not self.models.ready or self.session.conversation_id is None or self.chat.last("user") is None:
            self.notify("Nothing to regenerate yet", severity="warning")
            return
        if last is not None and last is self.chat.views()[-1]:
            await self.chat.remove_from(last)
        await self._begin_answer("regenerate", "")

    async def action_continue_answer(self) -> None:
        views = self.chat.views()
        if not views or not views[-1].resumable:
            self.notify("No incomplete answer to continue", severity="warning")
        elif not self.models.ready and self.models.error:
            self.notify(self._load_failure(), title="No model", severity="error", markup=False)
        elif not self.models.ready:
            self._queued = ("continue", "")
            self.notify("The model is still loading; the answer continues as soon as it is ready")
        else:
            await self._begin_answer("continue", "", views[-1])

    def _offer_resume(self, last: StoredMessage | None) -> None:
        """Mark the last answer if it is incomplete (continue or regenerate it); unmark the others."""
        views = self.chat.views()
        target = views[-1] if views and last and views[-1].message_id == last.id and resumable(last) else None
        for view in views:
            if view is target:
                view.offer_resume(self._resume_note())
            elif view.resumable:
                view.offer_resume(None)

    def _resume_note(self) -> Content:
        keymap = self.config.ui.keys
        return Content.from_markup(
            RESUME_NOTE,
            continue_key=key_label(key_of(keymap, "continue_answer")),
            regenerate_key=key_label(key_of(keymap, "regenerate")),
        )

    def action_edit_last(self) -> None:
        last = self.chat.last("user")
        if last is None:
            self.notify("No message to edit yet", severity="warning")
            return
        self._editing = last
        self.prompt.text = last.source
        self.prompt.move_cursor(self.prompt.document.end)
        files = f" (with its {len(last.files)} file{'s' if len(last.files) > 1 else ''})" if last.files else ""
        self.prompt.border_title = f"editing your last message{files} · Enter resends · Esc cancels"
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

    async def _begin_answer(
        self, kind: str, text: str, view: MessageView | None = None, attachments: list[Attachment] | None = None
    ) -> None:
        """Stream an answer into a new message view, or (continuing) into ``view``."""
        self._offer_resume(None)
        if view is None:
            view = await self.chat.add(MessageView("assistant", meta=self.models.name))
        else:
            view.set_meta(f"{self.models.name} · continuing…")
        self._answer = view
        self._answer.start_stream(self.session.reasoning_starts_inside())
        self.stream.begin()
        self.generating = True
        self._drain_timer = self.set_interval(0.2, self._drain)  # pieces held back by the worker's rate limit
        self._generate(kind, text, attachments or [])

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, kind: str, text: str, attachments: list[Attachment]) -> None:
        """Runs in a thread: the session's stream for this kind of turn, pumped to the screen."""
        approve = approver(self.app, lambda: self.session.last.route.get("reason", ""))
        if kind == "send":
            stream = self.session.send(text, approve=approve, attachments=attachments)
        elif kind == "resend":
            stream = self.session.resend(text, approve=approve, attachments=attachments)
        elif kind == "continue":
            stream = self.session.continue_()
        else:
            stream = self.session.regenerate(approve=approve)
        self.stream.pump(stream, self.post_message)

    async def _drain(self) -> None:
        """Append everything streamed so far to the answer on screen."""
        text = self.stream.take()
        if text and self._answer is not None:
            await self._answer.write(text)

    @on(AnswerDelta)
    async def _answer_delta(self) -> None:
        await self._drain()

    @on(AnswerDone)
    async def _answer_done(self, event: AnswerDone) -> None:
        self._drain_timer.stop()
        if self._quitting:  # the answer is stored; the screen is going away
            return
        await self._drain()
        turn, view = self.session.last, self._answer
        stored = self.session.message(turn.answer_message_id) if turn.answer_message_id else None
        if view is not None:
            await view.finish(turn.answer if not event.error else None)
            view.message_id = turn.answer_message_id or view.message_id
            view.set_meta(message_meta(stored) if stored else turn.model)
            self._offer_resume(stored)
        user = self.chat.last("user")
        if user is not None and turn.user_message_id:
            user.message_id = turn.user_message_id
        self._show_versions()
        self._answer = None
        self.generating = False
        self.turns_done += 1
        stats = turn.stats
        self.status.show(
            context_used=stats.context_used,
            n_ctx=stats.n_ctx or self.status.info.n_ctx,
            tokens_per_s=stats.tokens_per_s,
            ttft_s=stats.ttft_s,
            escalated=turn.escalated,
        )
        for note in turn.notes:
            self.notify(note, severity="warning", markup=False)
        if event.error:
            self.notify(event.error, title="Error", severity="error", markup=False)
        await self.refresh_sidebar()

    def watch_generating(self, generating: bool) -> None:
        self.set_class(generating, "-generating")
        self.status.show(state="generating…" if generating else "")
        self.refresh_bindings()

    def action_stop(self) -> None:
        if self.generating:
            self.stream.stop.set()
            self.session.cancel()  # stops the student or the teacher; the partial answer is kept
        elif self._editing is not None:
            self.prompt.clear()
            self._cancel_edit()

    async def stop_for_quit(self, timeout: float) -> None:
        """Stop the answer being streamed at its next token and wait (at most ``timeout`` s) until it is stored."""
        self._quitting = True
        if self.distill_job is not None:
            self.distill_job.cancel()  # as Ctrl-C: the run resumes when started again
        if not self.stream.idle.is_set():
            self.stream.stop.set()
            self.session.cancel()
            await asyncio.to_thread(self.stream.idle.wait, timeout)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating or self._editing is not None
        if action in BUSY_ACTIONS and self.generating:
            return None
        return True

    # -- files: ``@path`` in the message box (Tab completes the path), or the attach dialog
    @on(TextArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        if self._hint_timer is not None:
            self._hint_timer.stop()
        self._hint_timer = self.set_timer(HINT_DELAY_S, self.update_attach_hint)

    def update_attach_hint(self) -> None:
        """Above the box: the files the message names with their token counts (or why one cannot go)."""
        self._hint_timer = None
        hint = self.query_one("#attach-hint", Static)
        text = self.prompt.text
        question, paths = mentions.split(text)
        typing = mentions.typing(text)  # an @path being typed that names no file yet: its completions, not an error
        if typing is not None:
            paths = [p for p in paths if p != typing[0]]
        line = Content("")
        if typing is not None and not paths:
            found = typing[1]
            line = (
                Content.assemble(("Tab: ", "bold"), "  ".join(mentions.tail(c) for c in found[:12]))
                if found
                else Content("no file matches that path yet")
            )
        elif paths:
            try:
                files = [attach.read(path) for path in paths]
                if self.models.ready:
                    self.session.check_attachments(files, question)
                    line = Content(" · ".join(f"📎 {a.name} {a.tokens} tokens" for a in files))
                else:
                    named = " · ".join(f"📎 {a.name} {a.size:,} bytes" for a in files)
                    line = Content(named + " (tokens: model loading)")
            except AssistantError as exc:
                line = Content.assemble(("⚠ ", "bold"), str(exc)).stylize("$text-error")
        hint.update(line)
        hint.set_class(not line.plain, "-hidden")

    @on(PromptInput.Completions)
    def _completions(self, event: PromptInput.Completions) -> None:
        hint = self.query_one("#attach-hint", Static)
        if event.candidates:
            hint.update(Content.assemble(("Tab: ", "bold"), "  ".join(mentions.tail(c) for c in event.candidates)))
            hint.set_class(False, "-hidden")
        else:
            self.notify("No file matches that path", severity="warning")

    @work
    async def action_attach_file(self) -> None:
        """Ask for a path (Tab completes it) and put ``@path`` in the message box."""
        path = await self.app.push_screen_wait(
            TextInputScreen("Attach a file (its path; Tab completes)", "", suggester=mentions.PathSuggester())
        )
        if not path:
            return
        try:
            attach.read(path)
        except AssistantError as exc:
            self.notify(str(exc), title="Not attached", severity="error", markup=False)
            return
        text = self.prompt.text
        self.prompt.text = f"@{path} {text}" if text else f"@{path} "
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.focus()
        self.update_attach_hint()

    # -- versions (branches): regenerate and edit-and-resend keep the earlier ones
    def _show_versions(self) -> None:
        """Put ``◀ n/m ▶`` on each message that starts a version (the first message after its branch point)."""
        marks: dict[int, tuple[int, int, int]] = {}
        for point in self.session.branch_points():
            first = next((v for v in self.chat.views() if (v.message_id or 0) > point.parent_id), None)
            if first is not None:
                marks[id(first)] = (point.parent_id, point.active, point.count)
        for view in self.chat.views():
            view.set_versions(marks.get(id(view)))

    def action_version(self, parent_id: int, position: int) -> None:
        """The arrows' click: switch on the screen's own turn (the clicked header is redrawn away)."""
        self.call_later(self.show_version, parent_id, position)

    async def show_version(self, parent_id: int, position: int) -> None:
        """Show version ``position`` (1-based) at a branch point; the next turn continues from it."""
        if self.generating:
            self.notify("Still answering: press Esc to stop first", severity="warning")
            return
        point = next((p for p in self.session.branch_points() if p.parent_id == parent_id), None)
        if point is None or position == point.active:
            return
        if not 1 <= position <= point.count:
            edge = "first" if position < 1 else "last"
            self.notify(f"This is the {edge} version ({point.active}/{point.count})", markup=False)
            return
        try:
            self.session.switch_version(parent_id, position)
        except AssistantError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        await self.open_conversation(self.session.conversation_id)
        await self.refresh_sidebar()

    async def _step_last_version(self, step: int) -> None:
        marked = [v.versions for v in self.chat.views() if v.versions is not None]
        if not marked:
            keys = self.config.ui.keys
            self.notify(
                f"No message here has other versions ({key_label(key_of(keys, 'regenerate'))} or "
                f"{key_label(key_of(keys, 'edit_last'))} makes one)",
                severity="warning",
            )
            return
        parent_id, shown, _count = marked[-1]
        await self.show_version(parent_id, shown + step)

    async def action_previous_version(self) -> None:
        await self._step_last_version(-1)

    async def action_next_version(self) -> None:
        await self._step_last_version(1)

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
        picker = ModelPickerScreen(model_choices(self.models.registry), self.models.name or "none", self.models.key)
        self.app.push_screen(picker, self._model_picked)

    def _model_picked(self, key: str | None) -> None:
        if key:
            self.status.show(state=f"loading {Path(key).name}…")
            self._load_model(key)

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def _load_model(self, key: str) -> None:
        """Runs in a thread: load the first model, or swap; on failure the old model keeps serving."""
        try:
            swapped = self.models.load(key)
        except AssistantError as exc:
            self.post_message(ModelReady(key, str(exc)))
        else:
            self.post_message(ModelReady(key, swapped=swapped))

    def _load_failure(self, key: str = "") -> str:
        self._failed_key = key or self._failed_key
        return f"{Path(self._failed_key).name} failed to load: {self.models.error}; pick a model with Ctrl+O"

    @on(ModelReady)
    async def _model_ready(self, event: ModelReady) -> None:
        self.status.show(state="generating…" if self.generating else "")
        if event.error and self.models.ready:
            self.notify(
                f"{event.error} ({self.models.name} keeps serving)",
                title="Model not switched",
                severity="error",
                markup=False,
            )
            return
        if event.error:
            self.notify(self._load_failure(event.key), title="No model", severity="error", markup=False)
            self.status.show(model=Path(event.key).name, state="failed to load: pick a model with Ctrl+O")
            if self._queued and self._queued[0] == "send" and not self.prompt.text:
                self.prompt.text = self._queued[1]  # the message asked for while loading goes back in the box
            self._queued = None
            return
        self.status.show(model=self.models.name, n_ctx=self.models.n_ctx, context_used=0, tokens_per_s=0.0, ttft_s=0.0)
        self._warn_if_base_model()
        if event.swapped:
            self.notify(f"Now answering with {self.models.name}", markup=False)
        if welcome := self.chat.query("#welcome"):
            welcome.first().update(self._welcome())  # type: ignore[attr-defined]
        if self._queued and not self.generating:
            (kind, text), self._queued = self._queued, None
            await (self._send(text) if kind == "send" else self.action_continue_answer())

    def _warn_if_base_model(self) -> None:
        """A base (completion) model echoes and rambles when chatted with: say so (issue 19, row 7)."""
        base = self.models.base_model
        self.status.show(base_model=base)
        if base:
            from assistant.models.gguf_info import base_model_note

            self.notify(
                base_model_note(self.models.name), title="Base model", severity="warning", timeout=20, markup=False
            )

    def poll_models(self) -> None:
        """Notice new .gguf files (e.g. a freshly distilled student) once their size is stable."""
        current = gguf_files()
        for path, size in current.items():
            if path not in self._announced and self._seen_files.get(path) == size:
                self._announced.add(path)
                self.notify(
                    f"New model file {path.name}: press Ctrl+O to switch to it",
                    title="New model",
                    timeout=15,
                    markup=False,
                )
        self._seen_files = current

    # -- personas: chat as one, distil one into its own student
    def action_pick_persona(self) -> None:
        current = self.session.persona.name if self.session.persona else NO_PERSONA
        self.app.push_screen(PersonaPickerScreen(personas.all_personas(), current), self._persona_picked)

    def _persona_picked(self, name: str | None) -> None:
        if name is not None:
            self.call_later(self.use_persona, "" if name == NO_PERSONA else name)

    async def use_persona(self, name: str) -> None:
        """Start a new chat as persona ``name`` ('' for none), loading its model (or its student) if it has one."""
        if self.generating:
            self.notify("Still answering: press Esc to stop first", severity="warning")
            return
        try:
            persona = personas.load(name) if name else None
        except AssistantError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.session.use_persona(persona)
        await self.open_conversation(None)
        self.status.show(persona=persona.name if persona else "")
        self.notify(f"New chat as {name}" if name else "New chat without a persona", markup=False)
        model = persona.runtime_model() if persona else ""
        if model and model != self.models.key:
            self.status.show(state=f"loading {Path(model).name}…")
            self._load_model(model)

    def action_distill_persona(self) -> None:
        if self.distill_job is not None and self.distill_job.running:
            self.notify(
                f"Already distilling {self.distill_job.name}: Cancel it in the bar first",
                severity="warning",
                markup=False,
            )
        elif self.session.persona is not None:
            self.start_distill(self.session.persona.name)
        else:
            picker = PersonaPickerScreen(personas.all_personas(), "", title="Distil which persona?")
            self.app.push_screen(picker, lambda name: self.start_distill(name) if name and name != NO_PERSONA else None)

    def start_distill(self, name: str) -> None:
        """Run `assistant distill persona NAME` in its own process; its progress shows in the bar above the status."""
        job = DistillJob(
            name,
            lambda p: self.post_message(DistillProgress(p)),
            lambda outcome: self.post_message(DistillEnded(name, outcome)),
            self.distill_args,
        )
        try:
            job.start()
        except OSError as exc:
            self.notify(f"cannot start the distillation: {exc}", severity="error", markup=False)
            return
        self.distill_job = job
        self.query_one(DistillBar).begin(name)
        self.notify(
            f"Distilling {name} in the background: keep chatting; Cancel in the bar stops it (it resumes "
            "when started again)",
            markup=False,
        )

    @on(DistillProgress)
    def _distill_progress(self, event: DistillProgress) -> None:
        self.query_one(DistillBar).show(event.progress)

    @on(Button.Pressed, "#distill-cancel")
    def action_cancel_distill(self) -> None:
        if self.distill_job is not None and self.distill_job.running:
            self.distill_job.cancel()
            self.query_one(DistillBar).show_text("cancelling…")

    @on(DistillEnded)
    def _distill_ended(self, event: DistillEnded) -> None:
        self.query_one(DistillBar).end()
        outcome, name = event.outcome, event.name
        if outcome.cancelled:
            self.notify(f"Distillation of {name} cancelled; start it again to resume where it stopped", markup=False)
        elif outcome.returncode != 0 or outcome.summary is None:
            self.notify(
                f"Distilling {name} failed: {outcome.error or f'exit code {outcome.returncode}'}",
                title="Distillation failed",
                severity="error",
                markup=False,
                timeout=20,
            )
        else:
            question = f"{name} is distilled: its student answers without the prompt. Switch to it now?"

            def switch(yes: bool | None) -> None:
                if yes:
                    self.call_later(self.use_persona, name)

            self.app.push_screen(ConfirmScreen(question, confirm="Switch"), switch)

    # -- settings and help
    def action_settings(self) -> None:
        system = self.session.system_prompt
        values = SettingsValues(
            system=system,
            system_as_default=bool(system) and system == self.config.generation.system,
            temperature=self.config.generation.temperature,
            max_tokens=self.config.generation.max_tokens,
            theme=self.app.theme,
            persona=self.session.persona.name if self.session.persona else NO_PERSONA,
        )
        screen = SettingsScreen(values, sorted(self.app.available_themes), personas.names())
        self.app.push_screen(screen, self._settings_saved)

    def _settings_saved(self, values: SettingsValues | None) -> None:
        if values is None:
            return
        if values.persona != (self.session.persona.name if self.session.persona else NO_PERSONA):
            self.call_later(self.use_persona, "" if values.persona == NO_PERSONA else values.persona)
        self.session.set_system_prompt(values.system)
        if values.system_as_default or self.session.conversation_id is None:
            self.config.generation.system = values.system
        self.config.generation.temperature = values.temperature
        self.config.generation.max_tokens = values.max_tokens
        self.config.ui.theme = values.theme
        self.app.theme = values.theme
        try:
            path = save(self.config)
        except OSError as exc:
            self.notify(f"could not save settings: {exc}", severity="error", markup=False)
            return
        self.notify(f"Settings saved to {path}", markup=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(help_markdown(key_rows(self.config.ui.keys))))

    def palette_actions(self) -> list[tuple[str, str, Any]]:
        """(title, help, callback) of every action the command palette offers."""
        return [(a.palette[0], a.palette[1], getattr(self, f"action_{a.name}")) for a in ACTIONS if a.palette]
