"""Every path that prints stored text goes through the sanitizer; files written with -o keep the exact text.

A hostile teacher on 127.0.0.1 answers with a window title, a screen clear, an OSC 52 clipboard
write, a C1 CSI and a bidi override; its answer is stored as sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import run_cli
from teacher_servers import HOSTILE, FakeTeacher

FACTUAL = "Who was the second president of Botswana?"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture(scope="module")
def hostile() -> Iterator[FakeTeacher]:
    server = FakeTeacher()
    server.set("hostile")
    yield server
    server.close()


def assert_harmless(text: str) -> None:
    assert not any(c in text for c in UNSAFE), repr(text)


def test_stored_escapes_never_reach_stdout_but_reach_files(hostile: FakeTeacher, assistant_home: Path) -> None:
    (assistant_home / "config.toml").write_text(f'[teacher]\nurl = "{hostile.url}"\nmodel = "fake-teacher"\n')
    exact = "".join(HOSTILE)
    asked = run_cli(assistant_home, "ask", "--escalate", "auto", "--temperature", "0", "--max-tokens", "8", FACTUAL)
    assert asked.returncode == 0, asked.stderr
    assert "answered by the teacher fake-teacher" in asked.stderr
    assert_harmless(asked.stdout + asked.stderr)
    assert "PWNED" not in asked.stdout and "Paris" in asked.stdout

    as_json = run_cli(assistant_home, "ask", "--escalate", "auto", "--json", "--temperature", "0", FACTUAL)
    assert as_json.returncode == 0, as_json.stderr
    assert_harmless(as_json.stdout)
    assert json.loads(as_json.stdout)["answer"] == exact  # escaped, not dropped: the JSON value is exact

    for args in (
        ("history", "export", "1"),
        ("history", "show", "1"),
        ("history", "search", "Paris"),
        ("history", "list"),
    ):
        printed = run_cli(assistant_home, *args)
        assert printed.returncode == 0, printed.stderr
        assert_harmless(printed.stdout)
    assert "Paris" in run_cli(assistant_home, "history", "export", "1").stdout

    exported = run_cli(assistant_home, "history", "export", "1", "--format", "json")
    assert_harmless(exported.stdout)
    assert json.loads(exported.stdout)["messages"][1]["content"] == exact

    out = assistant_home / "chat.md"
    assert run_cli(assistant_home, "history", "export", "1", "-o", str(out)).returncode == 0
    assert exact in out.read_text(encoding="utf-8")  # a file keeps the exact text
