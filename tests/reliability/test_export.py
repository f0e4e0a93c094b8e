"""`history export -o`: one clear line for every path it cannot write, no partial file, no surprise.

It writes only into an existing folder, never replaces a file unless told (--force), and a file it
replaces keeps its permission bits.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import assert_one_line_error, run_cli

from assistant.storage.store import Store


@pytest.fixture
def conversation(assistant_home: Path) -> str:
    store = Store(assistant_home / "assistant.db")
    cid = store.new_conversation(title="export me")
    store.add_message(cid, "user", "What is the capital of France?")
    store.add_message(cid, "assistant", "Paris.")
    store.close()
    return str(cid)


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write into: mode 0555, or (as root, who ignores modes) a read-only tmpfs."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def export(home: Path, cid: str, target: Path | str, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(home, "history", "export", cid, "-o", str(target), *extra)


def test_export_to_a_path_it_cannot_write_is_one_line(
    assistant_home: Path, conversation: str, tmp_path: Path, unwritable_folder: Path
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cases = {
        "/proc/x": "cannot write /proc/x",
        str(folder): "it is a folder",
        str(unwritable_folder / "chat.md"): "cannot write",
    }
    for target, needle in cases.items():
        assert_one_line_error(export(assistant_home, conversation, target), needle)
    assert list(folder.iterdir()) == [] and list(unwritable_folder.iterdir()) == []


def test_export_refuses_a_missing_folder(assistant_home: Path, conversation: str, tmp_path: Path) -> None:
    target = tmp_path / "nonexistent_dir" / "x.md"
    assert_one_line_error(export(assistant_home, conversation, target), "does not exist")
    assert not target.parent.exists()


def test_export_never_replaces_a_file_unless_forced(assistant_home: Path, conversation: str, tmp_path: Path) -> None:
    target = tmp_path / "notes.md"
    target.write_text("my own notes")
    target.chmod(0o444)
    assert_one_line_error(export(assistant_home, conversation, target), "already exists", "--force")
    assert target.read_text() == "my own notes" and stat.S_IMODE(target.stat().st_mode) == 0o444

    forced = export(assistant_home, conversation, target, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Paris." in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o444  # replaced, mode kept
    assert sorted(os.listdir(tmp_path)) == ["home", "notes.md"]  # no temporary file left
