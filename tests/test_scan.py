"""`assistant models scan`: fake Ollama, LM Studio and Hugging Face cache trees holding the real SmolLM2 GGUF."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.models.registry import PACKAGED

SMOLLM_SHA256 = PACKAGED[0].sha256


def place(source: Path, target: Path) -> Path:
    """A real file at ``target`` with the model's bytes: a hard link (no copy) where the filesystem allows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def ollama_tree(root: Path, model: Path) -> None:
    """Ollama's layout: a manifest per model:tag naming its model layer, blobs named by sha256."""
    place(model, root / "blobs" / f"sha256-{SMOLLM_SHA256}")
    layers = [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{SMOLLM_SHA256}", "size": 1},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 1},
    ]
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    gone = root / "manifests" / "hf.co" / "someone" / "Gone-GGUF" / "Q4_K_M"  # its blob was deleted
    gone.parent.mkdir(parents=True)
    gone.write_text(json.dumps({"layers": [{**layers[0], "digest": "sha256:" + "2" * 64}]}))
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")


def lmstudio_tree(root: Path, model: Path) -> None:
    folder = root / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF"
    place(model, folder / "SmolLM2-135M-Instruct-Q4_1.gguf")
    (folder / "truncated.gguf").write_bytes(model.read_bytes()[:300_000])
    place(model, folder / "mmproj-model-f16.gguf")
    (folder / "README.md").write_text("notes")


def hf_cache_tree(root: Path, model: Path) -> None:
    """The hub cache: snapshot entries are relative links into blobs/<sha256>."""
    repo = root / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    place(model, repo / "blobs" / SMOLLM_SHA256)
    for revision in ("a" * 40, "b" * 40):  # two revisions of the same file: registered once
        snapshot = repo / "snapshots" / revision / "smollm2-135m-instruct-q4_1.gguf"
        snapshot.parent.mkdir(parents=True)
        snapshot.symlink_to(Path("..") / ".." / "blobs" / SMOLLM_SHA256)


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm_path: Path) -> Path:
    """A home folder with all three apps' model folders, found by their default locations."""
    home = tmp_path / "user"
    for var in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    ollama_tree(home / ".ollama" / "models", smollm_path)
    lmstudio_tree(home / ".lmstudio" / "models", smollm_path)
    hf_cache_tree(home / ".cache" / "huggingface" / "hub", smollm_path)
    return home


def scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["models", "scan", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def by_status(report: dict, status: str) -> dict[str, dict]:
    return {m["name"]: m for m in report["models"] if m["status"] == status}


def test_scan_registers_known_locations_by_reference(user_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = scan_json(capsys)
    registered = by_status(report, "registered")
    # readable names; the Ollama one collides with the packaged smollm2-135m and gets a suffix, and so does the hub
    # cache's, which differs from LM Studio's only in case (one name for lookups and case-insensitive file systems)
    assert set(registered) == {"smollm2-135m-2", "SmolLM2-135M-Instruct-Q4_1", "smollm2-135m-instruct-q4_1-2"}
    assert {m["source"] for m in registered.values()} == {"ollama", "lmstudio", "hf-cache"}
    skipped = {Path(m["path"]).name: m["detail"] for m in report["models"] if m["status"] == "skipped"}
    assert "truncated" in skipped["truncated.gguf"]
    assert "vision projector" in skipped["mmproj-model-f16.gguf"]
    assert "no such file" in skipped[f"sha256-{'2' * 64}"]
    assert "unreadable Ollama manifest" in skipped["latest"]
    assert by_status(report, "known")["smollm2-135m-instruct-q4_1-2"]["detail"] == "already registered"  # 2nd revision

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in registered:
        assert rows[name]["origin"] == "linked" and rows[name]["fit"] and not rows[name]["problem"]
        link = Path(rows[name]["path"])
        assert link.is_symlink() and link.stat().st_nlink >= 1  # a link in the models folder, nothing copied
    assert rows["smollm2-135m-2"]["sha256"] == SMOLLM_SHA256  # taken from the blob's name, not computed
    assert rows["SmolLM2-135M-Instruct-Q4_1"]["sha256"] == ""  # LM Studio names no digest; none is computed

    again = scan_json(capsys)  # a second scan registers nothing new
    assert not by_status(again, "registered") and len(by_status(again, "known")) == 3


@pytest.mark.timeout(300)
def test_linked_model_answers_and_a_vanished_file_shows_as_missing(
    user_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan_json(capsys, "--ollama", "--lmstudio")
    assert main(["ask", "--model", "smollm2-135m-2", "--max-tokens", "4", "--json", "Hi"]) == 0  # via the blob
    assert json.loads(capsys.readouterr().out)["model"] == "smollm2-135m-2"

    lmstudio_file = user_home / ".lmstudio/models/lmstudio-community/SmolLM2-135M-Instruct-GGUF"
    (lmstudio_file / "SmolLM2-135M-Instruct-Q4_1.gguf").unlink()  # the user deleted it in LM Studio
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "SmolLM2-135M-Instruct-Q4_1" in x)
    assert "unusable" in line and "no such file" in line
    assert main(["ask", "--model", "SmolLM2-135M-Instruct-Q4_1", "Hi"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is missing" in err


def test_scan_path_detects_the_layout(user_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ollama, hub = user_home / ".ollama" / "models", user_home / ".cache" / "huggingface" / "hub"
    report = scan_json(capsys, "--dry-run", str(ollama), str(hub))
    assert {(m["name"], m["source"]) for m in report["models"] if m["status"] == "would register"} == {
        ("smollm2-135m-2", "ollama"),
        ("smollm2-135m-instruct-q4_1", "hf-cache"),
    }
    assert main(["models", "list", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out) if r["origin"] == "linked"] == []  # dry run
    assert main(["models", "scan", str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_scan_a_folder_of_100_files(tmp_path: Path, smollm_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The scan-time figure: 100 GGUF files (hard links of the real model), validated and registered."""
    folder = tmp_path / "many"
    for i in range(100):
        place(smollm_path, folder / f"group{i % 10}" / f"model-{i:03d}.Q4_1.gguf")
    started = time.perf_counter()
    report = scan_json(capsys, str(folder))
    elapsed = time.perf_counter() - started
    assert len(by_status(report, "registered")) == 100
    print(f"\nscan of 100 GGUF files: {elapsed:.2f} s (scan itself {report['seconds']:.2f} s)")
    assert elapsed < 60
