"""The model serving the chat: load the first one, switch to another the user picks, notice new model files.

Loading runs in a worker thread; :class:`ModelReady` tells the screen when it has ended. A model that fails
to load leaves the old one serving (or, at start, none: the status bar says so).
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from textual.message import Message
from textual.screen import Screen

from assistant import AssistantError
from assistant.chat.session import Session
from assistant.config import Config
from assistant.models.gguf_info import base_model_note
from assistant.tui.controllers.base import Controller
from assistant.tui.screens.models import ModelPickerScreen, gguf_files, model_choices
from assistant.tui.widgets.message import welcome

MODEL_POLL_S = 4.0  # how often the models folder is looked at for new files


class ModelReady(Message):
    """A model load ended: ``error`` says why it failed; ``swapped``, that it replaced a model serving."""

    def __init__(self, key: str, error: str = "", swapped: bool = False) -> None:
        super().__init__()
        self.key, self.error, self.swapped = key, error, swapped


class ModelSwitch(Controller):
    """Loads and switches the model, and announces model files that appear in the models folder."""

    def __init__(self, screen: Screen[None], session: Session, config: Config) -> None:
        super().__init__(screen, session, config)
        self._failed_key = ""  # the model that failed to load, when none serves
        self._seen_files: dict[Path, int] = {}
        self._announced: set[Path] = set()  # model files present at start or already announced
        self._loading = threading.Lock()  # the model manager loads one model at a time
        self.wanted = ""  # the model last asked for while it loads ('' when no load is under way)

    def start(self) -> None:
        """Show the model serving, or start loading the first one."""
        if self.models.ready:
            self.status.show(model=self.models.name, n_ctx=self.models.n_ctx)
            self._warn_if_base_model()
        else:
            self.status.show(model=self.models.key, state="loading model…")
            self.load(self.models.key)

    def watch_folder(self) -> None:
        """From now on, announce each new model file in the models folder."""
        self._seen_files = gguf_files()
        self._announced = set(self._seen_files)
        self.screen.set_interval(MODEL_POLL_S, self.poll)

    def expect(self, path: Path) -> None:
        """A model file that something else announces when it is ready (a distilled student): poll stays quiet."""
        self._announced.add(path.resolve())

    def pick(self) -> None:
        """Open the model picker; the model picked loads."""
        picker = ModelPickerScreen(model_choices(self.models.registry), self.models.name or "none", self.models.key)
        self.screen.app.push_screen(picker, self._picked)

    def _picked(self, key: str | None) -> None:
        if key:
            self.status.show(state=f"loading {Path(key).name}…")
            self.load(key)

    def load(self, key: str) -> None:
        """Load the first model, or swap to ``key``, in a worker thread (one at a time)."""
        self.wanted = key
        self.screen.run_worker(
            partial(self._load, key), name="load model", group="model", exclusive=True, thread=True, exit_on_error=False
        )

    def _load(self, key: str) -> None:
        """Runs in a thread, one load at a time (a persona's chat opened while the first model loads waits for it):
        on failure the old model keeps serving."""
        try:
            with self._loading:
                swapped = self.models.load(key)
        except AssistantError as exc:
            self.screen.post_message(ModelReady(key, str(exc)))
        else:
            self.screen.post_message(ModelReady(key, swapped=swapped))

    def failure(self, key: str = "") -> str:
        """Why no model serves: the model that failed (``key``, or the last one) and its error."""
        self._failed_key = key or self._failed_key
        return f"{Path(self._failed_key).name} failed to load: {self.models.error}; pick a model with Ctrl+O"

    def loaded(self, event: ModelReady) -> None:
        """Say how the load ended, in the status bar and a notice."""
        models, status = self.models, self.status
        if event.key == self.wanted:
            self.wanted = ""
        status.show(state="generating…" if self.chat.generating else "")
        if event.error and models.ready:
            self.screen.notify(
                f"{event.error} ({models.name} keeps serving)",
                title="Model not switched",
                severity="error",
                markup=False,
            )
            return
        if event.error:
            self.screen.notify(self.failure(event.key), title="No model", severity="error", markup=False)
            status.show(model=Path(event.key).name, state="failed to load: pick a model with Ctrl+O")
            return
        # the context used stays the conversation's (the next answer counts it with this model); speeds were the
        # other model's
        status.show(model=models.name, n_ctx=models.n_ctx, tokens_per_s=0.0, ttft_s=0.0, draft_acceptance=None)
        self._warn_if_base_model()
        if event.swapped:
            self.screen.notify(f"Now answering with {models.name}", markup=False)
        self.chat.set_welcome(welcome(models.name))

    def _warn_if_base_model(self) -> None:
        """A base (completion) model echoes and rambles when chatted with: say so (issue 19, row 7)."""
        base = self.models.base_model
        self.status.show(base_model=base)
        if base:
            self.screen.notify(
                base_model_note(self.models.name), title="Base model", severity="warning", timeout=20, markup=False
            )

    def poll(self) -> None:
        """Notice new .gguf files (e.g. a freshly distilled student) once their size is stable."""
        current = gguf_files()
        for path, size in current.items():
            if path not in self._announced and self._seen_files.get(path) == size:
                self._announced.add(path)
                self.screen.notify(
                    f"New model file {path.name}: press Ctrl+O to switch to it",
                    title="New model",
                    timeout=15,
                    markup=False,
                )
        self._seen_files = current
