"""Smoke test: the real ``assistant`` command in a pseudo-terminal (pexpect), as a user would run it."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pytest

from assistant.store import Store

ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")


def launch(home: Path) -> pexpect.spawn:
    env = dict(
        os.environ,
        ASSISTANT_HOME=str(home),
        ASSISTANT_MAX_TOKENS="16",
        ASSISTANT_TEMPERATURE="0",
        ASSISTANT_THREADS="1",
        TERM="xterm-256color",
        COLUMNS="100",
        LINES="30",
    )
    return pexpect.spawn(
        sys.executable,
        ["-m", "assistant"],
        env=env,
        dimensions=(30, 100),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
    )


def read_until(child: pexpect.spawn, done, timeout: float = 60.0) -> str:  # noqa: ANN001
    """Keep draining the terminal output until ``done(plain_text)`` is true."""
    output = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            output += child.read_nonblocking(65536, timeout=0.2)
        except pexpect.TIMEOUT:
            pass
        plain = ANSI.sub("", output)
        if done(plain):
            return plain
    raise AssertionError(f"timed out; the screen showed: {ANSI.sub('', output)[-2000:]!r}")


def quit_cleanly(child: pexpect.spawn) -> None:
    child.send("\x11")  # Ctrl+Q
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    assert child.exitstatus == 0, child.exitstatus


@pytest.mark.timeout(180)
def test_assistant_command_answers_in_a_terminal_and_remembers(assistant_home: Path) -> None:
    child = launch(assistant_home)
    read_until(child, lambda s: "Ask anything" in s and "on-device only" in s and "ctx 0/" in s)  # model loaded
    child.send("What is 2+2?\r")  # text and Enter in one read, as tmux send-keys, SSH or a paste deliver them

    store = Store(assistant_home / "assistant.db")

    def answered(_: str) -> bool:
        rows = [m for c in store.conversations() for m in store.messages(c["id"]) if m["role"] == "assistant"]
        return bool(rows) and bool(rows[-1]["finish_reason"])

    read_until(child, answered, timeout=90)
    answer = [m for m in store.messages(store.latest_conversation_id()) if m["role"] == "assistant"][-1]["content"]
    word = max(re.findall(r"[A-Za-z0-9]+", answer), key=len)
    read_until(child, lambda s: word in s)  # the stored answer is on screen
    quit_cleanly(child)

    # a restart shows the conversation again
    child = launch(assistant_home)
    read_until(child, lambda s: "What is 2+2?" in s and word in s)
    quit_cleanly(child)
    store.close()
