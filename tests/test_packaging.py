"""What the wheel ships: installed into a fresh virtualenv, assistant lists its model catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from assistant.models.registry import DEFAULT_MODEL, RegistryError, load_catalog, packaged

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "assistant" / "data" / "catalog.toml"


def run(*command: str | Path, **kwargs: object) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=240, **kwargs)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(300)
def test_an_installed_wheel_lists_the_catalog(tmp_path: Path, assistant_home: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("assistant-*.whl")
    assert "assistant/data/catalog.toml" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    # the fresh venv sees this environment's dependencies, but not its editable install of the source tree:
    # a path added by a .pth file does not have its own .pth files (the editable finder) run
    (purelib / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)

    where = run(python, "-I", "-c", "import assistant.models.registry as r; print(r.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(purelib)  # the installed copy, not the source tree
    env = {**os.environ, "ASSISTANT_HOME": str(assistant_home)}
    listing = run(venv / "bin" / "assistant", "models", "catalog", cwd=tmp_path, env=env)
    names = [entry["name"] for entry in tomllib.loads(CATALOG.read_text())["model"]]
    assert len(names) >= 8 and all(f"\n{name} " in f"\n{listing}" for name in names)
    models = json.loads(run(venv / "bin" / "assistant", "models", "list", "--json", cwd=tmp_path, env=env))
    assert {m["name"] for m in models if m["origin"] == "packaged"} == {p.name for p in packaged()}
    assert all(m["problem"] == "" for m in models if m["name"] == DEFAULT_MODEL)


def test_a_missing_catalog_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="model catalog .* is missing"):
        load_catalog(tmp_path / "catalog.toml")


def test_packaged_models_are_defined_once_in_the_catalog() -> None:
    entries = load_catalog()
    assert packaged() == [e for e in entries if e.package] and len(packaged()) == 2
    assert DEFAULT_MODEL in {p.name for p in packaged()}
    assert all(p.file and p.sha256 and p.description for p in packaged())
