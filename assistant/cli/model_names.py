"""Model names as the command line takes and shows them: the registry's names, whatever was typed.

The engine calls a model by its file's stem (``SmolLM2-135M-Instruct.Q4_1``), which older histories hold; the
registry calls it ``smollm2-135m``. ``--model`` takes either (or a file path), and what the CLI prints is the
registry name, one that ``--model``, ``models list`` and the server's ``/v1/models`` all know.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from assistant import AssistantError
from assistant.cli.common import open_store

if TYPE_CHECKING:
    from assistant.models.registry import Registry


def opened_registry(readonly: bool = False) -> Registry:
    from assistant.models.registry import Registry  # deliberately lazy: it loads the store; off `--help`

    return Registry(open_store(readonly=readonly))


def model_key(registry: Registry, text: str) -> str:
    """What a ``--model`` value names: a registry name as is; an existing file as an absolute path; else the
    registered (or packaged) model with that name or file stem in any case; else ``text`` (resolving it fails
    with the list of known names)."""
    names = registry.names()
    if text in names:
        return text
    path = Path(text).expanduser()
    if path.is_file():
        return os.path.abspath(path)
    lower = text.lower()
    return next((n for n in names if n.lower() == lower), None) or file_stems(registry).get(lower, text)


def file_stems(registry: Registry) -> dict[str, str]:
    """Registry names by their file's stem in lower case (the name the engine gives a model)."""
    from assistant.models.registry import packaged

    stems = {Path(p.file).stem.lower(): p.name for p in packaged()}
    for entry in registry.entries():
        stems.setdefault(Path(entry.path).stem.lower(), entry.name)
    return stems


def shown_names(registry: Registry, stored: Iterable[str]) -> dict[str, str]:
    """The registry name of each model name as stored in the history (a file stem), or the name as stored."""
    names, stems = set(registry.names()), file_stems(registry)
    return {s: s if not s or s in names else stems.get(s.lower(), s) for s in stored}


def name_of(registry: Registry, key: str, path: Path) -> str:
    """The registry name of the model loaded as ``key`` from ``path``: ``key`` itself if it is one, else the
    registered or packaged model with that file, else the file's stem."""
    from assistant.models.registry import packaged, packaged_path

    if key in registry.names():
        return key
    target = path.resolve()
    for entry in registry.entries():
        if Path(entry.path).resolve() == target:
            return entry.name
    for p in packaged():
        try:
            if packaged_path(p.name, assemble=False).resolve() == target:
                return p.name
        except AssistantError:  # not installed: it is not this file
            continue
    return path.stem
