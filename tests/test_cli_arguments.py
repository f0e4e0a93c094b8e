"""Command-line values get the config file's validation: one clear line each, no traceback (real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.reliability_helpers import assert_one_line_error, run_cli

HUGE = "99999999999999999999"  # larger than SQLite's largest integer


@pytest.mark.parametrize(
    "args",
    [("history", "show", HUGE), ("history", "export", HUGE), ("ask", "--conversation", HUGE, "hi")],
    ids=["show", "export", "ask-conversation"],
)
def test_huge_conversation_ids_are_not_found(assistant_home: Path, args: tuple[str, ...]) -> None:
    assert_one_line_error(run_cli(assistant_home, *args), f"no conversation with id {HUGE}")


@pytest.mark.parametrize("command", ["search", "list"])
def test_huge_and_bad_limits(assistant_home: Path, command: str) -> None:
    query = ("capital",) if command == "search" else ()
    result = run_cli(assistant_home, "history", command, *query, "--limit", HUGE)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert_one_line_error(run_cli(assistant_home, "history", command, *query, "--limit", "0"), "--limit")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--max-tokens", "-5"), "max_tokens must be positive"),
        (("--max-tokens", "0"), "max_tokens must be positive"),
        (("--temperature", "nan"), "temperature must be between 0 and 5"),
        (("--temperature", "-1"), "temperature must be between 0 and 5"),
    ],
)
def test_ask_options_are_validated(assistant_home: Path, args: tuple[str, ...], needle: str) -> None:
    line = assert_one_line_error(run_cli(assistant_home, "ask", *args, "hi"), needle)
    assert "command line" in line


def test_a_missing_named_config_file_is_an_error(assistant_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.toml"
    result = run_cli(assistant_home, "ask", "hi", ASSISTANT_CONFIG=str(missing))
    assert_one_line_error(result, str(missing), "ASSISTANT_CONFIG")


def test_absurd_thread_counts_are_refused(assistant_home: Path) -> None:
    (assistant_home / "config.toml").write_text("[model]\nthreads = 1000\n")
    assert_one_line_error(run_cli(assistant_home, "ask", "hi"), "model.threads", "1000")
