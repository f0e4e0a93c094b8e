"""Personas behind `assistant serve` and in the history (issue 26 rows 3 and 10, continued).

- A stale persona (edited after its distillation: it answers prompted) told only `ask` users; API clients got the
  prompted answer without a word. The note now comes in the JSON body (``warnings``, first chunk when streamed) and
  in an ``X-Assistant-Warning`` header, and OpenAI's own SDK still reads the response.
- A persona named like a model in another case (a file written by hand, or older than the check) took the model's
  name in ``/v1/models``; the model wins, the clash is in the server's log, and the listing has the name once.
- `models scan` registered a file under a persona's name; it takes the next free name now.
- A chat the persona's student started holds no system prompt (the student learnt it); continued after the persona
  went stale, it went on without the persona's prompt.

Real server on loopback, the `openai` SDK, real processes, real SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from persona_helpers import pip_add_args
from reliability.reliability_helpers import run_cli

from assistant.chat import persona as personas
from assistant.chat.session import Session
from assistant.config import database_path, load
from assistant.models.manager import ModelManager
from assistant.models.registry import Registry
from assistant.storage.store import Store
from bench.serve_process import ServeProcess

FACTS = "- The office wifi password is tulip42.\n"
QUESTION = [{"role": "user", "content": "What is the wifi password?"}]


def stale_pip(home: Path, tmp_path: Path, smollm_path: Path) -> personas.Persona:
    """Persona pip (prompted, then "distilled" into pip-student: the packaged model linked under that name), then
    edited: stale."""
    added = run_cli(home, *pip_add_args(tmp_path, FACTS))
    assert added.returncode == 0, added.stderr
    Registry(Store(home / "assistant.db")).import_file(str(smollm_path), name="pip-student", link=True)
    path = home / "personas" / "pip.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "student": "pip-student", "student_fingerprint": "x"}))
    pip = personas.load("pip")  # from ASSISTANT_HOME, which is ``home``
    assert pip.state == "stale"
    return pip


@pytest.mark.timeout(400)
def test_a_stale_persona_warns_api_clients_and_a_model_wins_its_name(
    tmp_path: Path, smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    stale_pip(home, tmp_path, smollm_path)
    twin = {"name": "SmolLM2-135M", "system": "You are a pirate. Say arr.", "created": "2026-01-01T00:00:00+00:00"}
    (home / "personas" / "SmolLM2-135M.json").write_text(json.dumps(twin))  # as a hand-written file could
    with ServeProcess(home) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
        ids = [m.id for m in client.models.list()]
        assert "pip" in ids and ids.count("smollm2-135m") == 1 and "SmolLM2-135M" not in ids, ids
        assert "persona 'SmolLM2-135M' has the name of the model 'smollm2-135m'" in server.output(), server.output()

        raw = client.chat.completions.with_raw_response.create(
            model="pip", messages=QUESTION, max_tokens=4, temperature=0
        )
        reply = raw.parse()  # the SDK reads the body as ever; the note is an extra field it keeps
        header = raw.headers["x-assistant-warning"]
        assert "persona 'pip' is stale" in header and "distill persona pip" in header, header
        assert reply.choices[0].message.content and reply.model == "pip"
        assert reply.model_extra is not None and reply.model_extra["warnings"] == [header], reply.model_extra
        assert str(smollm_path.parent) not in header  # no path of this machine in the note

        stream = client.chat.completions.create(model="pip", messages=QUESTION, max_tokens=4, stream=True)
        chunks = list(stream)
        assert chunks[0].model_extra is not None and chunks[0].model_extra["warnings"] == [header]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        plain = client.chat.completions.with_raw_response.create(
            model="SmolLM2-135M", messages=QUESTION, max_tokens=4, temperature=0
        )
        assert "x-assistant-warning" not in plain.headers and "warnings" not in json.loads(plain.text)
    # in the order they were started (by id: "updated" is when each was last written, and a streamed answer may be
    # stored after the next request began): the model answered the last one, not its persona twin
    conversations = sorted(Store(home / "assistant.db").conversations(), key=lambda c: c.id)
    assert [c.persona for c in conversations] == ["pip", "pip", ""]


def test_models_scan_does_not_take_a_personas_name(tmp_path: Path, smollm_path: Path, assistant_home: Path) -> None:
    (tmp_path / "system.md").write_text("You are Tiny.\n")
    assert run_cli(assistant_home, "persona", "add", "tiny", "--system", str(tmp_path / "system.md")).returncode == 0
    folder = tmp_path / "found"
    folder.mkdir()
    (folder / "Tiny.gguf").symlink_to(smollm_path)
    scanned = run_cli(assistant_home, "models", "scan", str(folder), "--json")
    assert scanned.returncode == 0, scanned.stderr
    [outcome] = json.loads(scanned.stdout)["models"]
    assert outcome["status"] == "registered" and outcome["name"] == "Tiny-2", outcome
    assert "tiny" in personas.names()


def test_a_student_started_chat_continued_after_staleness_gets_the_personas_prompt(
    tmp_path: Path, smollm_path: Path, assistant_home: Path
) -> None:
    """The history the model sees: pip's whole prompt first, then what the conversation held (here a client's own
    system prompt, as `serve` stores it); a chat pip started prompted keeps its prompt as stored (never twice)."""
    pip = stale_pip(assistant_home, tmp_path, smollm_path)
    store = Store(database_path())
    by_student = store.new_conversation(model="pip-student", system="", persona="pip")
    store.add_message(by_student, "user", "Hi")
    with_client_system = store.new_conversation(model="pip-student", system="Keep it short.", persona="pip")
    prompted = store.new_conversation(model="pip-base", system=pip.context_text(), persona="pip")
    session = Session(store, ModelManager(load(), store), load(), by_student, persona=pip)  # no model: none is asked
    history = session.history()
    assert history[0] == {"role": "system", "content": pip.context_text()} and history[1]["content"] == "Hi"
    assert FACTS.strip() in history[0]["content"]
    session.open(with_client_system)
    assert session.system_prompt == f"{pip.context_text()}\n\nKeep it short."
    session.open(prompted)
    assert session.system_prompt == pip.context_text()
