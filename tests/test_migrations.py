"""The store's numbered migrations: an old database moves forward with nothing lost; steps run once, all or none."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from assistant.chat.session import resumable
from assistant.models.registry import ModelEntry
from assistant.storage import migrations
from assistant.storage.store import Store

OLD_DATABASE = Path(__file__).parent / "data" / "history_v0.db"  # made by the code before migrations were recorded
ALL_STEPS = [step.__name__ for step in migrations.MIGRATIONS]


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every row of the user's tables, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        tables = ("conversations", "messages", "models")
        return {table: conn.execute(f"select * from {table} order by 1").fetchall() for table in tables}
    finally:
        conn.close()


def schema(store: Store) -> dict[str, object]:
    """Tables with their columns, and the names of indexes and triggers."""
    conn = store.db.conn
    objects = conn.execute("select type, name from sqlite_master where name not like 'sqlite_%' order by name")
    columns = 'pragma table_info("{}")'
    return {
        f"{kind} {name}": [row[1:4] for row in conn.execute(columns.format(name))] if kind == "table" else kind
        for kind, name in objects.fetchall()
    }


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    path = tmp_path / "assistant.db"
    shutil.copyfile(OLD_DATABASE, path)
    return path


def test_an_old_database_migrates_forward_with_nothing_lost(old_database: Path) -> None:
    before = dump(old_database)
    assert len(before["conversations"]) == 2 and len(before["messages"]) == 6 and len(before["models"]) == 2

    store = Store(old_database)
    assert store.applied_migrations() == ALL_STEPS
    store.close()
    after = dump(old_database)
    # every row, every column, byte for byte; m007 adds conversations.persona, m008 messages.sources, empty for the
    # old ones
    assert after["conversations"] == [(*row, "") for row in before["conversations"]]
    assert after["messages"] == [(*row, "") for row in before["messages"]]
    assert after["models"] == before["models"]

    store = Store(old_database)
    assert store.applied_migrations() == ALL_STEPS  # recorded once: reopening applies nothing
    (closures,) = (c for c in store.conversations() if c.title == "Closures")
    assert closures.system == "Be brief." and closures.model == "smollm2-135m"
    question, answer, fact, teacher = store.messages(closures.id)
    assert (question.role, question.content) == ("user", "What is a closure in Python?")
    assert answer.complete and not answer.escalated and answer.prompt_tokens == 31 and answer.ttft_s == 0.0412
    assert teacher.escalated and teacher.model == "big-teacher"
    assert [h.id for h in store.search("Zhuangzi")] == [fact.id]  # the old full-text index still answers
    assert [(e.question, e.answer) for e in store.escalated_exchanges()] == [(fact.content, teacher.content)]
    half_written = store.messages(store.latest_conversation_id() or 0)[-1]
    assert half_written.content == "La mer se retire" and resumable(half_written)
    row = store.model_row("my-student")
    student = ModelEntry.from_row(row) if row else None
    assert student == ModelEntry(
        "my-student",
        "/models/my-student.gguf",
        "distilled",
        "llama",
        134515008,
        "Q4_1",
        8192,
        103530048,
        "ab" * 32,
        student.created if student else "",
    )
    assert [r["name"] for r in store.model_rows()] == ["linked-one", "my-student"]

    # and it keeps working: new rows are indexed, deletions leave the index
    new = store.add_message(closures.id, "user", "and a lambda?")
    assert [h.id for h in store.search("lambda")] == [new]
    store.delete_message(question.id)
    assert store.search("closure") == []
    assert store.integrity_ok()
    assert {"attachments", "branches"} <= set(store.db.table_names())  # later tables arrive by migration
    store.close()


def test_a_migrated_old_database_has_the_schema_of_a_new_one(old_database: Path, tmp_path: Path) -> None:
    migrated, fresh = Store(old_database), Store(tmp_path / "fresh.db")
    assert schema(migrated) == schema(fresh)
    assert "table _migrations" in schema(fresh) and "trigger messages_au" in schema(fresh)


def test_tables_once_made_on_first_use_are_adopted_with_their_rows(tmp_path: Path) -> None:
    """A database opened by the code that created ``attachments``/``branches`` on first use (before m005/m006)."""
    path = tmp_path / "assistant.db"
    conn = sqlite3.connect(path)
    with conn:
        migrations.migrate(conn, migrations.MIGRATIONS[:4])
    db = sqlite_utils.Database(conn)  # what attach.save and branches._table did, call for call
    db["attachments"].create(
        {"id": int, "message_id": int, "name": str, "size": int, "sha256": str, "tokens": int},
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
        if_not_exists=True,
    )
    db["attachments"].create_index(["message_id"], if_not_exists=True)
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS attachments_follow_messages AFTER DELETE ON messages "
        "BEGIN DELETE FROM attachments WHERE message_id = old.id; END"
    )
    db["branches"].create(
        {"id": int, "conversation_id": int, "parent_id": int, "position": int, "messages": str, "created": str},
        pk="id",
        if_not_exists=True,
    )
    db["branches"].create_index(["conversation_id", "parent_id"], if_not_exists=True)
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS branches_follow_conversations AFTER DELETE ON conversations "
        "BEGIN DELETE FROM branches WHERE conversation_id = old.id; END"
    )
    db["conversations"].insert({"id": 1, "title": "t"})
    db["messages"].insert({"id": 1, "conversation_id": 1, "role": "user", "content": "hi"})
    db["attachments"].insert({"message_id": 1, "name": "notes.md", "size": 7, "sha256": "0" * 64, "tokens": 9})
    db["branches"].insert({"conversation_id": 1, "parent_id": 0, "position": 1, "messages": None, "created": "x"})
    conn.commit()
    conn.close()

    store = Store(path)
    assert store.applied_migrations() == ALL_STEPS
    assert [(a.name, a.tokens) for a in store.attachments(1)] == [("notes.md", 9)]
    assert [(b.parent_id, b.position, b.messages) for b in store.branches(1)] == [(0, 1, None)]
    assert schema(store) == schema(Store(tmp_path / "fresh.db"))
    store.delete_conversation(1)  # the triggers still follow
    assert store.attachments(1) == [] and store.branches(1) == []


def test_a_new_step_runs_once_and_a_failing_one_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "assistant.db")
    cid = store.new_conversation(title="kept")

    def m901_pinned(conn: sqlite3.Connection) -> None:
        conn.execute("alter table conversations add column pinned integer default 0")

    def m902_broken(conn: sqlite3.Connection) -> None:
        conn.execute("create table half_done (x)")
        conn.execute("this is not sql")

    steps = [*migrations.MIGRATIONS, m901_pinned]
    assert store._migrate(steps) == ["m901_pinned"]
    assert store._migrate(steps) == []
    with pytest.raises(sqlite3.OperationalError):
        store._migrate([*steps, m902_broken])
    assert store.applied_migrations() == [*ALL_STEPS, "m901_pinned"]  # the failed step left no record...
    assert "half_done" not in store.db.table_names()  # ...and none of its changes
    assert store.conversation(cid).title == "kept"
    store.close()
    assert Store(tmp_path / "assistant.db").applied_migrations()[-1] == "m901_pinned"  # steps it does not know: kept


def test_steps_must_be_numbered_in_order() -> None:
    def m999_out_of_order(conn: sqlite3.Connection) -> None: ...

    def no_number(conn: sqlite3.Connection) -> None: ...

    for step in (m999_out_of_order, no_number):
        with pytest.raises(ValueError, match=f"must be named m{len(migrations.MIGRATIONS) + 1:03d}_"):
            migrations.migration(step)
    assert [int(name[1:4]) for name in ALL_STEPS] == list(range(1, len(ALL_STEPS) + 1))


def test_only_the_store_touches_the_database() -> None:
    """No module reaches past the storage package: no SQL, no connection, no private writer (one schema owner)."""
    root = Path(__file__).resolve().parent.parent
    owners = set((root / "assistant" / "storage").rglob("*.py"))
    reaching = re.compile(r"\bsqlite3\b|\bsqlite_utils\b|\bstore\.db\b|\._write\(|\bstore\._lock\b|\bfrom messages\b")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("assistant", "distill_tools")
        for path in sorted((root / folder).rglob("*.py"))
        if path not in owners
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if reaching.search(line)
    ]
    assert offenders == []


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from assistant.storage.store import Store
go, deadline = Path(sys.argv[2]), time.monotonic() + 30
print("ready", flush=True)
while not go.exists() and time.monotonic() < deadline:  # all processes start, then open together
    time.sleep(0.005)
store = Store(sys.argv[1])
print(len(store.messages(1)), len(store.applied_migrations()))
"""


@pytest.mark.timeout(120)
def test_processes_opening_an_old_database_at_once_migrate_it_once(old_database: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, str(old_database), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    assert [proc.stdout.readline() for proc in procs] == ["ready\n"] * 4  # type: ignore[union-attr]
    go.touch()  # all four open the database now
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {f"4 {len(ALL_STEPS)}"}
    conn = sqlite3.connect(old_database)
    assert [name for (name,) in conn.execute("select name from _migrations order by rowid")] == ALL_STEPS
