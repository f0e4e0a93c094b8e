"""The history database's schema: numbered steps, each recorded in the database once applied.

Modelled on simonw/llm's ``migrations.py``: a step is a small function decorated with ``@migration`` and
named ``mNNN_what``; :func:`migrate` applies, in order, the steps a database has not recorded in its
``_migrations`` table. Never change a step that has shipped: add the next one.

Steps 1-4 are, statement for statement, the schema the store created before steps were recorded
(``IF NOT EXISTS`` throughout), so a database made by that code takes them as no-ops and loses nothing;
steps 5-6 likewise match the tables ``attach`` and ``branches`` once created on first use.
Only ``assistant.storage.store`` calls this module: the store is the schema's one owner.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []
STEP_NAME = re.compile(r"m(\d{3})_\w+")


def migration(step: Migration) -> Migration:
    """Register ``step`` as the next migration; its number must follow the previous one's."""
    match = STEP_NAME.fullmatch(step.__name__)
    if match is None or int(match.group(1)) != len(MIGRATIONS) + 1:
        raise ValueError(f"migration {step.__name__!r} must be named m{len(MIGRATIONS) + 1:03d}_<what>")
    MIGRATIONS.append(step)
    return step


@migration
def m001_conversations(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "conversations" (
   "id" INTEGER PRIMARY KEY,
   "title" TEXT,
   "model" TEXT,
   "system" TEXT,
   "created" TEXT,
   "updated" TEXT
)"""
    )


@migration
def m002_messages(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "messages" (
   "id" INTEGER PRIMARY KEY,
   "conversation_id" INTEGER REFERENCES "conversations"("id"),
   "role" TEXT,
   "content" TEXT,
   "model" TEXT,
   "escalated" INTEGER,
   "route" TEXT,
   "complete" INTEGER,
   "finish_reason" TEXT,
   "prompt_tokens" INTEGER,
   "completion_tokens" INTEGER,
   "ttft_s" REAL,
   "tokens_per_s" REAL,
   "created" TEXT
)"""
    )
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_conversation_id" ON "messages" ("conversation_id")')


@migration
def m003_messages_fts(conn: sqlite3.Connection) -> None:
    """Full-text search over message content, kept current by triggers; the index is rebuilt once."""
    conn.execute(
        """CREATE VIRTUAL TABLE IF NOT EXISTS "messages_fts" USING FTS5 (
    "content",
    tokenize='porter',
    content="messages"
)"""
    )
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS "messages_ai" AFTER INSERT ON "messages" BEGIN
  INSERT INTO "messages_fts" (rowid, "content") VALUES (new.rowid, new."content");
END"""
    )
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS "messages_ad" AFTER DELETE ON "messages" BEGIN
  INSERT INTO "messages_fts" ("messages_fts", rowid, "content") VALUES('delete', old.rowid, old."content");
END"""
    )
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS "messages_au" AFTER UPDATE ON "messages" BEGIN
  INSERT INTO "messages_fts" ("messages_fts", rowid, "content") VALUES('delete', old.rowid, old."content");
  INSERT INTO "messages_fts" (rowid, "content") VALUES (new.rowid, new."content");
END"""
    )
    # an older first run killed before its triggers existed left the index behind its messages
    conn.execute("""INSERT INTO "messages_fts" ("messages_fts") VALUES ('rebuild')""")


@migration
def m004_models(conn: sqlite3.Connection) -> None:
    """The registry's entries: imported, linked, pulled and distilled models (packaged ones are not stored)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "models" (
   "name" TEXT PRIMARY KEY,
   "path" TEXT,
   "origin" TEXT,
   "architecture" TEXT,
   "parameters" INTEGER,
   "quantization" TEXT,
   "context_length" INTEGER,
   "size" INTEGER,
   "sha256" TEXT,
   "created" TEXT
)"""
    )


@migration
def m005_attachments(conn: sqlite3.Connection) -> None:
    """What is kept of a file attached to a message: name, size, sha256, tokens (its text is in the message).

    ``IF NOT EXISTS`` throughout: a database opened by the code that created this table on first use
    already has it, with these very columns, index and trigger.
    """
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "attachments" (
   "id" INTEGER PRIMARY KEY,
   "message_id" INTEGER REFERENCES "messages"("id"),
   "name" TEXT,
   "size" INTEGER,
   "sha256" TEXT,
   "tokens" INTEGER
)"""
    )
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_attachments_message_id" ON "attachments" ("message_id")')
    # a deleted message (edit-and-resend, a deleted conversation) takes its records along: SQLite
    # reuses the highest message ids, and a new message must not inherit an old one's files
    conn.execute(
        "CREATE TRIGGER IF NOT EXISTS attachments_follow_messages AFTER DELETE ON messages "
        "BEGIN DELETE FROM attachments WHERE message_id = old.id; END"
    )


