"""One message in the chat (an answer rendered as Markdown, streamed in place) and the scrolling chat view."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import events
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import var
from textual.widgets import Collapsible, LoadingIndicator, Markdown, Static
from textual.widgets.markdown import MarkdownFence, MarkdownStream

from assistant.chat.attach import Attachment, unpack
from assistant.chat.branches import BranchPoint
from assistant.chat.grounding import Source, stored_sources
from assistant.chat.reasoning import ReasoningFilter, split
from assistant.chat.session import resumable
from assistant.storage.store import AttachmentRecord, Message
from assistant.text_safety import sanitize as clean
from assistant.tui.keys import key_label, key_of

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<code>.*?)(?:^(?P=fence)[ \t]*$|\Z)", re.S | re.M)

FINISH_LABELS = {  # how a stored answer ended (``Message.finish_reason``), in its header
    "cancelled": "stopped",
    "length": "cut at the token limit",
    "failed": "failed: cut short by a write error (disk full?)",  # kept as far as it got; the rest could not be saved
}
RESUME_NOTE = (
    "⚠ incomplete — press [b]$continue_key[/b] to [@click=screen.link('continue_answer')]continue[/] "
    "or [b]$regenerate_key[/b] to [@click=screen.link('regenerate')]regenerate[/]"
)


def welcome(model: str) -> str:
    """What an empty chat shows."""
    return (
        f"Ask anything. Answers come from {model or 'the on-device model'}, running on this device.\n\n"
        "Enter sends · Ctrl+J new line · Esc stops · F1 help · Ctrl+P all commands"
    )


def resume_note(keymap: dict[str, str]) -> Content:
    """The note under an incomplete answer: its keys (with the user's keymap) and links continue or regenerate it."""
    return Content.from_markup(
        RESUME_NOTE,
        continue_key=key_label(key_of(keymap, "continue_answer")),
        regenerate_key=key_label(key_of(keymap, "regenerate")),
    )


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order (an unclosed last fence counts)."""
    return [m.group("code").rstrip("\n") for m in FENCE.finditer(markdown)]


@dataclass
class ShownFile:
    """A file attached to a message, as its fold shows it."""

    name: str
    size: int
    tokens: int
    text: str
    sha256: str = ""

    def attachment(self) -> Attachment:
        """The file as an attachment again (edit-and-resend sends it with the new question)."""
        return Attachment(self.name, self.text, self.size, self.sha256, self.tokens)

    def title(self) -> str:
        return f"📎 {self.name} · {self.tokens} tokens · {self.size:,} bytes"


class MessageView(Vertical):
    """A user or assistant message: a one-line header, its attached files (folded) and its text (an answer is
    rendered Markdown; the user's own text is shown as typed)."""

    def __init__(
        self,
        role: str,
        content: str = "",
        *,
        message_id: int | None = None,
        meta: str = "",
        files: list[ShownFile] | None = None,
        sources: list[Source] | None = None,
    ) -> None:
        super().__init__(classes=f"message -{role}")
        self.role = role
        self.message_id = message_id
        self.files = files or []
        self.sources = sources or []  # the documents an answer drew on, folded under it
        self.source = clean(content)  # the question without the files' blocks when there are files; the whole answer
        self.reasoning, self.answer = split(self.source) if role == "assistant" else ("", self.source)
        self.meta = meta
        self.resumable = False  # an incomplete answer offered for continue / regenerate
        self.versions: tuple[int, int, int] | None = None  # (branch point, shown, count): ``◀ 2/3 ▶`` in the header
        self._stream: MarkdownStream | None = None
        self._thinking = False
        self._filter = ReasoningFilter()
        self._starts_inside = False

    def compose(self):  # noqa: ANN201
        yield Static(self.header(), classes="message-header")
        for file in self.files:
            with Collapsible(title=clean(file.title()), collapsed=True, classes="attachment"):
                yield Static(Content(clean(file.text)), classes="attachment-text")
        if self.role == "assistant":  # the <think> block, folded above the answer (hidden when there is none)
            with Collapsible(title=self._reasoning_title(), collapsed=True, classes="reasoning"):
                yield Static(Content(self.reasoning), classes="reasoning-text")
        if self.role == "user":  # shown as typed: its line breaks, backticks and stars are the user's text
            yield Static(Content(self.source), classes="user-text")
        else:
            yield Markdown(self.answer, open_links=False)
        if self.role == "assistant":  # the documents it drew on, folded under the answer (hidden when none)
            with Collapsible(title=sources_title(self.sources), collapsed=True, classes="sources"):
                yield Static(sources_text(self.sources), classes="sources-text")
        yield Static(classes="resume-note")

    def on_mount(self) -> None:
        for fold in self.query(".reasoning"):
            fold.display = bool(self.reasoning)
        for fold in self.query(".sources"):
            fold.display = bool(self.sources)

    def set_sources(self, sources: list[Source]) -> None:
        """Show the sources of a finished answer, folded under it (click to open)."""
        self.sources = sources
        fold = self.query_one(".sources", Collapsible)
        fold.title = sources_title(sources)
        fold.display = bool(sources)
        self.query_one(".sources-text", Static).update(sources_text(sources))

    def _reasoning_title(self, thinking: bool = False) -> str:
        words = len(self.reasoning.split())
        return f"💭 Thinking… ({words} words)" if thinking else f"💭 Reasoning ({words} words)"

    def _show_reasoning(self, thinking: bool) -> None:
        fold = self.query_one(".reasoning", Collapsible)
        fold.display = bool(self.reasoning)
        fold.title = self._reasoning_title(thinking)
        self.query_one(".reasoning-text", Static).update(Content(self.reasoning))

    def header(self) -> Content:
        """Who, the versions (``◀ 2/3 ▶``, clickable) if there are others, then the meta line."""
        who = "You" if self.role == "user" else "Assistant"
        arrows = Content("")
        if self.versions is not None:
            parent, shown, count = self.versions
            arrows = Content.from_markup(
                f"  [@click=screen.version({parent},{shown - 1})]◀[/] {shown}/{count} "
                f"[@click=screen.version({parent},{shown + 1})]▶[/]"
            ).stylize("bold")
        return Content.assemble((who, "bold"), arrows, (f"  {self.meta}" if self.meta else "", "dim"))

    def set_versions(self, versions: tuple[int, int, int] | None) -> None:
        """Show ``◀ shown/count ▶`` (clickable) for a message with other versions; None hides it."""
        if versions != self.versions:
            self.versions = versions
            self.query_one(".message-header", Static).update(self.header())

    def set_meta(self, meta: str) -> None:
        self.meta = meta
        self.query_one(".message-header", Static).update(self.header())

    def offer_resume(self, note: Content | None) -> None:
        """Show ``note`` under this (incomplete) answer, offering to continue it; None hides it."""
        self.resumable = note is not None
        self.set_class(self.resumable, "-resumable")
        self.query_one(".resume-note", Static).update(note or "")

    # -- streaming
    def start_stream(self, starts_inside: bool = False) -> None:
        """Stream into this message: a new answer, or more of an incomplete one (appended).

        ``<think>`` reasoning streams into the fold above the answer (``starts_inside``: the chat template
        opened the block in the prompt)."""
        self.mount(LoadingIndicator(classes="thinking"))
        self._thinking = True
        self._starts_inside = starts_inside
        self._filter = ReasoningFilter(starts_inside)
        self._filter.feed(self.source)  # continuing: the filter picks up where the partial answer stopped
        self._stream = Markdown.get_stream(self.query_one(Markdown))

    async def write(self, text: str) -> None:
        if self._stream is None:
            return
        if self._thinking:
            self._thinking = False
            await self.query(".thinking").remove()
        self.source += text
        reasoning, answer = self._filter.feed(text)
        if reasoning:
            self.reasoning += reasoning
            self._show_reasoning(thinking=True)
        if answer:
            self.answer += answer
            await self._stream.write(answer)

    async def finish(self, final_text: str | None = None) -> None:
        """Flush the stream; if the stored answer differs from what was shown, show the stored one."""
        self._thinking = False
        await self.query(".thinking").remove()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if final_text is not None:
            self.source = clean(final_text)
        reasoning, answer = split(self.source, self._starts_inside)
        if reasoning or self.reasoning:
            self.reasoning = reasoning
            self._show_reasoning(thinking=False)
        if answer != self.answer:
            self.answer = answer
            await self.query_one(Markdown).update(answer)

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def on_click(self, event: events.Click) -> None:
        """Clicking a code block copies it."""
        widget: Any = event.widget
        while widget is not None and widget is not self:
            if isinstance(widget, MarkdownFence):
                self.app.copy_to_clipboard(widget.code)
                self.app.notify(f"Copied code block ({len(widget.code)} chars)")
                return
            widget = widget.parent


class ChatView(VerticalScroll):
    """The messages of the current conversation, newest at the bottom, kept scrolled to the end.

    A click in it (a code block, a link, an arrow) leaves the focus where it was: typing goes on into the box."""

    generating: var[bool] = var(False, init=False)  # an answer is being streamed into the last message

    def on_mount(self) -> None:
        self.anchor()

    def focus_on_click(self) -> bool:
        return False

    async def show(
        self, messages: list[Message], welcome: str = "", files: dict[int, list[AttachmentRecord]] | None = None
    ) -> None:
        """Show stored messages; ``files`` holds the attachment records of the messages that have some."""
        await self.remove_children()
        if not messages:
            await self.mount(Static(welcome, id="welcome"))
            return
        await self.mount_all(stored_view(m, (files or {}).get(m.id, [])) for m in messages)
        self.anchor()

    async def add(self, view: MessageView) -> MessageView:
        await self.query("#welcome").remove()
        await self.mount(view)
        self.anchor()
        return view

    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    def last(self, role: str) -> MessageView | None:
        found = [v for v in self.views() if v.role == role]
        return found[-1] if found else None

    async def remove_from(self, view: MessageView) -> None:
        """Remove ``view`` and every message after it."""
        views = self.views()
        await self.remove_children(views[views.index(view) :])

    def set_welcome(self, text: str) -> None:
        """Change the text an empty chat shows (no-op once it has messages)."""
        for shown in self.query("#welcome").results(Static):
            shown.update(text)

    def mark_versions(self, points: list[BranchPoint]) -> None:
        """Put ``◀ n/m ▶`` on each message that starts a version (the first message after its branch point)."""
        marks: dict[int, tuple[int, int, int]] = {}
        for point in points:
            first = next((v for v in self.views() if (v.message_id or 0) > point.parent_id), None)
            if first is not None:
                marks[id(first)] = (point.parent_id, point.active, point.count)
        for view in self.views():
            view.set_versions(marks.get(id(view)))

    def offer_resume(self, last: Message | None, note: Content | None = None) -> None:
        """Show ``note`` under the last answer if it is ``last`` and incomplete; take it off the others."""
        views = self.views()
        target = views[-1] if views and last and views[-1].message_id == last.id and resumable(last) else None
        for view in views:
            if view is target:
                view.offer_resume(note)
            elif view.resumable:
                view.offer_resume(None)

    def jump_to(self, message_id: int) -> bool:
        """Scroll to a message and mark it as found."""
        found = False
        for view in self.views():
            view.set_class(view.message_id == message_id, "-found")
            if view.message_id == message_id:
                found = True
                self.release_anchor()
                self.call_after_refresh(self.scroll_to_widget, view, animate=False, top=True)
        return found


def stored_view(message: Message, records: list[AttachmentRecord]) -> MessageView:
    """The view of a stored message; its attached files fold above the question."""
    content, shown = message.content, []
    if records:
        texts, question = unpack(content, [r.name for r in records])
        if texts:
            content = question
            shown = [ShownFile(r.name, r.size, r.tokens, t, r.sha256) for r, t in zip(records, texts, strict=True)]
    return MessageView(
        message.role,
        content,
        message_id=message.id,
        meta=message_meta(message),
        files=shown,
        sources=stored_sources(message.sources),
    )


def sources_title(sources: list[Source]) -> str:
    return f"📚 Sources ({len(sources)})"


def sources_text(sources: list[Source]) -> Content:
    """One line per source: its number (as the prompt numbered it), file name, lines, and the full path."""
    lines = [
        Content.assemble(
            (f"[{n}] ", "bold"),
            clean(Path(s.path).name),
            f" · lines {s.start_line}-{s.end_line}  ",
            (clean(s.path), "dim"),
        )
        for n, s in enumerate(sources, 1)
    ]
    return Content("\n").join(lines)


def message_meta(message: Message) -> str:
    """The header line of a stored message: model, escalation and how it ended (no timings)."""
    if message.role != "assistant":
        return ""
    parts = [message.model]
    if message.escalated:
        parts[0] = f"⇡ escalated to teacher {parts[0]}".rstrip()
    if label := FINISH_LABELS.get(message.finish_reason):
        parts.append(label)
    elif not message.complete:
        parts.append("incomplete")
    return " · ".join(p for p in parts if p)
