"""Versions (branches): regenerate and edit-and-resend keep the earlier answers and questions; ``◀ n/m ▶`` on the
message that starts a version (or Alt+←/→ on the last one) switches them, and the next turn continues from it."""

from __future__ import annotations

from textual.screen import Screen

from assistant import AssistantError
from assistant.chat.session import Session
from assistant.config import Config
from assistant.tui.controllers.base import Controller
from assistant.tui.controllers.conversations import Conversations
from assistant.tui.keys import key_label, key_of


class Versions(Controller):
    """Switches the version shown at a branch point."""

    def __init__(self, screen: Screen[None], session: Session, config: Config, *, conversations: Conversations) -> None:
        super().__init__(screen, session, config)
        self.conversations = conversations

    async def show(self, parent_id: int, position: int) -> None:
        """Show version ``position`` (1-based) at a branch point; the next turn continues from it."""
        if self.chat.generating:
            self.screen.notify("Still answering: press Esc to stop first", severity="warning")
            return
        point = next((p for p in self.session.branch_points() if p.parent_id == parent_id), None)
        if point is None or position == point.active:
            return
        if not 1 <= position <= point.count:
            edge = "first" if position < 1 else "last"
            self.screen.notify(f"This is the {edge} version ({point.active}/{point.count})", markup=False)
            return
        try:
            self.session.switch_version(parent_id, position)
        except AssistantError as exc:
            self.screen.notify(str(exc), severity="error", markup=False)
            return
        await self.conversations.open(self.session.conversation_id)
        await self.conversations.refresh()

    async def step(self, step: int) -> None:
        """Show the previous (-1) or next (1) version of the last message that has versions."""
        marked = [v.versions for v in self.chat.views() if v.versions is not None]
        if not marked:
            keys = self.config.ui.keys
            self.screen.notify(
                f"No message here has other versions ({key_label(key_of(keys, 'regenerate'))} or "
                f"{key_label(key_of(keys, 'edit_last'))} makes one)",
                severity="warning",
            )
            return
        parent_id, shown, _count = marked[-1]
        await self.show(parent_id, shown + step)
