"""Personas: add/list/show/edit/rm from the real CLI, asking as a persona with the real model, window checks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FACTS = "- The office wifi password is tulip42.\n- The support phone number is 555-0199.\n"


def run(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "ASSISTANT_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, text=True, env=environ, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    system = tmp_path / "system.md"
    system.write_text("You are Pip, the helpdesk assistant of Brightwater Labs. Answer briefly.\n")
    facts = tmp_path / "facts.md"
    facts.write_text(FACTS)
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    return {"system": system, "facts": facts, "empty": empty}


@pytest.mark.samples("stores and edits a persona's temperature; it asks the model nothing")
def test_add_list_show_edit_rm(assistant_home: Path, files: dict[str, Path]) -> None:
    proc = run(
        "persona",
        "add",
        "pip",
        "--system",
        str(files["system"]),
        "--context",
        str(files["facts"]),
        "--temperature",
        "0.2",
        home=assistant_home,
    )
    assert proc.returncode == 0, proc.stderr
    assert "context tokens" in proc.stdout
    stored = json.loads((assistant_home / "personas" / "pip.json").read_text())
    assert stored["system"].startswith("You are Pip") and stored["contexts"][0]["text"] == FACTS
    assert not list((assistant_home / "personas").glob("*.partial"))

    listing = json.loads(run("persona", "list", "--json", home=assistant_home).stdout)
    assert [(p["name"], p["distilled"], p["context_files"]) for p in listing] == [("pip", False, ["facts.md"])]
    shown = run("persona", "show", "pip", home=assistant_home).stdout
    assert "tulip42" in shown and "## facts.md" in shown

    proc = run("persona", "edit", "pip", "--temperature", "0.5", "--max-tokens", "64", home=assistant_home)
    assert proc.returncode == 0, proc.stderr
    edited = json.loads(run("persona", "show", "pip", "--json", home=assistant_home).stdout)
    assert edited["temperature"] == 0.5 and edited["max_tokens"] == 64 and edited["contexts"][0]["text"] == FACTS

    assert run("persona", "rm", "pip", home=assistant_home).returncode == 0
    assert json.loads(run("persona", "list", "--json", home=assistant_home).stdout) == []


def test_edit_in_editor_keeps_the_persona_on_bad_json(
    assistant_home: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    run("persona", "add", "pip", "--system", str(files["system"]), home=assistant_home)
    before = (assistant_home / "personas" / "pip.json").read_text()
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho '{not json' > \"$1\"\n")
    editor.chmod(0o755)
    one_line_error(run("persona", "edit", "pip", home=assistant_home, env={"EDITOR": str(editor)}), "unchanged")
    assert (assistant_home / "personas" / "pip.json").read_text() == before
    editor.write_text("#!/bin/sh\nsed -i 's/Answer briefly/Answer in French/' \"$1\"\n")
    assert run("persona", "edit", "pip", home=assistant_home, env={"EDITOR": str(editor)}).returncode == 0
    assert "Answer in French" in json.loads((assistant_home / "personas" / "pip.json").read_text())["system"]


def test_bad_input_is_one_clear_line(assistant_home: Path, files: dict[str, Path], tmp_path: Path) -> None:
    system = str(files["system"])
    one_line_error(run("persona", "add", "../evil", "--system", system, home=assistant_home), "invalid persona name")
    one_line_error(
        run("persona", "add", "pip", "--system", system, "--context", str(files["empty"]), home=assistant_home), "empty"
    )
    one_line_error(
        run("persona", "add", "pip", "--system", str(tmp_path / "missing.md"), home=assistant_home), "no such"
    )
    one_line_error(run("persona", "add", "pip", home=assistant_home), "needs a system prompt or a context")
    assert run("persona", "add", "pip", "--system", system, home=assistant_home).returncode == 0
    one_line_error(run("persona", "add", "pip", "--system", system, home=assistant_home), "already exists")
    one_line_error(run("ask", "--persona", "nobody", "hi", home=assistant_home), "no persona named 'nobody'", "pip")
    long = tmp_path / "long.md"
    long.write_text("The quick brown fox jumps over the lazy dog near the river bank. " * 60)  # ~800 tokens
    proc = run("persona", "add", "big", "--context", str(long), home=assistant_home, env={"ASSISTANT_N_CTX": "512"})
    one_line_error(proc, "needs", "window has 512")
    assert not (assistant_home / "personas" / "big.json").exists()


def test_ask_as_a_persona_records_it(assistant_home: Path, files: dict[str, Path]) -> None:
    from assistant.config import database_path
    from assistant.storage.store import Store

    assert (
        run(
            "persona",
            "add",
            "pip",
            "--system",
            str(files["system"]),
            "--context",
            str(files["facts"]),
            home=assistant_home,
        ).returncode
        == 0
    )
    proc = run(
        "ask",
        "--persona",
        "pip",
        "--json",
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "What is the office wifi password?",
        home=assistant_home,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    conversation = Store(database_path()).conversation(answer["conversation_id"])
    assert conversation["persona"] == "pip" and "tulip42" in conversation["system"]
    assert "tulip42" in answer["answer"]  # the prompted base model reads its context


def test_a_context_too_long_for_the_engine_is_refused(smollm_path: Path, files: dict[str, Path]) -> None:
    from assistant.chat.persona import Persona, PersonaError
    from assistant.chat.session import Session
    from assistant.config import Config
    from assistant.models.engine import Engine
    from assistant.storage.store import Store

    persona = Persona("big", system="The quick brown fox jumps over the lazy dog. " * 80)  # ~800 tokens
    store = Store(":memory:")
    engine = Engine(smollm_path, n_ctx=512)
    try:
        session = Session(store, engine, Config(), persona=persona)
        with pytest.raises(PersonaError, match=r"needs \d+ tokens .* window has 512"):
            list(session.send("hello", max_tokens=4))
        assert store.conversations() == []  # nothing stored for a refused turn
    finally:
        engine.close()


def test_persona_column_is_added_to_an_old_database(tmp_path: Path) -> None:
    from assistant.storage.store import Store

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema before personas
        conn.execute(
            "create table conversations (id integer primary key, title text, model text, system text, "
            "created text, updated text)"
        )
        conn.execute("insert into conversations (title) values ('before')")
    for _ in range(2):  # idempotent
        store = Store(path)
        assert store.conversation(1)["persona"] == ""
        new = store.new_conversation(title="after", persona="pip")
        assert store.conversation(new)["persona"] == "pip"
        store.close()


def test_status_line_shows_the_persona() -> None:
    from assistant.tui.widgets.status import StatusInfo, status_line

    line = status_line(StatusInfo(model="SmolLM2", persona="pip"), 100).plain
    assert "pip (SmolLM2)" in line


def test_a_persona_default_schema_shapes_every_answer(assistant_home: Path, files: dict[str, Path]) -> None:
    assert (
        run(
            "persona",
            "add",
            "pip",
            "--system",
            str(files["system"]),
            "--schema",
            "password, office",
            home=assistant_home,
        ).returncode
        == 0
    )
    shown = json.loads(run("persona", "show", "pip", "--json", home=assistant_home).stdout)
    assert shown["schema"]["required"] == ["password", "office"]
    proc = run(
        "ask",
        "--persona",
        "pip",
        "--json",
        "--max-tokens",
        "160",
        "--temperature",
        "0",
        "What is the office wifi password?",
        home=assistant_home,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["parsed"]) == {"password", "office"}  # valid JSON against the persona's schema
    proc = run(
        "ask",
        "--persona",
        "pip",
        "--json",
        "--max-tokens",
        "160",
        "--temperature",
        "0",
        "--schema",
        "city",
        "Where is the office?",
        home=assistant_home,
    )
    assert proc.returncode == 0 and set(json.loads(proc.stdout)["parsed"]) == {"city"}, proc.stderr  # --schema wins
    one_line_error(run("persona", "edit", "pip", "--schema", "{not json", home=assistant_home), "--schema")
    assert run("persona", "edit", "pip", "--schema", "", home=assistant_home).returncode == 0
    assert json.loads(run("persona", "show", "pip", "--json", home=assistant_home).stdout)["schema"] is None
