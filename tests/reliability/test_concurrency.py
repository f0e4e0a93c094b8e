"""Several processes write the same history database at once: nobody sees "database is locked", nothing is lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import REPO, cli_command, cli_env
from ui_terminal import CTRL_N, PROMPT_READY, TerminalUI, read_rows

from assistant.storage.store import Store

# Writes like the UI does while streaming: a question, an empty answer, updates every few ms, a final update.
WRITER = r"""
import sys, time
from assistant.storage.store import Store
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


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process from the repo root with text pipes for stdout and stderr."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_processes_share_a_fresh_database(assistant_home: Path) -> None:
    """Two `assistant ask` and three UI-like writers, all starting on a database that does not exist yet."""
    db = assistant_home / "assistant.db"
    # one llama.cpp thread per `ask`: two of them with a thread per core stall at llama.cpp's spin barriers on
    # 2 cores (this test took 51 s once instead of ~8); the database is what is tested here
    env = cli_env(assistant_home, ASSISTANT_THREADS="1")
    at = time.time() + 2.0
    writers = [start([sys.executable, "-c", WRITER, str(at), str(db), f"w{i}", "40"], env) for i in range(3)]
    questions = ["Name three colours.", "Name three animals."]
    asks = [start(cli_command("ask", "--max-tokens", "40", "--temperature", "0", "--json", q), env) for q in questions]
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
        at = time.time() + 1.5
        processes = [start([sys.executable, "-c", WRITER, str(at), str(db), f"p{i}", "1"]) for i in range(6)]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and out.startswith("ok"), err
        store = Store(db)
        assert len(store.conversations()) == 6 and store.integrity_ok()
        # the three full-text triggers once each (and m005's trigger that removes attachment records)
        assert sorted(t.name for t in store.db["messages"].triggers) == [
            "attachments_follow_messages",
            "messages_ad",
            "messages_ai",
            "messages_au",
        ]


UI_QUESTIONS = ["Name a colour.", "Name a fruit.", "Name a planet."]
ASK_QUESTIONS = [f"Give one word that rhymes with {word}." for word in ("cat", "sun", "day", "tree", "light", "rain")]


class AskPool:
    """`assistant ask` processes for a list of questions, a few at a time."""

    def __init__(self, home: Path, questions: list[str], at_once: int = 2) -> None:
        self.home, self.pending, self.at_once = home, list(questions), at_once
        self.started: dict[str, subprocess.Popen] = {}
        self.busy = False  # an ask was running at some check since this was last reset

    def top_up(self) -> None:
        """Start asks until ``at_once`` of them run (or every question is asked)."""
        running = sum(p.poll() is None for p in self.started.values())
        while running < self.at_once and self.pending:
            question = self.pending.pop(0)
            self.started[question] = start(
                cli_command("ask", "--max-tokens", "16", "--temperature", "0", "--json", question),
                cli_env(self.home, ASSISTANT_THREADS="1"),
            )
            running += 1
        self.busy = self.busy or running > 0

    def results(self) -> dict[str, tuple[str, str, int]]:
        """Ask what is left, wait for all: (stdout, stderr, exit code) per question."""
        self.at_once += len(self.pending)
        self.top_up()
        return {q: (*p.communicate(timeout=120), p.returncode) for q, p in self.started.items()}


def answered(db: Path, question: str) -> bool:
    """The UI's answer to ``question`` is finished in the database (read-only peek)."""
    rows = read_rows(
        db,
        """
        select a.finish_reason from messages q join messages a on a.conversation_id = q.conversation_id
        where q.role = 'user' and q.content = ? and a.role = 'assistant' and a.id > q.id""",
        (question,),
    )
    return any(row["finish_reason"] for row in rows)


@pytest.mark.timeout(300)
def test_ui_and_ask_write_the_same_database_at_once(assistant_home: Path) -> None:
    """The real UI streams answers while `assistant ask` processes answer too, all on one fresh database."""
    db = assistant_home / "assistant.db"
    ui = TerminalUI(assistant_home, ASSISTANT_MAX_TOKENS="24", ASSISTANT_TEMPERATURE="0")
    asks = AskPool(assistant_home, ASK_QUESTIONS)
    asks.top_up()  # racing the UI's first open of the database
    overlapped = 0  # UI answers streamed while an ask was running
    try:
        ui.wait(lambda: ui.shows(PROMPT_READY), "the UI to start")
        ui.child.send(CTRL_N)  # a chat of its own, whatever the asks created meanwhile
        for question in UI_QUESTIONS:
            asks.busy = False
            ui.type(question)
            ui.wait(lambda: answered(db, question), f"the UI's answer to {question!r}", timeout=90, tick=asks.top_up)
            overlapped += asks.busy
        results = asks.results()
        store = Store(db)
        (ui_conversation,) = [c["id"] for c in store.conversations() if c["title"] == UI_QUESTIONS[0]]
        ui_messages = store.messages(ui_conversation)
        word = max(re.findall(r"[A-Za-z0-9]+", ui_messages[-1]["content"]), key=len)
        ui.wait(lambda: ui.shows(word), "the UI's last answer on screen")
        screen = ui.text.lower()
        assert ui.quit() == 0
    finally:
        if ui.child.isalive():
            ui.kill()
    for question, (out, err, code) in results.items():
        assert code == 0 and "locked" not in err.lower() and "busy" not in err.lower(), err
        answer = json.loads(out)
        user, stored = store.messages(answer["conversation_id"])
        assert user["content"] == question and stored["content"] == answer["answer"] and stored["complete"] == 1
    assert not any(word in screen for word in ("locked", "cannot write", "generation failed")), screen[-2000:]
    assert [m["content"] for m in ui_messages if m["role"] == "user"] == UI_QUESTIONS
    assert [m["role"] for m in ui_messages] == ["user", "assistant"] * len(UI_QUESTIONS)
    assert all(m["complete"] == 1 and m["content"].strip() for m in ui_messages)
    assert store.integrity_ok() and len(store.conversations()) == 1 + len(ASK_QUESTIONS)
    assert len(list(store.iter_messages())) == 2 * (len(UI_QUESTIONS) + len(ASK_QUESTIONS))
    store.close()
    print(f"\nUI + ask: {len(results)} asks, {len(UI_QUESTIONS)} UI answers, {overlapped} of them while asks ran")
    assert overlapped >= 1
