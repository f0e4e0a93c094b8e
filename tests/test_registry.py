"""The registry: names that never escape the models folder, import/delete rules, the catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.config import database_path, models_dir
from assistant.models.gguf_info import ModelFileError, fit_label, read_info
from assistant.models.registry import (
    ModelEntry,
    Registry,
    RegistryError,
    catalog_entry,
    inside_models_dir,
    load_catalog,
    name_for_file,
    opened,
    register_distilled,
    validate_name,
)
from assistant.storage.store import Store

SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@pytest.fixture
def registry(assistant_home: Path) -> Registry:
    return Registry(Store(database_path()))


@pytest.mark.parametrize("name", ["smol", "my-model_2", "Qwen2.5-Coder-1.5B", "a", "x.gguf", "9" * 100])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "/etc/passwd",
        ".hidden",
        "-flag",
        "a..b",
        "x" * 101,
        "a b",
        "ü",
        "a\x00b",
        "trailing\n",
    ],
)
def test_path_traversal_and_odd_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match="invalid model name"):
        validate_name(name)


def test_names_derived_from_files_are_valid() -> None:
    assert name_for_file("/x/SmolLM2 135M (v2).Q4_1.gguf") == "SmolLM2-135M-v2-.Q4_1"
    assert name_for_file("../../..gguf") == "model"
    assert name_for_file("a..b.gguf") == "a.b"


def test_registered_names_cannot_escape(registry: Registry, smollm_path: Path) -> None:
    info = read_info(smollm_path)
    for bad in ("../../evil", "sub/dir"):
        with pytest.raises(RegistryError):
            registry.add(bad, smollm_path, "imported", info)
        with pytest.raises(RegistryError):
            registry.import_file(smollm_path, name=bad)
    with pytest.raises(RegistryError, match="packaged model"):
        registry.add("gemma3-270m", smollm_path, "imported", info)
    assert registry.entries() == []


def test_import_copies_atomically_and_records_sha256(registry: Registry, smollm_path: Path) -> None:
    entry = registry.import_file(smollm_path, name="copy")
    target = models_dir() / "copy.gguf"
    assert entry.path == str(target) and entry.sha256 == SMOL_SHA256 and entry.origin == "imported"
    assert entry.architecture == "llama" and entry.parameters == 134515008 and entry.quantization == "Q4_1"
    assert entry.context_length == 8192 and entry.size == smollm_path.stat().st_size and entry.created
    assert registry.get("copy") == entry  # what the store holds, as a typed row
    assert [p.name for p in models_dir().iterdir()] == ["copy.gguf"]  # no temp file left
    with pytest.raises(RegistryError, match="already exists"):
        registry.import_file(smollm_path, name="copy")


def test_a_broken_file_is_never_copied(registry: Registry, smollm_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm_path.read_bytes()[:3_000_000])
    with pytest.raises(ModelFileError, match="truncated"):
        registry.import_file(cut)
    assert not models_dir().exists() or not any(models_dir().iterdir())


def test_a_student_in_the_models_folder_is_registered_in_place(registry: Registry, smollm_path: Path) -> None:
    student = models_dir() / "students" / "tiny-student.gguf"
    student.parent.mkdir(parents=True)
    shutil.copyfile(smollm_path, student)
    entry = registry.import_file(student, origin="distilled")
    assert entry["name"] == "tiny-student" and entry["path"] == str(student) and entry["origin"] == "distilled"
    assert registry.resolve("tiny-student") == student


def test_a_distilled_student_is_registered_without_a_store_at_hand(smollm_path: Path, assistant_home: Path) -> None:
    """distill_tools holds no store: register_distilled and opened() open this home's database themselves."""
    student = models_dir() / "my-student.gguf"
    student.parent.mkdir(parents=True)
    shutil.copyfile(smollm_path, student)
    entry = register_distilled("my-student", student)
    assert (entry.origin, entry.sha256, entry.architecture) == ("distilled", SMOL_SHA256, "llama")
    assert register_distilled("my-student", student).created  # a second export updates the entry in place
    with opened() as registry:
        assert registry.entries() == [registry.get("my-student")]
        assert registry.resolve("my-student") == student
    with pytest.raises(RegistryError, match="packaged model"):
        register_distilled("smollm2-135m", student)


