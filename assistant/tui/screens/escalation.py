"""The privacy preview for the ``ask`` policy: the exact request, then Approve or Decline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea

if TYPE_CHECKING:  # for the annotation only: importing the teacher loads httpx, which stays off the chat path
    from assistant.chat.escalation.teacher import EscalationRequest


class EscalationScreen(ModalScreen[bool]):
    """Shows what would leave the device (URL, model, the body byte for byte); dismisses with the choice.

    Decline is focused first and Esc declines: nothing is sent unless the user says so.
    """

    DEFAULT_CSS = """
    EscalationScreen { align: center middle; }
    EscalationScreen > .dialog { width: 100; max-width: 95%; height: 90%; max-height: 40; }
    EscalationScreen #body { height: 1fr; min-height: 3; }
    EscalationScreen .dialog-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    EscalationScreen .dialog-buttons Button { margin-left: 1; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(False)", "Decline"),
        Binding("n", "dismiss(False)", "Decline", show=False),
        Binding("y", "dismiss(True)", "Approve", show=False),
    ]

    def __init__(self, request: EscalationRequest, reason: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.request, self.reason = request, reason

    def compose(self):  # noqa: ANN201
        request = self.request
        with Vertical(classes="dialog wide"):
            title = "Send this question to the teacher?" + (f"  ({self.reason})" if self.reason else "")
            yield Label(Content(title), classes="dialog-text", id="title")
            yield Label(Content(f"POST {request.url}"), id="url")
            yield Label(Content(f"model: {request.model}"), id="model")
            if request.sends_key:
                yield Label(Content("with your API key in the Authorization header (not shown)"), id="key")
            yield Label(Content("Exactly this body is sent; nothing else leaves the device:"), classes="dialog-text")
            yield TextArea(request.body.decode("utf-8"), read_only=True, show_line_numbers=False, id="body")
            yield Label(Content("Enter: Decline (the default) · Y: Approve · Esc: Decline"), classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Approve", variant="warning", id="approve")
                yield Button("Decline", variant="primary", id="decline")

    def on_mount(self) -> None:
        self.query_one("#decline", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "approve")


def approver(app: App, reason: Callable[[], str] | None = None) -> Callable[[EscalationRequest], bool]:
    """An ``approve`` callback for ``Session.send`` running in a thread worker.

    It shows the dialog on the app's thread and blocks until the user chooses; if the app
    stops meanwhile, the answer is no.
    """

    def approve(request: EscalationRequest) -> bool:
        chosen = threading.Event()
        result = [False]

        def done(ok: bool | None) -> None:
            result[0] = bool(ok)
            chosen.set()

        app.call_from_thread(app.push_screen, EscalationScreen(request, reason() if reason else ""), done)
        while not chosen.wait(0.1):
            if not app.is_running:
                return False
        return result[0]

    return approve
