"""Files in the conversation: `ask -f PATH` / `-f -` with the real model; refusals in one line; stored records."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.chat import attach
from assistant.cli.main import main
from assistant.config import database_path
from assistant.storage.store import Store

NOTES = "Meeting notes — 30 Nov\n```python\nprint('a fence inside the file')\n```\nAction: ship the scan command.\n"


def stored_conversation() -> tuple[list[dict], Store]:
    store = Store(database_path())
    conversations = store.conversations()
    return (store.messages(conversations[0]["id"]) if conversations else []), store


def test_a_file_arrives_whole_and_is_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.md"
    path.write_text(NOTES, encoding="utf-8")
    assert main(["ask", "--json", "--max-tokens", "4", "-f", str(path), "What is the action item?"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    size = len(NOTES.encode())
    [record] = out["attachments"]
    assert record["name"] == "notes.md" and record["size"] == size and record["tokens"] > 20
    assert record["sha256"] == hashlib.sha256(NOTES.encode()).hexdigest()
    assert f"attached notes.md ({size} bytes, {record['tokens']} tokens)" in captured.err  # shown before the answer

    messages, store = stored_conversation()
    question = messages[0]["content"]
    assert NOTES in question and question.endswith("What is the action item?")  # the whole file, then the question
    assert question.startswith("File notes.md:\n````\n")  # its fence is longer than the one inside the file
    assert store.conversations()[0]["title"] == "What is the action item?"
    [row] = attach.of_message(store, messages[0]["id"])
    assert {k: row[k] for k in ("name", "size", "sha256", "tokens")} == record


@pytest.mark.timeout(300)
def test_stdin_as_a_file_beside_the_question(assistant_home: Path) -> None:
    env = {**os.environ, "ASSISTANT_HOME": str(assistant_home)}
    proc = subprocess.run(
        [sys.executable, "-m", "assistant", "ask", "--json", "--max-tokens", "4", "-f", "-", "Summarise this."],
        input="Error: disk full on /var\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["attachments"][0]["name"] == "stdin"
    messages, _ = stored_conversation()
    assert "File stdin:\n```\nError: disk full on /var\n```\n\nSummarise this." == messages[0]["content"]


def refusals(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    binary = tmp_path / "photo.gguf"
    binary.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    locked = tmp_path / "locked.txt"
    locked.write_text("secret")
    locked.chmod(0)
    return {
        "binary": (["-f", str(binary)], "photo.gguf is a binary file"),
        "not utf-8": (["-f", str(latin1)], "latin1.txt is not UTF-8 text"),
        "missing": (["-f", str(tmp_path / "nope.txt")], "cannot read"),
        "folder": (["-f", str(tmp_path)], "is a folder"),
        "stdin twice": (["-f", "-", "-f", "-"], "'-f -' can be given once"),
        "unreadable": (["-f", str(locked)], "Permission denied" if os.geteuid() else ""),
    }


def test_refusals_are_one_line_and_store_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for case, (args, message) in refusals(tmp_path).items():
        if not message:  # root reads a chmod-0 file: nothing to refuse
            continue
        assert main(["ask", *args, "What is this?"]) == 1, case
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (case, err)
    assert stored_conversation()[0] == []


def test_a_file_too_big_for_the_context_is_refused_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASSISTANT_N_CTX", "512")
    big = tmp_path / "log.txt"
    big.write_text("\n".join(f"line {i}: request served in {i % 97} ms" for i in range(400)))
    assert main(["ask", "--max-tokens", "64", "-f", str(big), "Any slow requests?"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "(log.txt " in err and "only 448 fit the model's 512-token context" in err and "attach less" in err
    assert stored_conversation()[0] == []


def test_records_leave_with_their_message(engine, tmp_path: Path) -> None:  # noqa: ANN001 - the real engine
    """Edit-and-resend sets the question aside (as another version); the new one, which may get the same id,
    carries none of the old one's records."""
    from assistant.chat.session import Session
    from assistant.config import load

    store = Store(tmp_path / "h.db")
    session = Session(store, engine, load())
    notes = attach.Attachment("notes.md", NOTES, len(NOTES.encode()), "0" * 64)
    list(session.send(attach.compose("Summarise.", [notes]), attachments=[notes], max_tokens=2))
    first = session.last.user_message_id
    assert [r["name"] for r in attach.of_message(store, first)] == ["notes.md"]
    list(session.resend("Just say hi.", max_tokens=2))
    assert attach.of_message(store, first) == [] and attach.of_message(store, session.last.user_message_id) == []
    assert store.conversations()[0]["title"] == "Summarise."  # named after the question, not the file block
