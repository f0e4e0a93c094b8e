"""The model picker: packaged models, registry entries and new files in the models folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from assistant.config import models_dir
from assistant.models.registry import PACKAGED, Registry


@dataclass
class ModelChoice:
    key: str  # what Registry.resolve() takes: a name or a file path
    label: str
    detail: str


def gguf_files(folder: Path | None = None) -> dict[Path, int]:
    """GGUF files under the models folder (except the packaged copies), with their sizes."""
    folder = folder or models_dir()
    if not folder.is_dir():
        return {}
    found: dict[Path, int] = {}
    for path in folder.rglob("*.gguf"):
        if path.relative_to(folder).parts[0] == "packaged":
            continue
        try:
            found[path.resolve()] = path.stat().st_size
        except OSError:
            continue
    return found


def model_choices(registry: Registry) -> list[ModelChoice]:
    """Every model the user can switch to."""
    choices = [ModelChoice(p.name, p.name, f"packaged · {p.description}") for p in PACKAGED]
    registered: set[Path] = set()
    for entry in registry.entries():
        registered.add(Path(entry["path"]).resolve())
        size = f"{entry['size'] / 2**20:.0f} MiB" if entry.get("size") else ""
        detail = " · ".join(str(x) for x in (entry["origin"], entry["architecture"], entry["quantization"], size) if x)
        choices.append(ModelChoice(entry["name"], entry["name"], detail))
    for path in sorted(gguf_files()):
        if path not in registered:
            choices.append(ModelChoice(str(path), path.name, "new file in the models folder (not imported)"))
    return choices


class ModelPickerScreen(ModalScreen[str | None]):
    """Pick a model; returns its registry name or path, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, choices: list[ModelChoice], current: str, current_key: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.choices, self.current, self.current_key = choices, current, current_key

    def compose(self):  # noqa: ANN201
        with Vertical(classes="dialog wide", id="model-picker"):
            yield Label(Content.assemble(("Switch model", "bold"), f"   (current: {self.current})"))
            options = []
            for choice in self.choices:
                text = Content.assemble((choice.label, "bold"), "\n", (choice.detail, "dim"))
                options.append(Option(text, id=choice.key))
            yield OptionList(*options, id="models")

    def on_mount(self) -> None:
        """Open on the model that is serving (by its key, else by its file name)."""
        keys = [c.key for c in self.choices]
        names = [Path(c.key).stem for c in self.choices]
        if self.current_key in keys:
            self.query_one(OptionList).highlighted = keys.index(self.current_key)
        elif self.current in names:
            self.query_one(OptionList).highlighted = names.index(self.current)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
