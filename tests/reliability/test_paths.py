"""Path safety: model names and the files the app writes or deletes stay inside their folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.models.registry import (
    ModelEntry,
    Registry,
    RegistryError,
    inside_models_dir,
    name_for_file,
    validate_name,
)
from assistant.storage.store import Store

ESCAPES = [
    "../evil",
    "..",
    ".",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "~root",
    ".hidden",
    "x/../../y",
    "",
    "a" * 101,
    "evil\0.gguf",
    "name\n",
    "..gguf",
    "C:evil",
    "con/../../x",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_model_names_cannot_be_paths(name: str) -> None:
    with pytest.raises(RegistryError):
        validate_name(name)


@pytest.mark.parametrize("filename", ["../../etc/passwd.gguf", "..gguf", "a/../../b.gguf", "\x1b[2J.gguf", "…—.gguf"])
def test_names_derived_from_files_are_safe(filename: str) -> None:
    name = name_for_file(filename)
    assert validate_name(name) == name and "/" not in name and ".." not in name


def test_import_with_hostile_name_writes_nothing_outside(smollm_path: Path, assistant_home: Path) -> None:
    registry = Registry(Store(assistant_home / "assistant.db"))
    before = set(assistant_home.parent.rglob("*"))
    for name in ("../escaped", "../../escaped", "/tmp/escaped"):
        with pytest.raises(RegistryError):
            registry.import_file(smollm_path, name=name)
    assert set(assistant_home.parent.rglob("*")) - before <= {assistant_home / "models"}


def test_delete_never_removes_files_outside_the_models_folder(tmp_path: Path, assistant_home: Path) -> None:
    """A tampered database row pointing outside the models folder: rm forgets it, keeps the file."""
    store = Store(assistant_home / "assistant.db")
    registry = Registry(store)
    victim = tmp_path / "victim.gguf"
    victim.write_bytes(b"precious")
    registry.save(ModelEntry("tampered", str(victim), "imported"))  # written past the registry's checks
    message = registry.delete("tampered")
    assert victim.read_bytes() == b"precious" and "kept" in message
    # a link inside the models folder: removing it never touches its target
    models = assistant_home / "models"
    models.mkdir(exist_ok=True)
    (models / "link.gguf").symlink_to(victim)
    registry.save(ModelEntry("link", str(models / "link.gguf"), "linked"))
    registry.delete("link")
    assert victim.read_bytes() == b"precious" and not (models / "link.gguf").is_symlink()


def test_inside_models_dir(assistant_home: Path) -> None:
    models = assistant_home / "models"
    assert inside_models_dir(models / "a.gguf")
    assert not inside_models_dir(models / ".." / "a.gguf")
    assert not inside_models_dir(assistant_home / "a.gguf")
    assert not inside_models_dir(Path("/etc/passwd"))


def test_conversation_export_goes_exactly_where_asked(assistant_home: Path, tmp_path: Path) -> None:
    """`history export -o` writes the named file atomically and nothing else (no temp files left)."""
    from reliability_helpers import run_cli

    store = Store(assistant_home / "assistant.db")
    cid = store.new_conversation(title="../../../../etc/cron.d/evil")  # a hostile title is not a file name
    store.add_message(cid, "user", "hi")
    store.close()
    out = tmp_path / "exports"
    out.mkdir()
    result = run_cli(assistant_home, "history", "export", str(cid), "--format", "md", "-o", str(out / "chat.md"))
    assert result.returncode == 0, result.stderr
    assert os.listdir(out) == ["chat.md"]
    assert not Path("/etc/cron.d/evil").exists()
