"""The bar of a persona distillation running in the background: phase, progress, rate, ETA and Cancel.

It fits 80 columns: below ``WIDE`` columns the title is the persona's name alone and the phase drops its details.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Button, Label, ProgressBar

from assistant.tui.distill_job import Progress, Rate, describe

WIDE = 120  # from this width the title says "distilling"


class DistillBar(Horizontal):
    """Shown while a ``distill persona`` job runs (hidden otherwise)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rate = Rate()
        self.persona = ""
        self.text = ""
        self.progress: Progress | None = None  # the last progress shown (the line is fitted again on a resize)

    def compose(self) -> ComposeResult:
        yield Label(id="distill-title")
        yield Label(id="distill-text")
        yield Button("Cancel", id="distill-cancel", compact=True)

    def begin(self, persona: str) -> None:
        self.persona, self.rate, self.progress = persona, Rate(), None
        # mounted only while a job runs: an indeterminate bar redraws 15 times a second, even hidden
        self.query(ProgressBar).remove()
        bar = ProgressBar(total=None, show_eta=False, show_percentage=False, id="distill-progress")
        self.mount(bar, after="#distill-title")
        self.show_text("starting…")
        self.display = True

    def show(self, progress: Progress) -> None:
        self.progress = progress
        self.rate.update(progress)
        for bar in self.query(ProgressBar):
            bar.update(total=progress.total if progress.total > 1 else None, progress=progress.done)
        self._fit()

    def show_text(self, text: str) -> None:
        self.progress = None
        self.text = text
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The title and the line, fitted to the bar's width (none yet: as they are)."""
        width = self.size.width
        title = f"⚗ distilling {self.persona}" if not width or width >= WIDE else f"⚗ {self.persona}"
        self.query_one("#distill-title", Label).update(Content(title).stylize("bold"))
        if self.progress is not None:
            others = sum(w.outer_size.width for w in self.query("#distill-progress, #distill-cancel"))
            room = width - len(title) - others - 2  # the title's and the text's margins
            self.text = describe(self.progress, self.rate, max(1, room) if width else 0)
        self.query_one("#distill-text", Label).update(Content(self.text))

    def end(self) -> None:
        self.display = False
        self.query(ProgressBar).remove()
