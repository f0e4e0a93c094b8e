"""`assistant models scan`: find the GGUF models already on disk and register them by reference.

Three known layouts, plus any folder:

- Ollama: ``manifests/<host>/<namespace>/<model>/<tag>`` (JSON) name a model layer whose file is
  ``blobs/sha256-<hex>`` (``$OLLAMA_MODELS``, else ``~/.ollama/models``);
- LM Studio: ``<publisher>/<repo>/<file>.gguf`` under ``~/.lmstudio/models`` (or the older
  ``~/.cache/lm-studio/models``);
- the Hugging Face hub cache: ``models--<owner>--<repo>/snapshots/<revision>/<file>.gguf``, links into
  ``blobs/<sha256>`` (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``).

Each file is validated with the same checks as `models import` and linked into the models folder
under a readable name (nothing is copied; a sha256 is taken from the blob's name where the layout
gives it, never computed). A file deleted later shows as missing in `models list`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.config import models_dir
from assistant.models.gguf_info import read_info
from assistant.models.registry import name_for_file

SOURCES = ("ollama", "lmstudio", "hf-cache")
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_LIBRARY = ("registry.ollama.ai", "library")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Found:
    """A GGUF file found on disk, before validation."""

    path: Path
    name: str  # readable name suggested by its layout
    source: str  # ollama | lmstudio | hf-cache | folder
    sha256: str = ""  # when the layout names the file by its digest
    problem: str = ""  # why it cannot be registered, found before validation


@dataclass
class Outcome:
    """What the scan did with one file: registered, known (already registered) or skipped."""

    status: str
    name: str
    source: str
    path: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a known location that does not exist here
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


# -- locations
def ollama_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def lmstudio_dirs() -> list[Path]:
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def hf_cache_dir() -> Path:
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root).expanduser() / "huggingface" / "hub"


# -- finders (each yields candidates; none raises for a malformed entry)
def find_ollama(root: Path) -> Iterator[Found]:
    """Models named by Ollama's manifests; the model layer's blob is the GGUF."""
    manifests = root / "manifests"
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = manifest.relative_to(manifests).parts
        name = _ollama_name(parts)
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layers = [layer for layer in data["layers"] if layer.get("mediaType") == OLLAMA_MODEL_LAYER]
            digest = str(layers[0]["digest"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            yield Found(manifest, name, "ollama", problem="unreadable Ollama manifest (no model layer)")
            continue
        hex_digest = digest.removeprefix("sha256:")
        blob = root / "blobs" / f"sha256-{hex_digest}"
        yield Found(blob, name, "ollama", hex_digest if SHA256.match(hex_digest) else "")


def _ollama_name(parts: tuple[str, ...]) -> str:
    """``registry.ollama.ai/library/llama3.2/3b`` -> ``llama3.2-3b``; ``…/latest`` drops the tag."""
    model, tag = (parts[-2], parts[-1]) if len(parts) >= 2 else (parts[-1], "latest")
    return name_for_file(model if tag == "latest" else f"{model}-{tag}")


def find_gguf_files(root: Path, source: str) -> Iterator[Found]:
    """Every ``*.gguf`` under ``root`` (LM Studio's folder or any other), named after the file."""
    for path in sorted(_walk_gguf(root)):
        yield _found_file(path, path.name, source)


def find_hf_cache(root: Path) -> Iterator[Found]:
    """GGUFs in the hub cache's snapshots; the blob each snapshot entry links to holds the digest."""
    for repo in sorted(root.glob("models--*")):
        for path in sorted(_walk_gguf(repo / "snapshots")):
            blob = path.resolve().name
            found = _found_file(path, path.name, "hf-cache")
            found.sha256 = blob if SHA256.match(blob) else ""
            yield found


def _walk_gguf(root: Path) -> Iterator[Path]:
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for file in files:
            if file.lower().endswith(".gguf"):
                yield Path(folder) / file


def _found_file(path: Path, filename: str, source: str) -> Found:
    found = Found(path, name_for_file(filename), source)
    shard = SHARD.search(filename)
    if shard and int(shard.group(1)) != 1:
        found.problem = f"part {int(shard.group(1))} of a split model (its first part is the one registered)"
    elif filename.lower().startswith("mmproj"):
        found.problem = "a vision projector (mmproj), not a language model"
    return found


def candidates(sources: list[str], paths: list[Path], report: Report) -> Iterator[Found]:
    """Candidates from the known locations asked for, then from the given paths (layout detected)."""
    for source in sources:
        roots = {"ollama": [ollama_dir()], "lmstudio": lmstudio_dirs(), "hf-cache": [hf_cache_dir()]}[source]
        present = [root for root in roots if root.is_dir()]
        if not present:
            report.notes.append(f"no {source} models folder here ({', '.join(map(str, roots))})")
        for root in present:
            yield from _find(root, source)
    for path in paths:
        if not path.exists():
            raise AssistantError(f"{path}: no such file or folder")
        if path.is_file():
            yield _found_file(path, path.name, "folder")
        else:
            yield from _find(path, _layout(path))


def _layout(folder: Path) -> str:
    """Which layout a given folder has: Ollama's, the hub cache's, or plain files (LM Studio's too)."""
    if (folder / "manifests").is_dir() and (folder / "blobs").is_dir():
        return "ollama"
    if any(folder.glob("models--*")):
        return "hf-cache"
    return "folder"


def _find(root: Path, source: str) -> Iterator[Found]:
    if source == "ollama":
        return find_ollama(root)
    if source == "hf-cache":
        return find_hf_cache(root)
    return find_gguf_files(root, source)


# -- registering
def scan(
    registry: Any, sources: list[str], paths: list[Path], dry_run: bool = False, reserved: Iterable[str] = ()
) -> Report:
    """Find, validate and link every candidate; one outcome per file, never an exception for one file.

    A file never takes the name of a model or of one of the ``reserved`` names (the personas': a model named like a
    persona would hide behind it in the server), in any case: it gets the next free ``name-2``, ``name-3``…"""
    started = time.perf_counter()
    report = Report()
    known = _registered_targets(registry)
    taken = {name.lower() for name in [*registry.names(), *reserved]}
    for found in candidates(sources, paths, report):
        report.outcomes.append(_register(registry, found, known, taken, dry_run))
    report.seconds = time.perf_counter() - started
    return report


def _registered_targets(registry: Any) -> dict[str, str]:
    """Resolved file path -> registry name, for every entry whose file is still there."""
    targets = {}
    for entry in registry.entries():
        path = Path(entry["path"])
        if path.exists():
            targets[str(path.resolve())] = entry["name"]
    return targets


def _register(registry: Any, found: Found, known: dict[str, str], taken: set[str], dry_run: bool) -> Outcome:
    outcome = Outcome("skipped", found.name, found.source, str(found.path))
    if found.problem:
        outcome.detail = found.problem
        return outcome
    target = str(found.path.resolve())
    if target in known:
        outcome.status, outcome.name, outcome.detail = "known", known[target], "already registered"
        return outcome
    name = _free_name(found.name, taken)
    entry: Any  # what the size line reads: the file's details (dry run) or the registered ModelEntry
    try:
        if dry_run:
            info = read_info(found.path)
            entry = {"architecture": info.architecture, "quantization": info.quantization, "size": info.size}
        else:  # validates the file (the same checks as `models import`), then links it
            entry = registry.import_file(found.path, name=name, link=True, sha256=found.sha256)
    except AssistantError as exc:  # ModelFileError for a broken file
        outcome.detail = str(exc).removeprefix(f"{found.path}: ")
        return outcome
    outcome.name = name
    outcome.detail = f"{entry['architecture']}, {entry['quantization']}, {entry['size'] / 2**20:.0f} MiB"
    outcome.status = "would register" if dry_run else "registered"
    known[target] = name
    taken.add(name.lower())
    return outcome


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``… when another model (or a persona) has it in some case; ``taken`` is in
    lower case."""

    def free(candidate: str) -> bool:
        link = models_dir() / f"{candidate}.gguf"
        return candidate.lower() not in taken and not (link.exists() or link.is_symlink())

    if free(name):
        return name
    return next(f"{name}-{n}" for n in range(2, 10_000) if free(f"{name}-{n}"))
