"""The sidebar: a search box over the history and the conversations, newest first."""

from __future__ import annotations

import re
from typing import Any

from textual import on
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView, OptionList
from textual.widgets.option_list import Option

from assistant.storage.store import Conversation, SearchHit
from assistant.text_safety import sanitize as clean


def excerpt(text: str, query: str, width: int = 90) -> Content:
    """Up to ``width`` characters of ``text`` around the first query term, the terms highlighted."""
    flat = " ".join(text.split())
    terms = [t for t in (re.escape(w) for w in query.lower().split()) if t]
    pattern = re.compile("|".join(terms), re.I) if terms else None
    first = pattern.search(flat) if pattern else None
    start = max(0, first.start() - width // 3) if first else 0
    window = ("…" if start else "") + flat[start : start + width] + ("…" if start + width < len(flat) else "")
    content = Content(window)
    if pattern:
        for match in pattern.finditer(window):
            content = content.stylize("bold reverse", match.start(), match.end())
    return content


class ConversationItem(ListItem):
    """A conversation in the list: its title, after the persona it is held as (if any)."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation_id = conversation.id
        title = clean(conversation.title).replace("\n", " ") or "(untitled)"
        persona = (f"{clean(conversation.persona)} · ", "italic $text-accent") if conversation.persona else ""
        super().__init__(Label(Content.assemble(persona, title), classes="conversation-title"))


class Sidebar(Vertical):
    """Search box, search results (while searching) and the conversation list."""

    class Opened(Message):
        """The user picked a conversation (and maybe a message in it)."""

        def __init__(self, conversation_id: int, message_id: int | None = None) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.message_id = message_id

    def compose(self):  # noqa: ANN201
        yield Input(placeholder="Search history…", id="search")
        yield OptionList(id="results", classes="-hidden")
        yield ListView(id="conversations")

    async def show_conversations(self, conversations: list[Conversation], current: int | None) -> None:
        listing = self.query_one("#conversations", ListView)
        await listing.clear()
        await listing.extend(ConversationItem(c) for c in conversations)
        self.select(current)

    def select(self, conversation_id: int | None) -> None:
        listing = self.query_one("#conversations", ListView)
        for index, item in enumerate(listing.children):
            if isinstance(item, ConversationItem) and item.conversation_id == conversation_id:
                listing.index = index
                return
        listing.index = None

    def show_results(self, results: list[SearchHit], query: str) -> None:
        options = self.query_one("#results", OptionList)
        options.clear_options()
        for index, row in enumerate(results):
            who = "You" if row.role == "user" else "AI"
            if index:
                options.add_option(None)
            text = Content.assemble((f"{who}: ", "bold"), excerpt(clean(row.content), query))
            options.add_option(Option(text, id=f"{row.conversation_id}:{row.id}"))
        if results:
            options.highlighted = 0
        else:
            options.add_option(Option(Content("no matches"), disabled=True))
        self._searching(True)

    def clear_search(self) -> None:
        self.query_one("#search", Input).value = ""
        self._searching(False)

    def _searching(self, on: bool) -> None:
        self.query_one("#results").set_class(not on, "-hidden")
        self.query_one("#conversations").set_class(on, "-hidden")

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#results").focus()

    @on(ListView.Selected, "#conversations")
    def _picked_conversation(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Opened(event.item.conversation_id))

    @on(OptionList.OptionSelected, "#results")
    def _picked_result(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            conversation_id, message_id = (int(part) for part in event.option.id.split(":"))
            self.post_message(self.Opened(conversation_id, message_id))

    def on_key(self, event: Any) -> None:
        search = self.query_one("#search", Input)
        if event.key == "escape" and search.value:
            event.stop()
            self.clear_search()
            search.focus()
        elif event.key == "down" and search.has_focus:  # down from the box into the results (or the list)
            event.stop()
            self.query_one("#conversations" if self.query_one("#results").has_class("-hidden") else "#results").focus()

    @property
    def highlighted_id(self) -> int | None:
        item = self.query_one("#conversations", ListView).highlighted_child
        return item.conversation_id if isinstance(item, ConversationItem) else None
