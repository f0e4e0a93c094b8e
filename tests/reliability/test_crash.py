"""kill -9 the real `assistant ask`, and the real chat UI, at random points while they stream; nothing written is lost.

Set RELIABILITY_KILLS (default 12) to run more kills of `ask`, e.g. 50 for the figures in SECURITY.md,
and RELIABILITY_UI_KILLS (default 5) for more kills of the UI.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from reliability_helpers import REPO, cli_command, cli_env, run_cli
from ui_terminal import CTRL_N, F5, PROMPT_READY, TerminalUI, read_rows

from assistant.storage.store import Store

PROMPT = "Write a long, detailed essay about the history of computers, from the abacus to smartphones."
KILLS = int(os.environ.get("RELIABILITY_KILLS", "12"))
UI_KILLS = int(os.environ.get("RELIABILITY_UI_KILLS", "5"))
UI_PROMPT = "Write a long essay about computers."
RESUME_MARK = "press F5 to continue"


class Reader(threading.Thread):
    """Collects a process's stdout as it arrives, noting when the first byte came."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.process, self.chunks, self.first_at = process, [], 0.0

    def run(self) -> None:
        while chunk := os.read(self.process.stdout.fileno(), 4096):
            if not self.first_at:
                self.first_at = time.monotonic()
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def kill_once(home: Path, rng: random.Random, while_streaming: bool) -> tuple[str, float]:
    """Start an ask, SIGKILL it (after output began, or at a random moment), return (stdout, delay)."""
    process = subprocess.Popen(
        cli_command("ask", "--max-tokens", "200", "--temperature", "0", PROMPT),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cli_env(home),
        cwd=REPO,
    )
    reader = Reader(process)
    reader.start()
    started = time.monotonic()
    if while_streaming:
        while not reader.first_at and process.poll() is None and time.monotonic() - started < 120:
            time.sleep(0.01)
        delay = rng.uniform(0.05, 1.2)
    else:
        delay = rng.uniform(0.0, 3.0)
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    reader.join(timeout=5)
    return reader.text, delay


def snapshot(store: Store) -> dict[int, tuple]:
    return {m["id"]: (m["role"], m["content"], m["complete"]) for m in store.iter_messages()}


@contextmanager
def reopened(db: Path, verified: dict[int, tuple], figures: dict[str, int]) -> Iterator[Store]:
    """The database after a kill: intact, and no row checked after an earlier kill changed or vanished.
    The rows seen now join ``verified`` once the caller's own checks pass."""
    store = Store(db)
    try:
        assert store.integrity_ok()
        rows = snapshot(store)
        figures["lost"] += sum(1 for pk, row in verified.items() if rows.get(pk) != row)
        assert figures["lost"] == 0, "a message stored before an earlier kill changed or vanished"
        yield store
        verified.update(rows)
    finally:
        store.close()


def test_kill_9_while_streaming_loses_nothing(assistant_home: Path) -> None:
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "9")))
    db = assistant_home / "assistant.db"
    verified: dict[int, tuple] = {}  # rows checked after earlier kills: must never change
    figures = {"kills": 0, "partial_answers": 0, "finished_before_kill": 0, "lost": 0}
    for round_ in range(KILLS):
        streaming = round_ % 4 != 3  # every fourth kill lands anywhere: start-up, model load, first write
        printed, delay = kill_once(assistant_home, rng, streaming)
        figures["kills"] += 1
        with reopened(db, verified, figures) as store:
            conversation = store.latest_conversation_id()
            messages = store.messages(conversation) if conversation else []
            if streaming:
                # output had started: the question and a (partial) answer are on disk
                assert [m["role"] for m in messages] == ["user", "assistant"]
                assert messages[0]["content"] == PROMPT and messages[0]["complete"] == 1
                answer = messages[1]
                assert printed.startswith(answer["content"]), "stored partial answer is not what was streamed"
                if answer["complete"]:
                    figures["finished_before_kill"] += 1
                else:
                    assert answer["finish_reason"] == ""
                    figures["partial_answers"] += 1
                    if delay >= 0.6:  # several 250 ms flushes happened before the kill
                        assert answer["content"], f"nothing flushed {delay:.2f} s after output began"
    print(f"\ncrash figures: {figures}")
    assert figures["partial_answers"] >= KILLS // 2
    # the app reopens the database and carries on with the interrupted conversation
    result = run_cli(assistant_home, "ask", "-c", "--max-tokens", "8", "--temperature", "0", "Go on.")
    assert result.returncode == 0, result.stderr
    shown = run_cli(assistant_home, "history", "show", str(Store(db).latest_conversation_id()))
    assert "incomplete" in shown.stdout


