"""Branches instead of overwrites: regenerate and edit-and-resend keep every version, across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chat import attach
from assistant.chat.branches import BranchError, BranchPoint
from assistant.chat.session import Session
from assistant.config import load
from assistant.storage.store import Store


def answer(stream) -> str:  # noqa: ANN001 - a Session stream
    return "".join(d.text for d in stream)


def shown(store: Store, conversation_id: int) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in store.messages(conversation_id)]


@pytest.mark.timeout(300)
def test_regenerate_keeps_both_versions_across_a_restart(engine, tmp_path: Path) -> None:  # noqa: ANN001
    store = Store(tmp_path / "h.db")
    session = Session(store, engine, load())
    session.sampling = {"seed": 7}  # the regenerated version samples (to differ), repeatably
    first = answer(session.send("Name a colour.", max_tokens=6, temperature=0.0))
    question_id = session.last.user_message_id
    second = answer(session.regenerate(max_tokens=6, temperature=1.5))
    conversation = session.conversation_id
    assert shown(store, conversation) == [("user", "Name a colour."), ("assistant", second)]
    assert session.branch_points() == [BranchPoint(question_id, 2, 2)]
    store.close()

    store = Store(tmp_path / "h.db")  # a restart: a new process opens the same database
    session = Session(store, engine, load(), conversation)
    assert session.branch_points() == [BranchPoint(question_id, 2, 2)]
    session.switch_version(question_id, 1)
    assert shown(store, conversation) == [("user", "Name a colour."), ("assistant", first)]
    assert session.branch_points() == [BranchPoint(question_id, 1, 2)]
    answer(session.send("Another one?", max_tokens=4, temperature=0.0))  # continues from the version on screen
    assert [m["content"] for m in session.history()][:3] == ["Name a colour.", first, "Another one?"]
    with pytest.raises(BranchError, match="no version 3"):
        session.switch_version(question_id, 3)


@pytest.mark.timeout(300)
def test_resend_keeps_the_earlier_question_with_its_own_versions(engine, tmp_path: Path) -> None:  # noqa: ANN001
    store = Store(tmp_path / "h.db")
    session = Session(store, engine, load())
    session.sampling = {"seed": 7}  # the regenerated version samples (to differ), repeatably
    notes = attach.Attachment("notes.md", "ship it", 7, "0" * 64)
    answer(session.send(attach.compose("Summarise.", [notes]), attachments=[notes], max_tokens=4))
    answer(session.regenerate(max_tokens=4, temperature=1.5))  # a branch point inside the first question's turn
    before = shown(store, session.conversation_id)
    answer(session.resend("Just say hi.", max_tokens=4))
    assert shown(store, session.conversation_id)[0] == ("user", "Just say hi.")
    assert session.branch_points() == [BranchPoint(0, 2, 2)]  # the inner point left with its question

    session.switch_version(0, 1)  # back to the first question: its answer, its versions and its file return
    assert shown(store, session.conversation_id) == before
    [restored] = [m for m in store.messages(session.conversation_id) if m["role"] == "user"]
    assert [r["name"] for r in attach.of_message(store, restored["id"])] == ["notes.md"]
    assert session.branch_points() == [BranchPoint(0, 1, 2), BranchPoint(restored["id"], 2, 2)]

    store.delete_conversation(session.conversation_id)  # deleting the chat deletes every version
    assert store.db["branches"].count == 0


@pytest.mark.timeout(300)
def test_history_prints_the_branch_on_screen_or_all_of_them(engine, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import json

    from assistant.cli.main import main
    from assistant.config import database_path

    store = Store(database_path())
    session = Session(store, engine, load())
    session.sampling = {"seed": 7}  # the regenerated version samples (to differ), repeatably
    first = answer(session.send("Name a fruit.", max_tokens=5, temperature=0.0))
    second = answer(session.regenerate(max_tokens=5, temperature=1.5))
    conversation = str(session.conversation_id)
    assert main(["history", "show", conversation]) == 0
    shown_md = capsys.readouterr().out
    assert shown_md.count("## Assistant") == 1 and second.strip() in shown_md
    assert main(["history", "show", "--all-branches", conversation]) == 0
    everything = capsys.readouterr().out
    assert "# Version 1 after message #" in everything and first.strip() in everything.split("# Version 1")[1]
    assert main(["history", "export", "--format", "json", "--all-branches", conversation]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["content"] for m in data["messages"]][-1] == second
    assert [(v["position"], v["messages"][0]["content"]) for v in data["versions"]] == [(1, first)]


def test_a_version_archived_by_the_earlier_code_comes_back(tmp_path: Path) -> None:
    """An archive as the code before m006 wrote it (raw rows: 0/1 flags, NULL text) restores with its file."""
    import json

    from assistant.chat import branches

    store = Store(tmp_path / "h.db")
    cid = store.new_conversation(title="t")
    question = store.add_message(cid, "user", "Name a colour.")
    store.add_message(cid, "assistant", "Blue.", model="m")
    old = {
        "role": "assistant",
        "content": "Red.",
        "model": "m",
        "escalated": 0,
        "route": None,
        "complete": 1,
        "finish_reason": None,
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "ttft_s": 0.03,
        "tokens_per_s": 40.0,
        "created": "2026-11-29T10:00:00+00:00",
    }
    record = {"name": "notes.md", "size": 7, "sha256": "0" * 64, "tokens": 9}
    tail = {"messages": [{"id": question + 1, **old, "attachments": [record]}], "branches": []}
    store.add_branch(cid, question, 1, json.dumps(tail), "2026-11-29T10:00:01+00:00")
    store.add_branch(cid, question, 2)

    branches.switch(store, cid, question, 1)
    asked, restored = store.messages(cid)
    assert (asked.id, restored.content, restored.created) == (question, "Red.", old["created"])
    assert restored.complete and not restored.escalated and restored.prompt_tokens == 12
    assert [(r.name, r.tokens) for r in attach.of_message(store, restored.id)] == [("notes.md", 9)]
    assert branches.points(store, cid) == [BranchPoint(question, 1, 2)]
    archived = json.loads(store.branches(cid)[1].messages or "")
    assert [m["content"] for m in archived["messages"]] == ["Blue."]
