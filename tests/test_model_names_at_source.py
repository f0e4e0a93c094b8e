"""Issue 26 row 17 at its source: the model manager names the model it loaded as the registry does.

The engine calls a model by its file's stem (``SmolLM2-135M-Instruct.Q4_1``); the session stored that as each
answer's model, so `history show`, the server's stored route, `ask --json` and the chat UI's status bar all showed
a name `--model` did not accept. The manager knows the registry entry it loaded and gives that name to the session;
every surface accepts the registry name, the file's stem or its file name, in any case (``Registry.lookup``).
Real model, real SQLite, real processes and a real server on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from reliability.reliability_helpers import run_cli

from assistant.chat.session import Session
from assistant.config import database_path, load
from assistant.models.manager import ModelManager
from assistant.models.registry import Registry
from assistant.storage.store import Store
from bench.serve_process import ServeProcess

NAME = "smollm2-135m"
STEM = "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.parametrize("typed", [NAME, STEM, f"{STEM}.gguf", STEM.upper(), "SmolLM2-135M"])
def test_the_registry_looks_up_every_name_a_model_goes_by(typed: str) -> None:
    registry = Registry(Store(database_path()))
    assert registry.lookup(typed) == NAME
    assert registry.resolve(typed) == registry.resolve(NAME)


def test_a_session_stores_the_registry_name_whatever_name_loaded_it() -> None:
    """Loaded by its file stem, the model serving is still called ``smollm2-135m``: in the manager, in the turn,
    and in the stored conversation and answer (what `history` and the UI read back)."""
    store = Store(database_path())
    models = ModelManager(load(), store)
    try:
        models.load(STEM.lower())
        assert models.name == NAME and models.key == NAME and models.path is not None
        assert models.path.name == f"{STEM}.gguf"
        session = Session(store, models, load())
        answer = "".join(d.text for d in session.send("Hi", max_tokens=2))
        assert answer and session.last.model == NAME
        [conversation] = store.conversations()
        assert conversation.model == NAME
        assert [m.model for m in store.messages(conversation.id) if m.role == "assistant"] == [NAME]
    finally:
        models.close()


def test_history_show_names_the_registry_model(assistant_home: Path) -> None:
    """`history show` printed each answer's model as stored: the file's stem. A real `ask`, then `history show`."""
    asked = run_cli(assistant_home, "ask", "--model", STEM, "--max-tokens", "2", "Hi", timeout=180)
    assert asked.returncode == 0, asked.stderr
    shown = run_cli(assistant_home, "history", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert f"· {NAME}" in shown.stdout and STEM not in shown.stdout, shown.stdout


def test_history_show_names_the_registry_model_of_an_older_answer(assistant_home: Path) -> None:
    """Answers stored before the fix hold the file's stem: `history show` names them as `history list` does."""
    store = Store(database_path())
    cid = store.new_conversation("older", model=STEM)
    store.add_message(cid, "user", "Hi")
    store.add_message(cid, "assistant", "Hello", model=STEM)
    shown = run_cli(assistant_home, "history", "show", str(cid))
    assert shown.returncode == 0, shown.stderr
    assert f"· {NAME}" in shown.stdout and STEM not in shown.stdout, shown.stdout
    exported = json.loads(run_cli(assistant_home, "history", "export", str(cid), "--format", "json").stdout)
    assert exported["messages"][1]["model"] == STEM  # the JSON export keeps every field as stored


@pytest.mark.timeout(300)
def test_the_server_takes_a_file_stem_and_stores_the_registry_name(tmp_path: Path) -> None:
    """A client may name the model by its file stem (any case); the reply says the name the client asked for (as
    OpenAI's API does) and the stored route says which registry model answered."""
    home = tmp_path / "home"
    with ServeProcess(home) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model=STEM.lower(), messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
        )
        assert reply.model == STEM.lower() and reply.usage is not None and reply.usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
        assert server.health()["model"] == NAME
    store = Store(home / "assistant.db")
    [answer] = [m for m in store.iter_messages() if m.role == "assistant"]
    assert json.loads(answer.route)["answered_by"] == NAME
    assert store.conversations()[0].model == NAME
