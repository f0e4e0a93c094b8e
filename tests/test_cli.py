"""The `assistant` command as a user runs it: a real process, the real embedded model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, home: Path, stdin: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSISTANT_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, text=True, env=env, input=stdin, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_version(assistant_home: Path) -> None:
    proc = run("--version", home=assistant_home, check=True)
    assert proc.stdout.startswith("assistant ")


def test_ask_json_then_continue_and_history(assistant_home: Path) -> None:
    proc = run(
        "ask", "--json", "--max-tokens", "16", "--temperature", "0", "What is 2 + 2?", home=assistant_home, check=True
    )
    first = json.loads(proc.stdout)
    assert set(first) >= {"answer", "model", "escalated", "tokens", "ttft_s", "tokens_per_s", "conversation_id"}
    assert first["answer"].strip() and first["escalated"] is False
    assert first["model"] == "smollm2-135m" and 0 < first["tokens"] <= 16  # the registry name, as --model takes
    assert Path(first["model_file"]).name == "SmolLM2-135M-Instruct.Q4_1.gguf"

    proc = run("ask", "-c", "--max-tokens", "8", "And 3 + 3?", home=assistant_home, check=True)
    assert proc.stdout.strip()

    listing = run("history", "list", home=assistant_home, check=True).stdout
    assert "What is 2 + 2?" in listing
    shown = run("history", "show", str(first["conversation_id"]), home=assistant_home, check=True).stdout
    assert shown.count("## User") == 2 and shown.count("## Assistant") == 2
    found = run("history", "search", "3 + 3", home=assistant_home, check=True).stdout
    assert str(first["conversation_id"]) in found
    out = assistant_home / "export.json"
    run(
        "history",
        "export",
        str(first["conversation_id"]),
        "--format",
        "json",
        "-o",
        str(out),
        home=assistant_home,
        check=True,
    )
    assert len(json.loads(out.read_text())["messages"]) == 4


def test_ask_streams_plain_text_and_reads_stdin(assistant_home: Path) -> None:
    proc = run("ask", "--max-tokens", "8", "-", home=assistant_home, stdin="Say hello.", check=True)
    assert proc.stdout.strip()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ask", "--model", "no-such-model", "hi"), "unknown model 'no-such-model'"),
        (("ask", "--conversation", "999", "hi"), "no conversation with id 999"),
        (("history", "show", "42"), "no conversation with id 42"),
    ],
)
def test_user_errors_are_one_line(assistant_home: Path, args: tuple[str, ...], expected: str) -> None:
    proc = run(*args, home=assistant_home)
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_bad_model_file_is_one_line(assistant_home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    proc = run("ask", "--model", str(fake), "hi", home=assistant_home)
    assert proc.returncode == 1 and "too small to be a GGUF" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_is_one_line(assistant_home: Path) -> None:
    (assistant_home / "config.toml").write_text("[generation]\nmax_tokens = 'lots'\n")
    proc = run("ask", "hi", home=assistant_home)
    assert proc.returncode == 1
    assert "config.toml: generation.max_tokens: expected int" in proc.stderr and "Traceback" not in proc.stderr


def test_an_answer_cut_at_the_token_limit_is_marked(assistant_home: Path) -> None:
    """`ask` says so on stderr and `history show` marks it, as the chat UI does."""
    proc = run(
        "ask",
        "--max-tokens",
        "3",
        "--temperature",
        "0",
        "Write a long essay about Rome.",
        home=assistant_home,
        check=True,
    )
    assert "note: the answer was cut at the token limit (3 tokens)" in proc.stderr
    shown = run("history", "show", "1", home=assistant_home, check=True).stdout
    assert "## Assistant · smollm2-135m · cut at the token limit" in shown  # the model by its registry name


def test_ask_json_documents_its_keys(assistant_home: Path) -> None:
    usage = run("ask", "--help", home=assistant_home, check=True).stdout
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for key in ("finish_reason", "notes", "route"):
        assert key in " ".join(usage.split()) and f'"{key}"' in readme
