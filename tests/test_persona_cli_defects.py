"""Issue 26, the persona rows: names that clash with models, unbounded context files, schemas llama.cpp cannot
use, relative model paths, case-only name clashes and duplicate context files. Real processes throughout."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from reliability.reliability_helpers import assert_one_line_error, cli_command, cli_env

PIRATE = "You are a pirate. Answer every question like a pirate would, with plenty of arrr.\n"


def cli(home: Path, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``assistant ARGS`` as a user runs it, from ``cwd``; at most 4 GiB of address space (a runaway read fails
    fast with MemoryError instead of taking the machine's memory)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(home),
        cwd=cwd or home,
        preexec_fn=limit,
    )


def stored(home: Path, name: str) -> dict:
    return json.loads((home / "personas" / f"{name}.json").read_text())


@pytest.fixture
def pirate(tmp_path: Path) -> Path:
    path = tmp_path / "pirate.md"
    path.write_text(PIRATE)
    return path


# -- row 3: a persona must not take a model's name (GET /v1/models would list one name for both)
@pytest.mark.parametrize("name", ["smollm2-135m", "SmolLM2-135M", "gemma3-270m"])
def test_persona_add_refuses_a_packaged_models_name(assistant_home: Path, pirate: Path, name: str) -> None:
    """Case-insensitively: the server matches names as typed, but a user reads `SmolLM2-135M` and `smollm2-135m`
    as one model (and `distill persona` would refuse to register the student under either)."""
    result = cli(assistant_home, "persona", "add", name, "--system", str(pirate))
    assert_one_line_error(result, "model", "smollm2-135m" if name.lower() == "smollm2-135m" else name)
    assert not (assistant_home / "personas").exists() or not list((assistant_home / "personas").iterdir())


def test_persona_add_refuses_a_registered_models_name(assistant_home: Path, pirate: Path, smollm_path: Path) -> None:
    linked = cli(assistant_home, "models", "import", str(smollm_path), "--name", "house-model", "--link")
    assert linked.returncode == 0, linked.stderr
    assert_one_line_error(cli(assistant_home, "persona", "add", "House-Model", "--system", str(pirate)), "house-model")
    assert cli(assistant_home, "persona", "add", "house-pirate", "--system", str(pirate)).returncode == 0


def test_models_import_and_pull_refuse_a_personas_name(assistant_home: Path, pirate: Path, smollm_path: Path) -> None:
    """The other way round: a model imported (or pulled) under a persona's name would hide behind the persona."""
    assert cli(assistant_home, "persona", "add", "pirate", "--system", str(pirate)).returncode == 0
    for args in (
        ("models", "import", str(smollm_path), "--name", "Pirate", "--link"),
        ("models", "pull", "someone/some-repo", "model.gguf", "--name", "pirate"),  # refused before any download
    ):
        assert_one_line_error(cli(assistant_home, *args), "persona", "pirate")
    listing = json.loads(cli(assistant_home, "models", "list", "--json").stdout)
    assert not [row for row in listing if row["name"].lower() == "pirate"]


# -- row 11: a context file is read with the same 8 MiB cap as `ask -f`; devices and FIFOs never hang it
def test_a_context_from_a_device_is_refused_at_once(assistant_home: Path, pirate: Path) -> None:
    """/dev/zero used to be read without limit (13.6 GB in 18 s): a device is not a text file, refused unread."""
    started = time.monotonic()
    result = cli(assistant_home, "persona", "add", "zero", "--system", str(pirate), "--context", "/dev/zero")
    assert_one_line_error(result, "/dev/zero", "not a text file")
    assert time.monotonic() - started < 30


def test_a_context_file_over_8_mib_is_refused(assistant_home: Path, pirate: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_text("All work and no play makes Jack a dull boy.\n" * 200_000)  # 8.8 MB of text
    result = cli(assistant_home, "persona", "add", "big", "--system", str(pirate), "--context", str(big))
    assert_one_line_error(result, "big.md", "larger than 8 MiB")


def test_a_fifo_context_is_read_bounded_and_never_hangs(assistant_home: Path, pirate: Path, tmp_path: Path) -> None:
    """A FIFO (or `<(command)`) is a reasonable source: read bounded, like `ask -f`. With nobody writing to it,
    the command gives up after a short wait with one line rather than blocking forever in open()."""
    fifo = tmp_path / "facts.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("- The password is tulip42.\n"), daemon=True)
    writer.start()
    result = cli(assistant_home, "persona", "add", "piped", "--system", str(pirate), "--context", str(fifo))
    assert result.returncode == 0, result.stderr
    assert stored(assistant_home, "piped")["contexts"][0]["text"] == "- The password is tulip42.\n"
    writer.join(timeout=10)
    result = cli(
        assistant_home, "persona", "add", "silent", "--system", str(pirate), "--context", str(fifo), timeout=60
    )
    assert_one_line_error(result, "facts.fifo", "nothing was written")


# -- row 12: a schema llama.cpp cannot enforce is refused when it is set, not at every later ask
@pytest.mark.parametrize(
    "schema", ['{"$ref": "#"}', '{"type": "string", "maxLength": 1001}'], ids=["recursive", "too-long"]
)
def test_persona_schema_llama_cpp_cannot_use_is_refused(assistant_home: Path, pirate: Path, schema: str) -> None:
    add = cli(assistant_home, "persona", "add", "json-pirate", "--system", str(pirate), "--schema", schema)
    assert_one_line_error(add, "--schema")
    assert not (assistant_home / "personas" / "json-pirate.json").exists()
    assert cli(assistant_home, "persona", "add", "json-pirate", "--system", str(pirate)).returncode == 0
    assert_one_line_error(cli(assistant_home, "persona", "edit", "json-pirate", "--schema", schema), "--schema")
    assert stored(assistant_home, "json-pirate")["schema"] is None


def test_persona_schema_set_in_the_editor_is_checked(assistant_home: Path, pirate: Path, tmp_path: Path) -> None:
    assert cli(assistant_home, "persona", "add", "json-pirate", "--system", str(pirate)).returncode == 0
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import json, sys\n"
        "p = json.load(open(sys.argv[1]))\n"
        'p["schema"] = {"type": "string", "maxLength": 1001}\n'
        "json.dump(p, open(sys.argv[1], 'w'))\n"
    )
    env = cli_env(assistant_home, EDITOR=f"{sys.executable} {editor}")
    result = subprocess.run(
        cli_command("persona", "edit", "json-pirate"), capture_output=True, text=True, timeout=120, env=env
    )
    assert_one_line_error(result, "schema")
    assert stored(assistant_home, "json-pirate")["schema"] is None


