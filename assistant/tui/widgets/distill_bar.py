"""The bar of a persona distillation running in the background: phase, progress, rate, ETA and Cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Button, Label, ProgressBar

from assistant.tui.distill_job import Progress, Rate, describe


class DistillBar(Horizontal):
    """Shown while a ``distill persona`` job runs (hidden otherwise)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rate = Rate()
        self.persona = ""
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Label(id="distill-title")
        yield Label(id="distill-text")
        yield Button("Cancel", id="distill-cancel", compact=True)

    def begin(self, persona: str) -> None:
        self.persona, self.rate = persona, Rate()
        self.query_one("#distill-title", Label).update(Content.assemble(("⚗ distilling ", "bold"), (persona, "bold")))
        # mounted only while a job runs: an indeterminate bar redraws 15 times a second, even hidden
        self.query(ProgressBar).remove()
        self.mount(ProgressBar(total=None, show_eta=False, id="distill-progress"), after="#distill-title")
        self.show_text("starting…")
        self.display = True

    def show(self, progress: Progress) -> None:
        self.rate.update(progress)
        for bar in self.query(ProgressBar):
            bar.update(total=progress.total if progress.total > 1 else None, progress=progress.done)
        self.show_text(describe(progress, self.rate))

    def show_text(self, text: str) -> None:
        self.text = text
        self.query_one("#distill-text", Label).update(Content(text))

    def end(self) -> None:
        self.display = False
        self.query(ProgressBar).remove()