def persisted_answer(db: Path, after: int) -> str:
    """The newest answer's stored text (read-only), among messages with an id above ``after``."""
    rows = read_rows(
        db, "select content from messages where role = 'assistant' and id > ? order by id desc limit 1", (after,)
    )
    return rows[0]["content"] if rows else ""


def kill_ui_while_streaming(home: Path, rng: random.Random, reopened: bool) -> tuple[str, float]:
    """Start the UI, ask, SIGKILL it a random moment after the answer began to reach the database.

    Returns the last answer text seen in the database before the kill, and the delay.
    """
    db = home / "assistant.db"
    ui = TerminalUI(home, ASSISTANT_MAX_TOKENS="200", ASSISTANT_TEMPERATURE="0")
    try:
        ui.wait(lambda: ui.shows(PROMPT_READY), "the UI to start")
        if reopened:  # the app reopened the interrupted conversation and offers to continue its answer
            ui.wait(lambda: ui.shows(RESUME_MARK), "the incomplete answer's mark")
            ui.child.send(CTRL_N)
        before = (read_rows(db, "select max(id) as top from messages") or [{"top": 0}])[0]["top"] or 0
        ui.type(UI_PROMPT)
        ui.wait(lambda: persisted_answer(db, before) != "", "the answer's first flush", timeout=90)
        seen, delay = persisted_answer(db, before), rng.uniform(0.0, 1.5)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            ui.pump(0.02)
            seen = persisted_answer(db, before) or seen
    finally:
        ui.kill()
    return seen, delay


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_of_the_ui_while_streaming_loses_nothing(assistant_home: Path) -> None:
    """The real UI in a terminal, killed mid-answer: question and flushed answer survive, marked incomplete."""
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "9")))
    db = assistant_home / "assistant.db"
    verified: dict[int, tuple] = {}
    partials: list[str] = []
    figures = {"kills": 0, "partial_answers": 0, "finished_before_kill": 0, "lost": 0}
    for round_ in range(UI_KILLS):
        seen, delay = kill_ui_while_streaming(assistant_home, rng, reopened=round_ > 0)
        figures["kills"] += 1
        with reopened(db, verified, figures) as store:
            question, answer = store.messages(store.latest_conversation_id())
            assert question["role"] == "user" and question["content"] == UI_PROMPT and question["complete"] == 1
            figures["lost"] += not answer["content"].startswith(seen)  # flushed before the kill: must be there
            assert figures["lost"] == 0, f"round {round_}: stored {answer['content']!r}, saw {seen!r} before the kill"
            if answer["complete"]:
                figures["finished_before_kill"] += 1
            else:
                assert answer["finish_reason"] == "" and answer["content"]
                figures["partial_answers"] += 1
            partials.append(answer["content"])
    print(f"\nUI crash figures: {figures}")
    assert figures["partial_answers"] >= (UI_KILLS + 1) // 2
    longest = max(partials, key=len)  # greedy decoding: every partial is a prefix of the same answer
    assert all(longest.startswith(p) for p in partials)
    continue_after_restart(assistant_home)


def continue_after_restart(home: Path) -> None:
    """Restart the UI on the killed conversation, press the continue key: the same message grows and completes."""
    store = Store(home / "assistant.db")
    partial = store.messages(store.latest_conversation_id())[-1]
    if partial["complete"]:
        return
    ui = TerminalUI(home, ASSISTANT_MAX_TOKENS="12", ASSISTANT_TEMPERATURE="0")
    try:
        ui.wait(lambda: ui.shows(PROMPT_READY) and ui.shows(RESUME_MARK), "the incomplete answer's mark")
        ui.child.send(F5)
        ui.wait(lambda: store.message(partial["id"])["complete"] == 1, "the continued answer", timeout=60)
        assert ui.quit() == 0
    finally:
        if ui.child.isalive():
            ui.kill()
    answer = store.message(partial["id"])
    assert answer["content"].startswith(partial["content"]) and len(answer["content"]) > len(partial["content"])
    assert answer["finish_reason"] in ("stop", "length") and len(store.messages(partial["conversation_id"])) == 2
    store.close()
