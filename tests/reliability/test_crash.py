"""kill -9 the real `assistant ask` at random points while it streams; nothing already written is lost.

Set RELIABILITY_KILLS (default 12) to run more kills, e.g. 50 for the figures in SECURITY.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from assistant.store import Store
from reliability_helpers import REPO, cli_command, cli_env, run_cli

PROMPT = "Write a long, detailed essay about the history of computers, from the abacus to smartphones."
KILLS = int(os.environ.get("RELIABILITY_KILLS", "12"))


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
    process.wait()
    reader.join(timeout=5)
    return reader.text, delay


def snapshot(store: Store) -> dict[int, tuple]:
    return {m["id"]: (m["role"], m["content"], m["complete"]) for m in store.iter_messages()}


def test_kill_9_while_streaming_loses_nothing(assistant_home: Path) -> None:
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "9")))
    db = assistant_home / "assistant.db"
    verified: dict[int, tuple] = {}  # rows checked after earlier kills: must never change
    figures = {"kills": 0, "partial_answers": 0, "finished_before_kill": 0, "lost": 0}
    for round_ in range(KILLS):
        streaming = round_ % 4 != 3  # every fourth kill lands anywhere: start-up, model load, first write
        printed, delay = kill_once(assistant_home, rng, streaming)
        figures["kills"] += 1
        store = Store(db)
        try:
            assert store.integrity_ok()
            rows = snapshot(store)
            figures["lost"] += sum(1 for pk, row in verified.items() if rows.get(pk) != row)
            assert figures["lost"] == 0, "a message stored before an earlier kill changed or vanished"
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
            verified.update(rows)
        finally:
            store.close()
    print(f"\ncrash figures: {figures}")
    assert figures["partial_answers"] >= KILLS // 2
    # the app reopens the database and carries on with the interrupted conversation
    result = run_cli(assistant_home, "ask", "-c", "--max-tokens", "8", "--temperature", "0", "Go on.")
    assert result.returncode == 0, result.stderr
    shown = run_cli(assistant_home, "history", "show", str(Store(db).latest_conversation_id()))
    assert "incomplete" in shown.stdout
