"""The model picker: packaged models, registry entries and new files in the models folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.content import Content
from textual.widgets.option_list import Option

from assistant.config import models_dir
from assistant.models.registry import PACKAGED, Registry
from assistant.tui.screens.dialogs import PickerScreen


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


class ModelPickerScreen(PickerScreen):
    """Pick a model; returns its registry name or path, or None. It opens on the model serving (by its key, else
    by its file name), marked ● and named as the status bar names it; else on the first."""

    def __init__(self, choices: list[ModelChoice], current: str, current_key: str = "") -> None:
        keys, names = [c.key for c in choices], [Path(c.key).stem for c in choices]
        serving = keys.index(current_key) if current_key in keys else names.index(current) if current in names else -1
        options = [
            Option(
                Content.assemble(("● " if i == serving else "", "bold"), (c.label, "bold"), "\n", (c.detail, "dim")),
                id=c.key,
            )
            for i, c in enumerate(choices)
        ]
        super().__init__(
            Content.assemble(("Switch model", "bold"), f"   (● serving: {current})"),
            options,
            max(serving, 0),
            "Enter: switch (it loads beside the model answering now) · Esc: Cancel",
            "models",
        )
        self.choices = choices
