"""Conversations: open one (its messages, versions, resume note and stats), rename, delete and search them."""

from __future__ import annotations

from collections.abc import Callable

from assistant.storage.store import Message
from assistant.tui.controllers.base import Controller
from assistant.tui.screens.dialogs import ConfirmScreen, TextInputScreen
from assistant.tui.widgets.message import resume_note, welcome


class Conversations(Controller):
    """Opens, renames, deletes and searches the conversations the sidebar lists."""

    follow_persona: Callable[[], None] | None = None  # called once a conversation is open (the personas controller)

    async def refresh(self) -> None:
        """List the conversations in the sidebar again, the open one selected."""
        await self.sidebar.show_conversations(self.session.conversations(), self.session.conversation_id)

    async def open(self, conversation_id: int | None, message_id: int | None = None) -> None:
        """Show a conversation (None: a new one), scrolled to ``message_id`` when given."""
        if self.chat.generating:
            self.screen.notify("Still answering: press Esc to stop first", severity="warning")
            return
        self.prompt.cancel_edit()
        messages = self.session.open(conversation_id)
        files = {
            m["id"]: found for m in messages if m["role"] == "user" and (found := self.session.attachments(m["id"]))
        }
        chat = self.chat
        await chat.show(messages, welcome(self.models.name), files)
        chat.offer_resume(messages[-1] if messages else None, resume_note(self.config.ui.keys))
        chat.mark_versions(self.session.branch_points())
        self.sidebar.select(conversation_id)
        self.status.show(persona=self.persona_of(conversation_id))
        if self.session.persona_problem:
            self.screen.notify(self.session.persona_problem, severity="warning", markup=False)
        if self.follow_persona is not None:
            self.follow_persona()
        self._show_stats(messages)
        if message_id is not None and not chat.jump_to(message_id):
            self.screen.notify("That message is no longer there", severity="warning")

    def persona_of(self, conversation_id: int | None) -> str:
        """The persona a conversation is held as ('' for none); for a new one, the persona new chats start with."""
        if conversation_id is None:
            return self.session.persona.name if self.session.persona else ""
        return next((c.persona for c in self.session.conversations() if c.id == conversation_id), "")

    def _show_stats(self, messages: list[Message]) -> None:
        """The status bar's context and speed: those of the conversation's last answer."""
        answers = [m for m in messages if m.role == "assistant"]
        if not answers:
            self.status.show(context_used=0, tokens_per_s=0.0, ttft_s=0.0, draft_acceptance=None, escalated=False)
            return
        last = answers[-1]
        self.status.show(
            context_used=(last.prompt_tokens or 0) + (last.completion_tokens or 0),
            tokens_per_s=last.tokens_per_s or 0.0,
            ttft_s=last.ttft_s or 0.0,
            draft_acceptance=None,  # not stored: shown only for the answer just generated
            escalated=last.escalated,
        )

    def _target(self) -> int | None:
        """The conversation highlighted in the sidebar when it has focus, else the open one."""
        focused = self.screen.focused
        if focused is not None and focused.id == "conversations" and self.sidebar.highlighted_id:
            return self.sidebar.highlighted_id
        return self.session.conversation_id

    async def rename(self) -> None:
        """Ask for a new title (call it from a worker: it waits for the dialog)."""
        conversation_id = self._target()
        if conversation_id is None:
            self.screen.notify("Nothing to rename yet: send a message first", severity="warning")
            return
        dialog = TextInputScreen("Rename conversation", self.session.title(conversation_id))
        title = await self.screen.app.push_screen_wait(dialog)
        if title:
            self.session.rename(conversation_id, title)
            await self.refresh()

    async def delete(self) -> None:
        """Delete a conversation once the user confirms (call it from a worker: it waits for the dialog)."""
        conversation_id = self._target()
        if conversation_id is None:
            self.screen.notify("Nothing to delete", severity="warning")
            return
        title = self.session.title(conversation_id) or "(untitled)"
        if not await self.screen.app.push_screen_wait(ConfirmScreen(f"Delete “{title}” and all its messages?")):
            return
        current = conversation_id == self.session.conversation_id
        self.session.delete(conversation_id)
        if current:
            await self.open(None)
        await self.refresh()
        self.screen.notify("Conversation deleted")

    def search(self, text: str) -> None:
        """Show the messages matching ``text`` in the sidebar (the conversations again when it is empty)."""
        query = text.strip()
        if not query:
            self.sidebar.clear_search()
            return
        self.sidebar.show_results(self.session.search(query, limit=30), query)
