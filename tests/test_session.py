"""The session: store before generation, persist while streaming, resume history."""

from pathlib import Path

from assistant.config import load
from assistant.engine import Engine
from assistant.session import Session
from assistant.store import Store


def test_turns_are_stored_with_stats(engine: Engine, tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    session = Session(store, engine, load())
    answer = "".join(d.text for d in session.send("Say hi to Bob.", max_tokens=12, temperature=0))
    rows = store.messages(session.conversation_id)
    assert [r["role"] for r in rows] == ["user", "assistant"]
    assert rows[1]["content"] == answer and rows[1]["complete"] == 1
    assert rows[1]["completion_tokens"] == session.last.stats.completion_tokens > 0
    assert rows[1]["model"] == engine.name and rows[1]["finish_reason"] in ("stop", "length")


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
    list(session.send("Name a fruit.", max_tokens=8))
    list(session.regenerate(max_tokens=8, temperature=0.9))
    assert [r["role"] for r in store.messages(session.conversation_id)] == ["user", "assistant"]
