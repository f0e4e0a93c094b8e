"""Answers grounded in your documents (issue 28 item 2): whole when they fit, retrieved chunks with sources when not.

Real SmolLM2 through the real engine, the real store, the real index; `ask` and `persona` as a user runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.chat.grounding import stored_sources
from assistant.chat.persona import Persona
from assistant.chat.session import Session
from assistant.config import load
from assistant.models.engine import Engine
from assistant.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = ROOT / "bench" / "personas" / "lumen-handbook" / "handbook.md"  # ~1,000 tokens of prose
NOTE = "The spare key of the shed hangs behind the blue door.\nThe boiler is serviced every March.\n"


def run(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "ASSISTANT_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.fixture(scope="module")
def small_engine(smollm_path: Path):
    """A 512-token window: too small for the handbook whole, so it is retrieved."""
    eng = Engine(smollm_path, n_ctx=512, threads=1)
    yield eng
    eng.close()


def test_documents_that_fit_go_in_whole_with_the_file_as_source(engine: Engine, tmp_path: Path) -> None:
    note = tmp_path / "house.txt"
    note.write_text(NOTE)
    store = Store(tmp_path / "h.db")
    session = Session(store, engine, load(), documents=[note])
    answer = "".join(d.text for d in session.send("Where does the spare key hang?", max_tokens=24))
    turn = session.last
    assert turn.grounding.mode == "whole"
    assert [(s.path, s.start_line, s.end_line) for s in turn.grounding.sources] == [(str(note.resolve()), 1, 2)]
    assert "behind the blue door" in turn.grounding.context and turn.stats.prompt_tokens > turn.grounding.tokens
    assert "blue door" in answer.lower()  # greedy SmolLM2 reads it off the note
    question, stored = store.messages(session.conversation_id)
    assert question.content == "Where does the spare key hang?"  # the file is rebuilt each turn, not stored
    assert stored_sources(stored.sources) == turn.grounding.sources


@pytest.mark.timeout(600)  # prefills of ~450 tokens on a shared 2-core machine
def test_documents_too_big_for_the_window_are_retrieved_with_line_spans(small_engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    session = Session(store, small_engine, load(), documents=[HANDBOOK])
    "".join(d.text for d in session.send("What colour badge does a contractor wear?", max_tokens=16))
    grounded = session.last.grounding
    assert grounded.mode == "retrieved" and grounded.sources
    lines = HANDBOOK.read_text().splitlines()
    first = grounded.sources[0]
    assert first.path == str(HANDBOOK.resolve()) and 1 <= first.start_line <= first.end_line <= len(lines)
    assert "contractors carry orange" in "\n".join(lines[first.start_line - 1 : first.end_line])
    assert session.last.stats.prompt_tokens <= 512 - 16  # the chunks fit beside the answer
    # a follow-up leans on the question before it; the second turn is grounded afresh
    "".join(d.text for d in session.send("And a visitor?", max_tokens=16))
    assert any("grey" in "\n".join(lines[s.start_line - 1 : s.end_line]) for s in session.last.grounding.sources)
    answers = [m for m in store.messages(session.conversation_id) if m.role == "assistant"]
    assert all(stored_sources(a.sources) for a in answers)
    # F5 on an answer cut at its limit: the question goes in with the same passages (the prompt the cache holds)
    cut = session.last.grounding.sources
    "".join(d.text for d in session.continue_(max_tokens=8))
    assert session.last.grounding.sources == cut and session.last.stats.reused_tokens > 0
    assert session.last.stats.evaluated_tokens < 8, "the grounded prompt was evaluated again: not the cached one"
    assert [x.label() for x in stored_sources(store.messages(session.conversation_id)[-1].sources)] == [
        x.label() for x in cut
    ]


@pytest.mark.timeout(600)  # prefills of ~450 tokens on a shared 2-core machine
def test_a_persona_over_documents_grounds_every_answer(small_engine: Engine, tmp_path: Path) -> None:
    persona = Persona(name="wick", system="Answer from the handbook.", docs=[str(HANDBOOK)])
    session = Session(Store(tmp_path / "h.db"), small_engine, load(), persona=persona)
    "".join(d.text for d in session.send("Who leads the Firmware team?", max_tokens=16))
    sources = session.last.grounding.sources
    lines = HANDBOOK.read_text().splitlines()
    assert any("Priya Nakashima" in "\n".join(lines[s.start_line - 1 : s.end_line]) for s in sources)


@pytest.mark.timeout(600)  # prefills of ~450 tokens on a shared 2-core machine
def test_ask_docs_shows_the_context_before_sending_and_sources_in_json(assistant_home: Path, tmp_path: Path) -> None:
    note = tmp_path / "house.txt"
    note.write_text(NOTE)
    proc = run(
        "ask",
        "--json",
        "--max-tokens",
        "16",
        "--docs",
        str(note),
        "--show-context",
        "Where is the spare key?",
        home=assistant_home,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["grounding"] == "whole"
    assert result["sources"] == [{"path": str(note.resolve()), "start_line": 1, "end_line": 2, "score": 0.0}]
    shown = proc.stderr[: proc.stderr.index("--- end of what was added ---")]
    assert "added to the prompt (whole" in shown and "behind the blue door" in shown
    history = run("history", "show", str(result["conversation_id"]), home=assistant_home)  # the sources are kept
    assert history.returncode == 0 and f"Sources: {note.resolve()}:1-2" in history.stdout, history.stdout
    # forced into retrieval by a small window: chunks of the handbook with their lines, on stderr without --json
    proc = run(
        "ask",
        "--max-tokens",
        "16",
        "--docs",
        str(HANDBOOK),
        "What colour badge does a contractor wear?",
        home=assistant_home,
        env={"ASSISTANT_N_CTX": "512"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"source [1] {HANDBOOK.resolve()}:" in proc.stderr
    missing = run("ask", "--docs", str(tmp_path / "nope"), "hi", home=assistant_home)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no such file or folder" in missing.stderr


@pytest.mark.timeout(600)  # prefills of ~450 tokens on a shared 2-core machine
def test_persona_add_docs_without_a_prompt(assistant_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK.read_text())
    added = run("persona", "add", "wick", "--docs", str(folder), home=assistant_home)
    assert added.returncode == 0, added.stderr
    assert "grounded in 1 document path" in added.stdout
    stored = json.loads((assistant_home / "personas" / "wick.json").read_text())
    assert stored["docs"] == [str(folder)]
    proc = run(
        "ask",
        "--persona",
        "wick",
        "--json",
        "--max-tokens",
        "16",
        "Which floor is the board room on?",
        home=assistant_home,
        env={"ASSISTANT_N_CTX": "512"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["grounding"] == "retrieved" and result["sources"]
    assert all(s["path"] == str((folder / "handbook.md").resolve()) for s in result["sources"])
    edited = run("persona", "edit", "wick", "--docs", str(tmp_path / "gone"), home=assistant_home)
    assert edited.returncode == 1 and "no such file or folder" in edited.stderr


AUDIT = textwrap.dedent(
    """
    import json, sys
    connects = []
    sys.addaudithook(lambda event, args: connects.append(repr(args[1])) if event == "socket.connect" else None)
    from assistant.config import load
    from assistant.models.engine import Engine
    from assistant.chat.session import Session
    from assistant.storage.store import Store
    model, db, handbook = sys.argv[1:4]
    session = Session(Store(db), Engine(model, n_ctx=512), load(), documents=[handbook])
    "".join(d.text for d in session.send("Where do bicycles go?", max_tokens=8))
    print(json.dumps({"connects": connects, "mode": session.last.grounding.mode,
                      "sources": len(session.last.grounding.sources)}))
    """
)


@pytest.mark.timeout(600)  # prefills of ~450 tokens on a shared 2-core machine
def test_grounding_opens_no_socket(smollm_path: Path, tmp_path: Path) -> None:
    """Indexing, searching and answering with the network off: a socket audit hook sees no connection."""
    command = [sys.executable, "-c", AUDIT, str(smollm_path), str(tmp_path / "h.db"), str(HANDBOOK)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"connects": [], "mode": "retrieved", "sources": result["sources"]} and result["sources"] > 0


def test_a_folder_is_taken_whole_as_the_index_walks_it(engine: Engine, tmp_path: Path) -> None:
    """A FIFO nobody writes to, a binary file and a tool cache beside a note: the note goes in whole, the binary
    is named in a note, the FIFO and node_modules are passed by (nothing hangs)."""
    from assistant.chat.grounding import ground

    folder = tmp_path / "house"
    (folder / "node_modules").mkdir(parents=True)
    (folder / "node_modules" / "lib.txt").write_text("not mine\n")
    (folder / "house.txt").write_text(NOTE)
    (folder / "photo.bin").write_bytes(b"\x00\x01" * 100)
    os.mkfifo(folder / "pipe")
    history = [{"role": "user", "content": "Where does the spare key hang?"}]
    grounded = ground(Store(tmp_path / "h.db"), [folder], history, engine, 64)
    assert grounded.mode == "whole" and [Path(s.path).name for s in grounded.sources] == ["house.txt"]
    assert "not mine" not in grounded.context and any("photo.bin" in n for n in grounded.notes)


def test_distill_persona_makes_questions_passage_by_passage(assistant_home: Path, tmp_path: Path) -> None:
    """A persona over documents reaches `distill persona` with every passage of them as the texts its questions
    are made from (each question's teacher sees its passage; the student learns closed-book)."""
    from assistant.chat import persona as personas
    from assistant.cli.distill import persona_source

    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK.read_text())
    (folder / "house.txt").write_text(NOTE)
    personas.save(Persona(name="wick", system="Answer from the handbook.", docs=[str(folder)]))
    source = persona_source("wick")
    assert len(source.texts) >= 3 and source.context == "Answer from the handbook."
    joined = "\n".join(source.texts)
    assert "contractors carry orange" in joined and "behind the blue door" in joined
    assert all(len(text) < len(HANDBOOK.read_text()) for text in source.texts)  # passages, not whole files
