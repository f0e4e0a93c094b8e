"""The session: store before generation, persist while streaming, resume history."""

import json
from pathlib import Path

import pytest

from assistant import AssistantError
from assistant.chat.session import Session, resumable
from assistant.chat.turn import TurnOptions
from assistant.config import load
from assistant.models.engine import Engine
from assistant.storage.store import Store

REGISTRY_NAME = "smollm2-135m"  # what answers are stored under: the registry's name, not the engine's file stem


def test_turns_are_stored_with_stats(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    answer = "".join(d.text for d in session.send("Say hi to Bob.", max_tokens=12, temperature=0))
    rows = store.messages(session.conversation_id)
    assert [r["role"] for r in rows] == ["user", "assistant"]
    assert rows[1]["content"] == answer and rows[1]["complete"] == 1
    assert rows[1]["completion_tokens"] == session.last.stats.completion_tokens > 0
    assert rows[1]["model"] == REGISTRY_NAME and rows[1]["finish_reason"] in ("stop", "length")


def test_user_message_is_written_before_generation_and_answer_while_streaming(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    session.flush_interval = 0.0  # flush every delta so the test can see it
    stream = session.send("Count from one to twenty in words.", max_tokens=40, temperature=0)
    first = next(stream)
    rows = store.messages(session.conversation_id)
    assert rows[0]["content"].startswith("Count from one") and rows[1]["complete"] == 0
    for _ in range(5):
        next(stream)
    partial = store.messages(session.conversation_id)[1]
    assert partial["content"].startswith(first.text) and partial["complete"] == 0
    stream.close()  # the UI dropping the stream still finalises the row
    assert store.messages(session.conversation_id)[1]["finish_reason"] != ""


def test_history_continues_across_sessions(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    config = load()
    config.generation.system = "You are a pirate."
    first = Session(store, engine, config)
    list(first.send("Hello", max_tokens=8))
    again = Session(store, engine, load(), first.conversation_id)
    history = again.history()
    assert history[0] == {"role": "system", "content": "You are a pirate."}
    assert [m["role"] for m in history[1:]] == ["user", "assistant"]
    list(again.send("Who are you?", max_tokens=8))
    assert len(store.messages(first.conversation_id)) == 4


def test_regenerate_replaces_last_answer(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    session.sampling = {"seed": 3}  # the new version samples, repeatably
    list(session.send("Name a fruit.", max_tokens=8))
    list(session.regenerate(max_tokens=8, temperature=0.9))
    assert [r["role"] for r in store.messages(session.conversation_id)] == ["user", "assistant"]


def test_continue_after_the_token_limit_is_the_uninterrupted_answer(engine: Engine, tmp_path: Path) -> None:
    """Greedy: 10 tokens, then 10 more continued in the same message == 20 tokens in one go; KV prefix reused."""
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    question = "Write a short poem about the sea."
    head = "".join(d.text for d in session.send(question, max_tokens=10, temperature=0))
    cut = store.messages(session.conversation_id)[1]
    assert cut["finish_reason"] == "length" and resumable(cut)
    tail = "".join(d.text for d in session.continue_(max_tokens=10, temperature=0))
    assert engine.stats.evaluated_tokens == 1  # the cached prompt + partial answer is reused whole
    rows = store.messages(session.conversation_id)
    assert [r["id"] for r in rows] == [rows[0]["id"], cut["id"]]  # the same message grew
    assert rows[1]["content"] == head + tail and rows[1]["completion_tokens"] == 20
    whole = "".join(d.text for d in Session(store, engine, load()).send(question, max_tokens=20, temperature=0))
    assert head + tail == whole


def test_continue_an_answer_left_by_a_crash(engine: Engine, tmp_path: Path) -> None:
    """A killed process left a partial answer (complete=0): a new session carries it on and completes it."""
    store = Store(tmp_path / "db.sqlite")
    conversation = store.new_conversation(title="crash")
    store.add_message(conversation, "user", "List the days of the week, one per line.")
    partial = "Monday\nTuesday\nWed"
    answer_id = store.add_message(conversation, "assistant", partial, complete=0, completion_tokens=7)
    session = Session(store, engine, load(), conversation)
    session.flush_interval = 0.0
    stream = session.continue_(max_tokens=24, temperature=0)
    next(stream)
    during = store.message(answer_id)
    assert during["complete"] == 0 and during["content"].startswith(partial)  # flushed into the same row
    tail = "".join(d.text for d in stream)
    answer = store.message(answer_id)
    assert len(store.messages(conversation)) == 2 and answer["content"].startswith(partial)
    assert answer["content"].endswith(tail) and len(answer["content"]) > len(partial)
    assert answer["complete"] == 1 and answer["finish_reason"] in ("stop", "length")
    assert answer["completion_tokens"] > 7 and answer["model"] == REGISTRY_NAME
    assert "nesday" in answer["content"]  # the model carried on the word it was cut in


def test_continue_needs_an_incomplete_answer(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    with pytest.raises(AssistantError, match="no incomplete answer"):
        list(session.continue_())  # no conversation yet
    conversation = session.ensure_conversation("done")
    store.add_message(conversation, "user", "Say yes.")
    store.add_message(conversation, "assistant", "Yes.", finish_reason="stop")
    with pytest.raises(AssistantError, match="no incomplete answer"):
        list(session.continue_())
    assert [r["content"] for r in store.messages(conversation)] == ["Say yes.", "Yes."]


def test_turn_options_apply_to_their_turn_only(engine: Engine, tmp_path: Path) -> None:
    """A server's per-request options: recorded with that answer, never left on the session."""
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    session.ensure_conversation("api", system="Answer in one word.")  # the caller's, instead of the configured one
    assert session.system_prompt == "Answer in one word."
    assert TurnOptions().sampling() == {} and TurnOptions(stop=(" ",), seed=1).sampling() == {"stop": (" ",), "seed": 1}
    options = TurnOptions(via="API", model_label="the-name-asked-for", stop=(" ",), seed=1)
    answer = "".join(d.text for d in session.send("Say hello there.", max_tokens=8, temperature=0, options=options))
    row = store.messages(session.conversation_id)[-1]
    assert " " not in answer and row["content"] == answer
    assert row["model"] == session.last.model == "the-name-asked-for"
    assert json.loads(row["route"]) == {**session.last.route, "via": "API", "answered_by": REGISTRY_NAME}
    assert session.sampling == {}
    list(session.send("And again.", max_tokens=4, temperature=0))
    row = store.messages(session.conversation_id)[-1]
    assert row["model"] == REGISTRY_NAME and "via" not in json.loads(row["route"])
