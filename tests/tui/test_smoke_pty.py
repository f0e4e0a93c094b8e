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


class Terminal:
    """Everything a child wrote to its terminal since launch, so a wait can find text drawn before it began."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child, self.output = child, ""

    def read_until(self, done, since: int = 0, timeout: float = 60.0) -> str:  # noqa: ANN001
        """Keep draining the output until ``done(plain text written after position since)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.output += self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
            plain = ANSI.sub("", self.output[since:])
            if done(plain):
                return plain
        raise AssertionError(f"timed out; the screen showed: {ANSI.sub('', self.output[since:])[-2000:]!r}")


def quit_cleanly(child: pexpect.spawn) -> None:
    child.send("\x11")  # Ctrl+Q
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    assert child.exitstatus == 0, child.exitstatus


@pytest.mark.timeout(180)
def test_assistant_command_answers_in_a_terminal_and_remembers(assistant_home: Path) -> None:
    child = launch(assistant_home)
    term = Terminal(child)
    term.read_until(lambda s: "Ask anything" in s and "on-device only" in s and "ctx 0/" in s)  # model loaded
    asked = len(term.output)
    child.send("What is 2+2?\r")  # text and Enter in one read, as tmux send-keys, SSH or a paste deliver them

    store = Store(assistant_home / "assistant.db")

    def answered(_: str) -> bool:
        rows = [m for c in store.conversations() for m in store.messages(c["id"]) if m["role"] == "assistant"]
        return bool(rows) and bool(rows[-1]["finish_reason"])

    term.read_until(answered, timeout=90)
    answer = [m for m in store.messages(store.latest_conversation_id()) if m["role"] == "assistant"][-1]["content"]
    word = max(re.findall(r"[A-Za-z0-9]+", answer), key=len)
    # the stored answer is on screen (it may have been drawn while the store was being polled)
    term.read_until(lambda s: word in s, since=asked)
    quit_cleanly(child)

    # a restart shows the conversation again
    child = launch(assistant_home)
    Terminal(child).read_until(lambda s: "What is 2+2?" in s and word in s)
    quit_cleanly(child)
    store.close()