def test_entries_are_the_registrys_rows(registry: Registry) -> None:
    """save writes an entry as it is (no checks: e.g. a row written by an older version), remove forgets it."""
    registry.save(ModelEntry("b-model", "/elsewhere/b.gguf", "imported"))
    registry.save(ModelEntry("a-model", "/elsewhere/a.gguf", "linked", parameters=7))
    assert [e.name for e in registry.entries()] == ["a-model", "b-model"]
    assert registry.get("a-model") == ModelEntry("a-model", "/elsewhere/a.gguf", "linked", parameters=7)
    registry.remove("a-model")
    assert registry.get("a-model") is None and [e.name for e in registry.entries()] == ["b-model"]


def test_rm_deletes_only_inside_the_models_folder(registry: Registry, smollm_path: Path, tmp_path: Path) -> None:
    outside = tmp_path / "mine.gguf"
    shutil.copyfile(smollm_path, outside)
    registry.add("outside", outside, "imported", read_info(outside))
    assert "kept" in registry.delete("outside")
    assert outside.exists() and registry.get("outside") is None
    registry.import_file(outside, name="inside")
    registry.delete("inside")
    assert not (models_dir() / "inside.gguf").exists() and outside.exists()


def test_symlink_entries_are_judged_by_the_link_not_the_target(tmp_path: Path, smollm_path: Path) -> None:
    models_dir().mkdir(parents=True)
    link = models_dir() / "link.gguf"
    link.symlink_to(smollm_path)
    assert inside_models_dir(link)
    assert not inside_models_dir(smollm_path)
    assert not inside_models_dir(models_dir() / ".." / "escape.gguf")


def test_resolve_explains_a_missing_file(registry: Registry, smollm_path: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone.gguf"
    shutil.copyfile(smollm_path, gone)
    registry.add("gone", gone, "linked", read_info(gone))
    gone.unlink()
    with pytest.raises(RegistryError, match="missing.*models rm gone"):
        registry.resolve("gone")
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        registry.resolve("nope")
    assert registry.resolve("") == registry.resolve("smollm2-135m") == smollm_path


def test_rows_report_a_broken_registered_file(registry: Registry, smollm_path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.gguf"
    shutil.copyfile(smollm_path, victim)
    registry.add("victim", victim, "linked", read_info(victim))
    victim.write_bytes(b"overwritten")
    rows = {r.name: r for r in registry.rows(n_ctx=2048)}
    assert "too small" in rows["victim"].problem and rows["victim"].fit == ""
    assert rows["smollm2-135m"].fit == "fits" and rows["smollm2-135m"].default


def test_fit_labels() -> None:
    assert fit_label(1, 100) == "fits"
    assert fit_label(90, 100) == "may be slow"
    assert fit_label(101, 100) == "won't fit"


def test_catalog_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.toml"
    bad.write_text("[[model]]\nname = 'x'\nweights = 'oops'\n")
    with pytest.raises(RegistryError, match="only these keys"):
        load_catalog(bad)
    bad.write_text("[[model]\n")
    with pytest.raises(RegistryError, match="cannot read the model catalog"):
        load_catalog(bad)
    with pytest.raises(RegistryError, match="not in the model catalog"):
        catalog_entry("nope")
    assert catalog_entry("qwen2.5-coder-1.5b").repo == "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"


def test_packaged_copies_are_never_registered_in_place(registry: Registry, smollm_path: Path) -> None:
    assembled = models_dir() / "packaged" / "assembled.gguf"
    assembled.parent.mkdir(parents=True)
    shutil.copyfile(smollm_path, assembled)
    entry = registry.import_file(assembled, name="mine")
    assert entry["path"] == str(models_dir() / "mine.gguf")
    registry.delete("mine")
    assert assembled.exists()
