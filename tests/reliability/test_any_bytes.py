"""Any bytes a user can type or pipe: invalid UTF-8 in arguments and on stdin never makes a traceback."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import REPO, cli_command, cli_env

from assistant.storage.store import Store

RANDOM_BYTES = random.Random(19).randbytes(3072)


def run_bytes(home: Path, *args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI with raw byte arguments and stdin (no text decoding on our side); a window that holds 3 KB
    of random bytes (~2,900 tokens: a message too long for the window is refused, not cut)."""
    command = cli_command(*args)  # type: ignore[arg-type] - bytes arguments are fine on POSIX
    env = cli_env(home, ASSISTANT_N_CTX="4096")
    return subprocess.run(command, input=stdin, capture_output=True, timeout=180, env=env, cwd=REPO)


def stored_question(home: Path) -> str:
    store = Store(home / "assistant.db")
    try:
        return store.messages(store.latest_conversation_id())[0]["content"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("-",), b"Explain \xff\xfe\xc3\x28 this\n"),
        ((b"abc\xff def",), None),
        (("-",), RANDOM_BYTES),
    ],
    ids=["stdin-invalid-utf8", "argument-invalid-utf8", "stdin-3kb-random"],
)
def test_ask_takes_any_bytes(assistant_home: Path, args: tuple, stdin: bytes | None) -> None:
    result = run_bytes(assistant_home, "ask", "--max-tokens", "2", "--temperature", "0", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    raw = stdin if stdin is not None else b" ".join(args)
    assert stored_question(assistant_home) == raw.decode("utf-8", errors="replace")  # invalid bytes -> U+FFFD


def test_other_text_arguments_take_any_bytes(assistant_home: Path) -> None:
    ask = run_bytes(assistant_home, "ask", "--max-tokens", "1", "--system", b"be \xff brief", "hi")
    assert ask.returncode == 0 and b"Traceback" not in ask.stderr, ask.stderr
    search = run_bytes(assistant_home, "history", "search", b"caf\xe9")
    assert search.returncode == 0 and b"Traceback" not in search.stderr, search.stderr
