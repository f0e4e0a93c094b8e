"""Issue 26, the command-line rows: the model's name as `--model` knows it, `ask -f - -`, argparse errors in one
line with exit 1, `history list` on a fresh install. Real processes, the real embedded model, greedy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability.reliability_helpers import assert_one_line_error, run_cli

STEM = "SmolLM2-135M-Instruct.Q4_1"  # the packaged default's file stem, which the engine calls it


def ask_json(home: Path, *args: str) -> dict:
    result = run_cli(home, "ask", "--json", "--max-tokens", "2", "--temperature", "0", *args, timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- row 17: the name shown is one `--model` accepts; `--model` also accepts a registered model's file stem
def test_ask_json_and_history_list_name_the_model_as_the_registry_does(assistant_home: Path) -> None:
    """`ask --json` said "SmolLM2-135M-Instruct.Q4_1", which `--model` refused. It now says the registry name
    (what `models list`, `--model` and the server's /v1/models use) and gives the file as "model_file"."""
    answer = ask_json(assistant_home, "Hi")
    assert answer["model"] == "smollm2-135m"
    assert Path(answer["model_file"]).name == f"{STEM}.gguf"
    listing = run_cli(assistant_home, "history", "list").stdout
    assert "smollm2-135m" in listing and STEM not in listing


def test_model_accepts_a_registered_models_file_stem(assistant_home: Path) -> None:
    """A name the app printed before (a file stem, still in old histories) keeps working as `--model`."""
    assert ask_json(assistant_home, "--model", STEM, "Hi")["model"] == "smollm2-135m"
    assert ask_json(assistant_home, "--model", STEM.lower(), "Hi")["model"] == "smollm2-135m"


def test_a_model_given_by_path_is_named_by_the_registry_when_registered(
    assistant_home: Path, smollm_path: Path
) -> None:
    assert ask_json(assistant_home, "--model", str(smollm_path), "Hi")["model"] == "smollm2-135m"


# -- row 18: standard input is read once
def test_ask_file_stdin_and_prompt_stdin_together_is_refused(assistant_home: Path) -> None:
    """`-f -` makes stdin the file, so the prompt '-' would read nothing: refused as `-f - -f -` is."""
    result = run_cli(assistant_home, "ask", "-f", "-", "-", stdin="hello\n")
    assert result.returncode == 1
    assert_one_line_error(result, "standard input")


# -- row 19: argparse errors are one line and exit 1, as every other error
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("ask", "--max-tokens", "lots", "hi"), ("ask: argument --max-tokens", "see assistant ask --help")),
        (("nonsense",), ("invalid choice", "see assistant --help")),
        (("persona",), ("persona:", "required", "see assistant persona --help")),
        (("persona", "add"), ("persona add:", "required: name", "see assistant persona add --help")),
        (("history", "export", "1", "--format", "pdf"), ("history export:", "--format")),
        (("ask", "--bogus", "hi"), ("unrecognized arguments: --bogus",)),
        (("distill", "run"), ("distill run:", "required")),
    ],
    ids=["bad-int", "bad-command", "no-subcommand", "missing-argument", "bad-choice", "unknown-option", "distill"],
)
def test_argument_errors_are_one_line_and_exit_1(assistant_home: Path, args: tuple[str, ...], needles) -> None:
    """The README: "Errors are one line on stderr with a non-zero exit code (1; …)"; argparse printed its usage
    and a second line, and exited 2."""
    result = run_cli(assistant_home, *args, timeout=60)
    assert result.returncode == 1, result
    assert_one_line_error(result, *needles)
    assert result.stdout == ""


def test_help_still_prints_usage_and_exits_0(assistant_home: Path) -> None:
    result = run_cli(assistant_home, "persona", "add", "--help", timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: assistant persona add")


# -- row 19: history list on a fresh install
def test_history_list_on_a_fresh_install_says_so_on_stderr(assistant_home: Path) -> None:
    """The note goes to stderr: stdout stays empty, so `history list | wc -l` counts 0 and a loop over the lines
    sees none; a person at the terminal still sees why nothing is listed."""
    result = run_cli(assistant_home, "history", "list", timeout=60)
    assert result.returncode == 0 and result.stdout == ""
    assert "no conversations yet" in result.stderr
