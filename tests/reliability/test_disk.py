"""Disk full and read-only data folder (real tmpfs mounts): one clear line, nothing stored is damaged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import assert_one_line_error, run_cli

from assistant import AssistantError
from assistant.storage.store import Store


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs holding ASSISTANT_HOME (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, timeout=30
    ).returncode:
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
    assert_one_line_error(export, "out.json", "the disk is full")  # history is read; the file cannot be written
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".") or p.name == "out.json") == []
    (home / "filler").unlink()
    _unchanged(home, rows)


def test_model_import_onto_a_full_disk_leaves_no_half_file(small_disk: Path, smollm_path: Path, monkeypatch) -> None:
    from assistant.models.registry import Registry

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


def _seed_answered(home: Path) -> None:
    store = Store(home / "assistant.db")
    cid = store.new_conversation(title="kept")
    store.add_message(cid, "user", "What is the capital of France?")
    store.add_message(cid, "assistant", "Paris.")
    store.close()


def _turns(home: Path) -> tuple[int, list[tuple[str, int]]]:
    """(number of conversations, [(role, complete)] of every message)."""
    store = Store(home / "assistant.db")
    try:
        return len(store.conversations()), [(m["role"], m["complete"]) for m in store.iter_messages()]
    finally:
        store.close()


def test_full_disk_turns_leave_nothing_behind_and_history_stays_readable(small_disk: Path) -> None:
    """Issue 19 row 12: no empty conversation, no unanswered question; reading works on a full disk."""
    home = small_disk
    _seed_answered(home)
    _fill(home)
    for _ in range(3):
        assert_one_line_error(run_cli(home, "ask", "--max-tokens", "4", "hello there"), "disk is full")
    for args in (("history", "list"), ("history", "show", "1"), ("history", "search", "capital")):
        shown = run_cli(home, *args)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert "kept" in shown.stdout or "capital" in shown.stdout
    (home / "filler").unlink()
    assert _turns(home) == (1, [("user", 1), ("assistant", 1)])
    again = run_cli(home, "ask", "-c", "--max-tokens", "2", "And of Spain?")
    assert again.returncode == 0, again.stderr
    assert _turns(home) == (1, [("user", 1), ("assistant", 1)] * 2)  # -c continued the real conversation


def test_models_list_writes_no_weights(small_disk: Path, smollm_path: Path) -> None:
    """Issue 19 row 5: listing never assembles Gemma; using it on a short disk, or importing, is one line."""
    home = small_disk
    listed = run_cli(home, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "gemma3-270m" in listed.stdout and "smollm2-135m" in listed.stdout
    assert sum(p.stat().st_size for p in home.rglob("*") if p.is_file()) < 1 << 20  # the database, no weights
    assert_one_line_error(run_cli(home, "ask", "--model", "gemma3-270m", "hi"), "gemma3-270m", "disk")
    assert_one_line_error(run_cli(home, "models", "import", str(smollm_path)), "disk is full")
    assert [p for p in home.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20] == []  # no half file


@pytest.fixture
def read_only_home(tmp_path: Path):
    """A seeded ASSISTANT_HOME nobody can write: database 0444 in a 0555 folder, or (as root, who ignores
    modes) a tmpfs remounted read-only."""
    home = tmp_path / "home-ro"
    home.mkdir()
    if os.geteuid() != 0:
        _seed_answered(home)
        (home / "assistant.db").chmod(0o444)
        home.chmod(0o555)
        yield home
        home.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home)], capture_output=True).returncode:
        pytest.skip("running as root and cannot mount a tmpfs")
    try:
        _seed_answered(home)
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_history_reads_a_read_only_database(read_only_home: Path) -> None:
    """Issue 19 row 14: reading history works from a read-only database; writing says why it cannot."""
    home = read_only_home
    for args, needle in (
        (("history", "list"), "kept"),
        (("history", "show", "1"), "Paris."),
        (("history", "search", "capital"), "capital"),
        (("history", "export", "1"), "Paris."),
    ):
        shown = run_cli(home, *args)
        assert shown.returncode == 0, shown.stderr
        assert needle in shown.stdout
    assert_one_line_error(run_cli(home, "ask", "--max-tokens", "2", "hi"), "read-only")


def test_disk_full_mid_answer_marks_the_answer_failed(small_disk: Path, engine, monkeypatch) -> None:  # noqa: ANN001
    """Issue 19 row 12: the disk fills while an answer streams. The turn stops with one "disk is full" error and
    the answer is kept as far as it got, marked failed (not incomplete, which means a crash); history reads it."""
    from assistant.chat.session import Session
    from assistant.config import load
    from assistant.storage.store import StoreError, export_conversation

    monkeypatch.setenv("ASSISTANT_HOME", str(small_disk))
    store = Store(small_disk / "assistant.db")
    session = Session(store, engine, load())
    session.flush_interval = 0.0  # every piece is written as it comes: the first write after the fill fails
    stream = session.send("Write a long story about a dragon.", max_tokens=64, temperature=0.0)
    seen = [next(stream).text for _ in range(3)]
    _fill(small_disk)
    with pytest.raises(StoreError, match="full"):
        for delta in stream:
            seen.append(delta.text)
    (small_disk / "filler").unlink()
    store.close()
    reopened = Store(small_disk / "assistant.db", readonly=True)
    question, answer = reopened.messages(session.conversation_id)
    assert (question.role, question.complete) == ("user", True)
    assert (answer.finish_reason, answer.complete) == ("failed", True)
    assert answer.content == "".join(seen) and len(seen) >= 3  # what was shown is what was kept
    shown = export_conversation(reopened, session.conversation_id)
    assert " · failed" in shown and "incomplete" not in shown
    assert reopened.integrity_ok()
