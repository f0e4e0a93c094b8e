"""Several processes write the same history database at once: nobody sees "database is locked", nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from assistant.store import Store
from reliability_helpers import REPO, cli_command, cli_env

# Writes like the UI does while streaming: a question, an empty answer, updates every few ms, a final update.
WRITER = r"""
import sys, time
from assistant.store import Store
start, path, tag, turns = float(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
while time.time() < start:
    time.sleep(0.001)
store = Store(path)
cid = store.new_conversation(title=tag)
for turn in range(turns):
    store.add_message(cid, "user", f"{tag} question {turn}")
    answer = store.add_message(cid, "assistant", "", complete=0)
    text = ""
    for piece in range(5):
        text += f"{tag}-{turn}-{piece} "
        store.update_message(answer, content=text)
    store.update_message(answer, content=text, complete=1, finish_reason="stop")
print("ok", cid)
"""


def test_processes_share_a_fresh_database(assistant_home: Path) -> None:
    """Two `assistant ask` and three UI-like writers, all starting on a database that does not exist yet."""
    db = assistant_home / "assistant.db"
    env = cli_env(assistant_home)
    start = time.time() + 2.0
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), str(db), f"w{i}", "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for i in range(3)
    ]
    questions = ["Name three colours.", "Name three animals."]
    asks = [
        subprocess.Popen(
            cli_command("ask", "--max-tokens", "40", "--temperature", "0", "--json", q),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for q in questions
    ]
    results = [(p, *p.communicate(timeout=300)) for p in writers + asks]
    for process, out, err in results:
        assert "locked" not in err.lower() and "busy" not in err.lower(), err
        assert process.returncode == 0, err
    store = Store(db)
    assert store.integrity_ok()
    for i in range(3):
        (conversation,) = [c for c in store.conversations() if c["title"] == f"w{i}"]
        messages = store.messages(conversation["id"])
        assert len(messages) == 80
        answers = [m for m in messages if m["role"] == "assistant"]
        assert all(m["complete"] == 1 and m["content"].count(f"w{i}-") == 5 for m in answers)
    for question in questions:
        (conversation,) = [c for c in store.conversations() if c["title"] == question]
        user, answer = store.messages(conversation["id"])
        assert user["content"] == question
        assert answer["complete"] == 1 and answer["content"].strip()
    assert len(store.search("question", limit=500)) == 120  # full-text index kept up with every write


def test_many_processes_open_a_new_database_at_once(assistant_home: Path) -> None:
    """The first open creates the schema; racing first opens used to fail with 'database is locked'."""
    for trial in range(3):
        db = assistant_home / f"race{trial}.db"
        start = time.time() + 1.5
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(start), str(db), f"p{i}", "1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for i in range(6)
        ]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and out.startswith("ok"), err
        store = Store(db)
        assert len(store.conversations()) == 6 and store.integrity_ok()
        assert len(store.db["messages"].triggers) == 3