# -- row 13: a model given as a file path is stored absolute; a registry name stays a name
def test_persona_model_path_is_stored_absolute(
    assistant_home: Path, pirate: Path, smollm_path: Path, tmp_path: Path
) -> None:
    """`--model m.gguf` typed in one folder must still name the same file from another folder (and for serve)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.gguf").symlink_to(smollm_path)
    added = cli(assistant_home, "persona", "add", "local", "--system", str(pirate), "--model", "m.gguf", cwd=work)
    assert added.returncode == 0, added.stderr
    assert stored(assistant_home, "local")["model"] == str(work / "m.gguf")
    shown = cli(assistant_home, "persona", "show", "local", cwd=tmp_path)
    assert str(work / "m.gguf") in shown.stdout
    assert cli(assistant_home, "persona", "edit", "local", "--model", "./m.gguf", cwd=work).returncode == 0
    assert stored(assistant_home, "local")["model"] == str(work / "m.gguf")
    assert cli(assistant_home, "persona", "edit", "local", "--model", "smollm2-135m", cwd=work).returncode == 0
    assert stored(assistant_home, "local")["model"] == "smollm2-135m"


def test_persona_model_given_as_a_file_stem_is_stored_as_its_registry_name(assistant_home: Path, pirate: Path) -> None:
    """The name `history list` used to show (the file stem) is accepted and stored as the name `--model` knows."""
    result = cli(
        assistant_home, "persona", "add", "stem", "--system", str(pirate), "--model", "SmolLM2-135M-Instruct.Q4_1"
    )
    assert result.returncode == 0, result.stderr
    assert stored(assistant_home, "stem")["model"] == "smollm2-135m"


# -- row 19: names that differ only in case, the same context file twice
def test_a_name_differing_only_in_case_is_refused(assistant_home: Path, pirate: Path) -> None:
    """`pip` and `PIP` are one file on a case-insensitive file system (macOS, Windows): the second would overwrite
    the first there, and be a confusing twin elsewhere."""
    assert cli(assistant_home, "persona", "add", "pip", "--system", str(pirate)).returncode == 0
    assert_one_line_error(cli(assistant_home, "persona", "add", "PIP", "--system", str(pirate)), "'pip'")
    assert [p.name for p in (assistant_home / "personas").glob("*.json")] == ["pip.json"]


def test_the_same_context_file_twice_is_refused(assistant_home: Path, pirate: Path, tmp_path: Path) -> None:
    """Refused rather than deduplicated: a repeated file is a mistake in the command (a glob that matched twice),
    and a silent fix would hide it; the one line names the file, nothing is written. `--context` (replace) stays
    the idempotent way to set a persona's files; `--add-context` of a file already there is refused the same way."""
    facts = tmp_path / "facts.md"
    facts.write_text("- The password is tulip42.\n")
    twice = ("--context", str(facts), "--context", str(facts))
    result = cli(assistant_home, "persona", "add", "pip", "--system", str(pirate), *twice)
    assert_one_line_error(result, "facts.md", "twice")
    assert not (assistant_home / "personas" / "pip.json").exists()
    assert (
        cli(assistant_home, "persona", "add", "pip", "--system", str(pirate), "--context", str(facts)).returncode == 0
    )
    assert_one_line_error(cli(assistant_home, "persona", "edit", "pip", "--add-context", str(facts)), "facts.md")
    assert len(stored(assistant_home, "pip")["contexts"]) == 1
    other = tmp_path / "other" / "facts.md"  # same name, other text: a different file, kept
    other.parent.mkdir()
    other.write_text("- The phone number is 555-0199.\n")
    assert cli(assistant_home, "persona", "edit", "pip", "--add-context", str(other)).returncode == 0
    assert len(stored(assistant_home, "pip")["contexts"]) == 2
