import json
from pathlib import Path

import pytest

from assistant.storage.store import AttachmentRecord, Conversation, Message, Store, StoreError, export_conversation


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db.sqlite")


def test_round_trip_and_order(store: Store) -> None:
    first = store.new_conversation(title="first")
    second = store.new_conversation(title="second")
    store.add_message(first, "user", "What is a closure in Python?")
    store.add_message(first, "assistant", "A function that captures variables.", model="m")
    assert [c["id"] for c in store.conversations()] == [first, second]  # most recently updated first
    messages = store.messages(first)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["model"] == "m" and messages[1]["complete"] == 1
    assert store.latest_conversation_id() == first


def test_full_text_search_finds_updated_content(store: Store) -> None:
    cid = store.new_conversation()
    store.add_message(cid, "user", "tell me about sqlite")
    mid = store.add_message(cid, "assistant", "", complete=0)
    store.update_message(mid, content="SQLite keeps a write-ahead log")
    hits = store.search("write-ahead")
    assert [h["id"] for h in hits] == [mid]
    assert "[" in hits[0]["snippet"]
    assert store.search("nonexistentword") == []
    assert store.search('quote"s AND (') == []  # user syntax never breaks the query


def test_search_ranks_best_first_within_the_most_recent_matches(store: Store) -> None:
    cid = store.new_conversation()
    old_best = store.add_message(cid, "user", "llama llama llama")
    weak = store.add_message(cid, "user", "a llama among many other words in a long sentence here")
    strong = store.add_message(cid, "user", "llama llama")
    store.add_message(cid, "user", "nothing to see")
    assert [h["id"] for h in store.search("llama")] == [old_best, strong, weak]
    # the oldest match is outside the window
    assert [h["id"] for h in store.search("llama", window=2)] == [strong, weak]
    assert [h["id"] for h in store.search("llama", limit=1)] == [old_best]


def test_wal_mode_and_integrity(store: Store) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_ok()


def test_delete_conversation_removes_messages(store: Store) -> None:
    cid = store.new_conversation()
    store.add_message(cid, "user", "delete me please")
    store.delete_conversation(cid)
    assert store.search("delete") == []
    with pytest.raises(StoreError, match="no conversation"):
        store.conversation(cid)


def test_export_markdown_and_json(store: Store) -> None:
    cid = store.new_conversation(title="Export")
    store.add_message(cid, "user", "hello")
    store.add_message(cid, "assistant", "partial", model="smol", complete=0)
    md = export_conversation(store, cid, "md")
    assert "# Export" in md and "## User" in md and "incomplete" in md
    data = json.loads(export_conversation(store, cid, "json"))
    assert [m["content"] for m in data["messages"]] == ["hello", "partial"]


def test_unopenable_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open history database"):
        Store(tmp_path / "dir.db")


def test_rows_are_typed(store: Store) -> None:
    cid = store.new_conversation(title="typed", system="Be brief.")
    mid = store.add_message(cid, "assistant", "", model="m", complete=0)
    message = store.message(mid)
    assert isinstance(message, Message) and message.complete is False and message.escalated is False
    assert message.prompt_tokens is None  # not measured yet, not zero
    store.update_message(mid, content="done", complete=1, escalated=1, prompt_tokens=12)
    done = store.message(mid)
    assert (done.complete, done.escalated, done.prompt_tokens) == (True, True, 12)
    conversation = store.conversation(cid)
    assert isinstance(conversation, Conversation) and conversation.system == "Be brief."
    with pytest.raises(ValueError, match="unknown column"):
        store.update_message(mid, colour="red")
    with pytest.raises(StoreError, match="no message"):
        store.message(mid + 1)


def test_atomic_writes_commit_or_roll_back_together(tmp_path: Path) -> None:
    """Store calls inside ``atomic`` share one transaction: a failure part-way leaves nothing, in this process or
    for the next one to open the file."""
    store = Store(tmp_path / "db.sqlite")
    cid = store.new_conversation(title="kept")

    def half_done() -> None:
        mid = store.add_message(cid, "user", "written, then undone")
        store.add_attachments(mid, [AttachmentRecord("notes.md", 7, "0" * 64, 9)])
        store.add_branch(cid, mid, 1)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        store.atomic(half_done)
    assert store.messages(cid) == [] and store.branches(cid) == [] and store.attachments(1) == []
    assert Store(tmp_path / "db.sqlite").messages(cid) == []

    def whole() -> int:
        mid = store.add_message(cid, "user", "all of it")
        store.add_attachments(mid, [AttachmentRecord("notes.md", 7, "0" * 64, 9)])
        store.add_branch(cid, mid, 1, '{"messages": [], "branches": []}')
        return mid

    mid = store.atomic(whole)
    other = Store(tmp_path / "db.sqlite")  # committed: another connection sees every part
    assert [m.content for m in other.messages(cid)] == ["all of it"]
    assert other.attachments(mid) == [AttachmentRecord("notes.md", 7, "0" * 64, 9, message_id=mid, id=1)]
    [branch] = other.branches(cid, [mid])
    assert (branch.position, branch.messages) == (1, '{"messages": [], "branches": []}') and branch.created