@migration
def m006_branches(conn: sqlite3.Connection) -> None:
    """The versions at each branch point of a conversation (``chat.branches``); ``IF NOT EXISTS`` as in m005."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "branches" (
   "id" INTEGER PRIMARY KEY,
   "conversation_id" INTEGER,
   "parent_id" INTEGER,
   "position" INTEGER,
   "messages" TEXT,
   "created" TEXT
)"""
    )
    conn.execute(
        'CREATE INDEX IF NOT EXISTS "idx_branches_conversation_id_parent_id" '
        'ON "branches" ("conversation_id", "parent_id")'
    )
    conn.execute(  # a deleted conversation takes every version with it
        "CREATE TRIGGER IF NOT EXISTS branches_follow_conversations AFTER DELETE ON conversations "
        "BEGIN DELETE FROM branches WHERE conversation_id = old.id; END"
    )


@migration
def m007_conversation_persona(conn: sqlite3.Connection) -> None:
    """Conversations record the persona they ran with (empty = none); a column added earlier is kept."""
    if "persona" not in {row[1] for row in conn.execute("PRAGMA table_info(conversations)")}:
        conn.execute("ALTER TABLE conversations ADD COLUMN persona TEXT NOT NULL DEFAULT ''")


@migration
def m008_message_sources(conn: sqlite3.Connection) -> None:
    """An answer grounded in your documents records its sources (JSON: mode, then file and line span of each)."""
    if "sources" not in {row[1] for row in conn.execute("PRAGMA table_info(messages)")}:
        conn.execute("ALTER TABLE messages ADD COLUMN sources TEXT NOT NULL DEFAULT ''")


@migration
def m009_documents(conn: sqlite3.Connection) -> None:
    """Your documents' index (``assistant.documents``): files, their chunks with line spans and vectors, and
    full-text search over the chunks kept current by triggers. Chunk ids never come back (AUTOINCREMENT): the
    search's vector cache knows the index changed from the largest id and the count of removed files."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "doc_roots" (
   "path" TEXT PRIMARY KEY,
   "added" TEXT
)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "doc_files" (
   "id" INTEGER PRIMARY KEY,
   "path" TEXT NOT NULL UNIQUE,
   "kind" TEXT,
   "size" INTEGER,
   "mtime_ns" INTEGER,
   "sha256" TEXT,
   "chunks" INTEGER,
   "indexed" TEXT
)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "doc_chunks" (
   "id" INTEGER PRIMARY KEY AUTOINCREMENT,
   "file_id" INTEGER NOT NULL REFERENCES "doc_files"("id"),
   "start_line" INTEGER,
   "end_line" INTEGER,
   "text" TEXT,
   "context" TEXT,
   "vector" BLOB
)"""
    )
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_doc_chunks_file_id" ON "doc_chunks" ("file_id")')
    # one row: files removed so far; with the largest chunk id it tells a reader that the index changed
    conn.execute(
        'CREATE TABLE IF NOT EXISTS "doc_state" ("id" INTEGER PRIMARY KEY CHECK ("id" = 1), "removals" INTEGER)'
    )
    conn.execute('INSERT OR IGNORE INTO "doc_state" VALUES (1, 0)')
    conn.execute(
        """CREATE VIRTUAL TABLE IF NOT EXISTS "doc_chunks_fts" USING FTS5 (
    "text", "context", tokenize='porter', content="doc_chunks", content_rowid="id"
)"""
    )
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS "doc_chunks_ai" AFTER INSERT ON "doc_chunks" BEGIN
  INSERT INTO "doc_chunks_fts" (rowid, "text", "context") VALUES (new.id, new."text", new."context");
END"""
    )
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS "doc_chunks_ad" AFTER DELETE ON "doc_chunks" BEGIN
  INSERT INTO "doc_chunks_fts" ("doc_chunks_fts", rowid, "text", "context")
    VALUES ('delete', old.id, old."text", old."context");
END"""
    )
    conn.execute(  # how many passages hold each (stemmed) word: the search leaves the commonest out
        """CREATE VIRTUAL TABLE IF NOT EXISTS "doc_chunks_vocab" USING fts5vocab("doc_chunks_fts", 'row')"""
    )
    conn.execute(  # a removed file takes its chunks along, and counts as a change of the index
        "CREATE TRIGGER IF NOT EXISTS doc_chunks_follow_files AFTER DELETE ON doc_files "
        "BEGIN DELETE FROM doc_chunks WHERE file_id = old.id; UPDATE doc_state SET removals = removals + 1; END"
    )


def applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the steps this database has recorded, in the order they ran."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    return [name for (name,) in conn.execute("SELECT name FROM _migrations ORDER BY rowid")] if exists else []


def pending(conn: sqlite3.Connection, steps: list[Migration] | None = None) -> list[Migration]:
    """The steps this database lacks (names it recorded but this code does not know are left alone)."""
    done = set(applied(conn))
    return [step for step in (MIGRATIONS if steps is None else steps) if step.__name__ not in done]


def migrate(conn: sqlite3.Connection, steps: list[Migration] | None = None) -> list[str]:
    """Apply and record the pending steps; the caller holds a write transaction (all or nothing)."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT)")
    names = []
    for step in pending(conn, steps):
        step(conn)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", [step.__name__, stamp])
        names.append(step.__name__)
    return names
