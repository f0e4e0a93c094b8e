"""Disk full and read-only data folder (real tmpfs mounts): one clear line, nothing stored is damaged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from assistant import AssistantError
from assistant.store import Store
from reliability_helpers import assert_one_line_error, run_cli


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs holding ASSISTANT_HOME (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                      timeout=30).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def _seed(home: Path) -> dict[int, str]:
    store = Store(home / "assistant.db")
    cid = store.new_conversation(title="kept")
    rows = {store.add_message(cid, "user", f"question {i}"): f"question {i}" for i in range(20)}
    store.close()
    return rows


def _unchanged(home: Path, rows: dict[int, str]) -> None:
    store = Store(home / "assistant.db")
    assert store.integrity_ok()
    assert {m["id"]: m["content"] for m in store.iter_messages()} == rows
    store.close()


def _fill(mount: Path) -> None:
    with (mount / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_disk_full(small_disk: Path) -> None:
    home = small_disk
    rows = _seed(home)
    _fill(home)
    result = run_cli(home, "ask", "--max-tokens", "4", "hello there")
    assert_one_line_error(result, "full")
    export = run_cli(home, "history", "export", "1", "--format", "json", "-o", str(home / "out.json"))
    assert_one_line_error(export)
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".") or p.name == "out.json") == []
    (home / "filler").unlink()
    _unchanged(home, rows)


def test_model_import_onto_a_full_disk_leaves_no_half_file(small_disk: Path, smollm_path: Path, monkeypatch) -> None:
    from assistant.registry import Registry

    monkeypatch.setenv("ASSISTANT_HOME", str(small_disk))
    store = Store(small_disk / "assistant.db")
    with pytest.raises((AssistantError, OSError)):
        Registry(store).import_file(smollm_path, name="too-big")  # 100 MB onto a 3 MiB disk
    models = small_disk / "models"
    assert not models.exists() or list(models.iterdir()) == []
    assert Registry(store).get("too-big") is None


def test_read_only_data_folder(small_disk: Path) -> None:
    home = small_disk
    rows = _seed(home)
    subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True, timeout=30)
    result = run_cli(home, "ask", "--max-tokens", "4", "hello there")
    assert_one_line_error(result, "read-only")
    shown = run_cli(home, "history", "list")
    assert shown.returncode == 0 or "read-only" in shown.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(home)], check=True, timeout=30)
    _unchanged(home, rows)
