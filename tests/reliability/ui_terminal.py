"""The real chat UI (`python -m assistant`) in a pseudo-terminal, and read-only peeks at its database."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
from reliability_helpers import REPO, cli_env

ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")
PROMPT_READY = "(Enter sends"  # the message box's placeholder: the UI is up and takes keys
PROMPT_BORDER = "▊ "  # the message box's left border (messages in the chat have another)
CTRL_N, CTRL_Q, F5 = "\x0e", "\x11", "\x1b[15~"


class TerminalUI:
    """One `assistant` process on a 30x100 pty; its output is drained (so it never blocks) into ``text``."""

    def __init__(self, home: Path, **env: str) -> None:
        full_env = cli_env(home, ASSISTANT_THREADS="1", TERM="xterm-256color", COLUMNS="100", LINES="30", **env)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "assistant"],
            env=full_env,
            cwd=str(REPO),
            dimensions=(30, 100),
            encoding="utf-8",
            codec_errors="replace",
            timeout=60,
        )
        self.text = ""  # everything shown so far, escape sequences removed
        self._carry = ""  # an escape sequence split across reads

    def pump(self, seconds: float = 0.05) -> None:
        """Read whatever the UI wrote within ``seconds``."""
        try:
            chunk = self.child.read_nonblocking(1 << 16, timeout=seconds)
        except (pexpect.TIMEOUT, pexpect.EOF):
            return
        data = self._carry + chunk
        cut = data.rfind("\x1b")
        data, self._carry = (data[:cut], data[cut:]) if cut != -1 and len(data) - cut < 256 else (data, "")
        self.text += ANSI.sub("", data)

    def wait(
        self, done: Callable[[], bool], what: str, timeout: float = 60.0, tick: Callable[[], object] | None = None
    ) -> None:
        """Keep draining the terminal (and calling ``tick``) until ``done()``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            assert self.child.isalive(), f"the UI exited while waiting for {what}: {self.text[-1500:]!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; the screen showed {self.text[-1500:]!r}"
            self.pump()
            if tick is not None:
                tick()

    def shows(self, needle: str, since: int = 0) -> bool:
        return needle in self.text[since:]

    def type(self, text: str) -> None:
        """Type ``text`` and press Enter once the message box shows it.

        Enter is a priority binding handled at once, while typed keys queue up for the box: sent
        together, Enter may find the box still empty. The box's left border tells it apart from
        the same text in the chat (an earlier question on screen).
        """
        mark = len(self.text)
        self.child.send(text)
        self.wait(lambda: self.shows(PROMPT_BORDER + text, mark), f"{text!r} in the message box", timeout=20)
        self.child.send("\r")

    def kill(self) -> None:
        os.kill(self.child.pid, signal.SIGKILL)
        self.child.close(force=True)

    def quit(self) -> int | None:
        """Ctrl+Q; the exit status."""
        self.child.send(CTRL_Q)
        self.wait(lambda: not self.child.isalive(), "the UI to quit", timeout=30)
        self.child.close()
        return self.child.exitstatus


def read_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows from the database opened read-only (the running UI's writes are seen, nothing is changed)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:  # the schema is being created by another process right now
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()
