"""Conversation history in SQLite (sqlite-utils): conversations, messages, full-text search, attachment
records, branch versions, model entries.

The store is the database's one owner: its schema comes from ``assistant.storage.migrations`` (numbered steps
recorded in the database), other modules read and write through the methods here and get typed rows
(``assistant.storage.rows``, importable from here too).

WAL mode and a busy timeout let the UI and ``assistant ask`` write at once. The user's
message is written before generation starts; the answer is written as it streams.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from assistant import AssistantError
from assistant.storage import export, migrations
from assistant.storage.rows import AttachmentRecord, Branch, Conversation, Exchange, Message, SearchHit

T = TypeVar("T")


class StoreError(AssistantError):
    """The history database cannot be opened or written."""


def _transient(exc: sqlite3.OperationalError) -> bool:
    """Another process holds the lock, or created the schema first: worth a retry."""
    return any(word in str(exc) for word in ("locked", "busy", "already exists"))


def _hint(path: Path | str, error: Exception) -> str:
    """Why a write may have failed, in words: a read-only folder (even root cannot write there), a full disk."""
    folder = Path(path).parent
    if str(path) == ":memory:" or not folder.is_dir():
        return ""
    if not os.access(folder, os.W_OK):
        return f" (the folder {folder} is read-only)"
    if shutil.disk_usage(folder).free < 1 << 20 and "full" not in str(error):  # SQLite may say "disk I/O error"
        return " (the disk is full)"
    return ""


MAX_ID = 2**63 - 1  # SQLite's largest integer
RESERVE_BYTES = 256 << 10  # kept beside the database, given up to record an answer that failed on a full disk


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


MESSAGE_FIELDS = {f.name for f in fields(Message)} - {"id"}
CONVERSATION_FIELDS = {f.name for f in fields(Conversation)} - {"id"}


class Store:
    """The history database and its schema's one owner. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        """Open (creating it if needed) the database; ``readonly`` opens it for reading only, as
        `history` commands do, so that reading works from a read-only file or folder and on a full disk."""
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._writing = False  # inside _write (the lock's holder only): nested writes join its transaction
        if readonly:
            self._open_readonly()
            return
        for attempt in range(10):  # another process may be creating the database right now
            try:
                self._open(path)
                return
            except sqlite3.OperationalError as exc:
                if hasattr(self, "db"):
                    self.db.conn.close()
                if not _transient(exc) or attempt == 9:
                    raise StoreError(f"cannot open history database {path}: {exc}{_hint(path, exc)}") from None
                time.sleep(0.05 * 2 ** min(attempt, 4))
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open history database {path}: {exc}{_hint(path, exc)}") from None

    def _open(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a write transaction takes the write lock when it begins, waiting (busy timeout) for
        # other processes; a deferred one upgrading a stale read snapshot fails at once with "locked"
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level="IMMEDIATE")
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA busy_timeout = 30000")
        if str(path) != ":memory:":
            self.db.enable_wal()
            # WAL + NORMAL: a killed process loses nothing committed; only a power cut can drop the last commits
            self.db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()
        if str(path) != ":memory:":
            self._keep_reserve()

    def _open_readonly(self) -> None:
        """Read without writing anything: no WAL switch, no schema step; a missing database reads as empty.

        If even a read-only connection cannot start (it needs the ``-shm`` file, which a full disk or a
        read-only folder may not allow), the file is read as immutable: nothing else can write there then.
        """
        if str(self.path) == ":memory:" or not self.path.exists():
            self.db = sqlite_utils.Database(sqlite3.connect(":memory:", check_same_thread=False))
            self._migrate()
            return
        error: sqlite3.Error | None = None
        for mode in ("mode=ro", "immutable=1"):
            uri = f"{self.path.absolute().as_uri()}?{mode}"
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
                conn.execute("select count(*) from sqlite_master").fetchone()
                self.db = sqlite_utils.Database(conn)
                return
            except sqlite3.Error as exc:
                error = exc
        raise StoreError(f"cannot read history database {self.path}: {error}") from None

    def _migrate(self, steps: list[migrations.Migration] | None = None) -> list[str]:
        """Bring the schema up to date: all pending steps in one write transaction, or none of them.

        An up-to-date database takes no write lock. Another process migrating at the same moment holds
        the lock until it is done; this one then finds nothing left to do.
        """
        conn = self.db.conn
        with self._lock:
            if not migrations.pending(conn, steps):
                return []
            conn.execute("BEGIN IMMEDIATE")
            try:
                names = migrations.migrate(conn, steps)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return names

    def applied_migrations(self) -> list[str]:
        """The schema steps this database has recorded, in order."""
        with self._lock:
            return migrations.applied(self.db.conn)

    def _write(self, fn: Callable[[], T]) -> T:
        """Run a write, retrying while another process holds the lock; one clear error otherwise.

        A write inside another one (see :meth:`atomic`) joins its transaction: it commits or rolls back with it.
        """
        with self._lock:
            if self._writing:
                return fn()
        delay = 0.05
        for attempt in range(8):
            try:
                with self._lock, self.db.conn:
                    if not self.db.conn.in_transaction:  # DDL gets no implicit BEGIN: take the write lock now
                        self.db.conn.execute("BEGIN IMMEDIATE")
                    self._writing = True
                    try:
                        return fn()
                    finally:
                        self._writing = False
            except sqlite3.OperationalError as exc:
                if not _transient(exc) or attempt == 7:
                    why = f"{exc}{_hint(self.path, exc)}"
                    raise StoreError(f"cannot write history database {self.path}: {why}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write history database {self.path}: {exc}") from None
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, which only reads through ``self.db``, holding the connection (other threads wait)."""
        with self._lock:
            return fn()

    def atomic(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, which reads and writes through this store, as one transaction: all its writes or none.

        Other threads and processes wait for it; it is retried whole while another process holds the lock,
        so ``fn`` must do nothing but store calls. An exception from ``fn`` rolls everything back.
        """
        return self._write(fn)

    # conversations
    def new_conversation(self, title: str = "", model: str = "", system: str = "", persona: str = "") -> int:
        stamp = now()
        row = {"title": title, "model": model, "system": system, "persona": persona, "created": stamp, "updated": stamp}
        return self._write(lambda: _insert(self.db.table("conversations"), row))

    def conversation(self, conversation_id: int) -> Conversation:
        if not 0 < conversation_id <= MAX_ID:  # SQLite cannot even look up a larger number
            raise StoreError(f"no conversation with id {conversation_id}")
        with self._lock:
            try:
                return Conversation.from_row(self.db.table("conversations").get(conversation_id))
            except sqlite_utils.db.NotFoundError:
                raise StoreError(f"no conversation with id {conversation_id}") from None

    def conversations(self, limit: int = 200) -> list[Conversation]:
        limit = min(limit, MAX_ID)
        with self._lock:
            rows = list(self.db.table("conversations").rows_where(order_by="updated desc, id desc", limit=limit))
        return [Conversation.from_row(row) for row in rows]

    def latest_conversation_id(self) -> int | None:
        rows = self.conversations(limit=1)
        return rows[0].id if rows else None

    def update_conversation(self, conversation_id: int, **values: Any) -> None:
        _check_columns(values, CONVERSATION_FIELDS)
        values.setdefault("updated", now())
        self._write(lambda: self.db.table("conversations").update(conversation_id, values))

    def delete_conversation(self, conversation_id: int) -> None:
        def delete() -> None:
            self.db.table("messages").delete_where("conversation_id = ?", [conversation_id])
            self.db.table("conversations").delete(conversation_id)

        self._write(delete)

    def start_turn(
        self,
        conversation_id: int | None,
        question: str,
        model: str,
        title: str = "",
        system: str = "",
        persona: str = "",
    ) -> tuple[int, int, int]:
        """In one transaction: the conversation (new if None), the question and the empty answer to stream into.

        Returns (conversation id, question id, answer id). A failed write leaves none of them behind.
        """

        def write() -> tuple[int, int, int]:
            stamp = now()
            cid = conversation_id
            if cid is None:
                row = {
                    "title": title,
                    "model": model,
                    "system": system,
                    "persona": persona,
                    "created": stamp,
                    "updated": stamp,
                }
                cid = _insert(self.db.table("conversations"), row)
            common = {"conversation_id": cid, "escalated": 0, "route": "", "finish_reason": "", "created": stamp}
            messages = self.db.table("messages")
            question_id = _insert(messages, {**common, "role": "user", "content": question, "model": "", "complete": 1})
            answer = {**common, "role": "assistant", "content": "", "model": model, "complete": 0, "created": now()}
            answer_id = _insert(messages, answer)
            self.db.table("conversations").update(cid, {"updated": stamp})
            return cid, question_id, answer_id

        return self._write(write)

    # messages
    def add_message(self, conversation_id: int, role: str, content: str, **extra: Any) -> int:
        _check_columns(extra, MESSAGE_FIELDS)
        row = {"conversation_id": conversation_id, "role": role, "content": content, "created": now()}
        row.update({"complete": 1, "escalated": 0, "model": "", "route": "", "finish_reason": ""})
        row.update(extra)

        def insert() -> int:
            pk = _insert(self.db.table("messages"), row)
            self.db.table("conversations").update(conversation_id, {"updated": row["created"]})
            return pk

        return self._write(insert)

    def update_message(self, message_id: int, *, reserve: bool = False, **values: Any) -> None:
        """Change a message; ``reserve``: if the disk is full, give up the reserve file to make this write
        (an answer's last one, recording that it failed: its question is already stored)."""
        _check_columns(values, MESSAGE_FIELDS)
        try:
            self._write(lambda: self.db.table("messages").update(message_id, values))
        except StoreError:
            if not (reserve and self._release_reserve()):
                raise
            self._write(lambda: self.db.table("messages").update(message_id, values))

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}-reserve")

    def _keep_reserve(self) -> None:
        """Make the reserve file if it is missing (a few hundred KiB of random bytes, which no filesystem
        compresses away); on a full disk or a read-only folder there is none until a later start."""
        if self.reserve_path.exists():
            return
        try:
            with self.reserve_path.open("xb") as handle:
                handle.write(os.urandom(RESERVE_BYTES))
        except FileExistsError:  # another process made it just now
            return
        except OSError:
            self.reserve_path.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        """Delete the reserve file: room for one more write on a full disk. False if there was none."""
        try:
            self.reserve_path.unlink()
            return True
        except OSError:
            return False

    def delete_message(self, message_id: int) -> None:
        self._write(lambda: self.db.table("messages").delete(message_id))

    def messages(self, conversation_id: int) -> list[Message]:
        with self._lock:
            rows = list(self.db.table("messages").rows_where("conversation_id = ?", [conversation_id], order_by="id"))
        return [Message.from_row(row) for row in rows]

    def message(self, message_id: int) -> Message:
        with self._lock:
            try:
                return Message.from_row(self.db.table("messages").get(message_id))
            except sqlite_utils.db.NotFoundError:
                raise StoreError(f"no message with id {message_id}") from None

    def iter_messages(self) -> Iterator[Message]:
        """Every message, oldest first."""
        with self._lock:
            rows = list(self.db.table("messages").rows_where(order_by="id"))
        yield from (Message.from_row(row) for row in rows)

    def search(self, query: str, limit: int = 50, window: int = 2000) -> list[SearchHit]:
        """Full-text search over message content, best matches first.

        Ranking is bounded to the ``window`` most recent matches, so a very common word costs the
        same as a rare one (ranking all 52k matches of "the" in 100k messages took 50 ms; this 3 ms).
        """
        limit = min(limit, MAX_ID)
        quoted = " ".join('"' + term.replace('"', '""') + '"' for term in query.split())
        if not quoted:
            return []
        ranked = """
            select rowid, score from (
                select rowid, bm25(messages_fts) as score from messages_fts
                where messages_fts match ? order by rowid desc limit ?
            ) order by score limit ?
        """
        with self._lock:
            order = {row["rowid"]: i for i, row in enumerate(self.db.query(ranked, [quoted, window, limit]))}
            if not order:
                return []
            marks = ",".join("?" * len(order))
            rows = list(
                self.db.query(
                    f"""select messages.*, snippet(messages_fts, 0, '[', ']', '…', 12) as snippet
                    from messages_fts join messages on messages.rowid = messages_fts.rowid
                    where messages_fts match ? and messages_fts.rowid in ({marks})""",
                    [quoted, *order],
                )
            )
        return sorted((SearchHit.from_row(row) for row in rows), key=lambda hit: order[hit.id])

    def escalated_exchanges(self) -> list[Exchange]:
        """Finished, non-empty answers from the teacher with the user's question before each, oldest first."""
        with self._lock:
            rows = list(
                self.db.query(
                    """
                select a.conversation_id, a.id as answer_id, a.content as answer, a.model,
                       (select u.content from messages u where u.conversation_id = a.conversation_id
                          and u.role = 'user' and u.id < a.id order by u.id desc limit 1) as question
                from messages a
                where a.role = 'assistant' and a.escalated = 1 and a.complete = 1 and trim(a.content) != ''
                order by a.id
                """
                )
            )
        return [Exchange.from_row(row) for row in rows]

    # attachments (records of the files sent with a message)
    def add_attachments(self, message_id: int, records: list[AttachmentRecord]) -> None:
        """Record the files attached to a stored message (their ``id`` and ``message_id`` are set here)."""
        rows = [{**r.as_dict(), "message_id": message_id} for r in records]
        for row in rows:
            del row["id"]
        if rows:
            self._write(lambda: self.db.table("attachments").insert_all(rows))

    def attachments(self, message_id: int) -> list[AttachmentRecord]:
        """The files recorded with a message, in the order they were attached (empty if none)."""
        with self._lock:
            if not self.db.table("attachments").exists():  # an older database opened read-only (not migrated)
                return []
            rows = list(self.db.table("attachments").rows_where("message_id = ?", [message_id], order_by="id"))
        return [AttachmentRecord.from_row(row) for row in rows]

    # branches (the versions at each branch point of a conversation)
    def branches(self, conversation_id: int, parent_ids: list[int] | None = None) -> list[Branch]:
        """The conversation's versions (only those at ``parent_ids`` if given), by branch point then position."""
        where, args = "conversation_id = ?", [conversation_id]
        if parent_ids is not None:
            where += f" and parent_id in ({','.join('?' * len(parent_ids))})"
            args += parent_ids
        with self._lock:
            if not self.db.table("branches").exists():  # an older database opened read-only (not migrated)
                return []
            rows = list(self.db.table("branches").rows_where(where, args, order_by="parent_id, position"))
        return [Branch.from_row(row) for row in rows]

    def add_branch(
        self, conversation_id: int, parent_id: int, position: int, messages: str | None = None, created: str = ""
    ) -> Branch:
        """A new version at a branch point (``messages`` None: the one on screen)."""
        row = {
            "conversation_id": conversation_id,
            "parent_id": parent_id,
            "position": position,
            "messages": messages,
            "created": created or now(),
        }
        pk = self._write(lambda: _insert(self.db.table("branches"), row))
        return Branch.from_row({**row, "id": pk})

    def set_branch_messages(self, branch_id: int, messages: str | None) -> None:
        """Archive a version's tail (JSON), or mark it as the one on screen (None)."""
        self._write(lambda: self.db.table("branches").update(branch_id, {"messages": messages}))

    def delete_branches(self, conversation_id: int, parent_ids: list[int]) -> None:
        """Drop the versions at these branch points (e.g. when their messages are archived with a tail)."""
        if parent_ids:
            marks = ",".join("?" * len(parent_ids))
            where = f"conversation_id = ? and parent_id in ({marks})"
            self._write(lambda: self.db.table("branches").delete_where(where, [conversation_id, *parent_ids]))

    # the models table: the registry's rows (``assistant.models.registry.ModelEntry``), as plain dicts
    def model_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.table("models").rows_where(order_by="name"))

    def model_row(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.table("models").rows_where("name = ?", [name]))
        return rows[0] if rows else None

    def save_model_row(self, row: dict[str, Any]) -> None:
        """Add the row, or replace the one with its name."""
        self._write(lambda: self.db.table("models").upsert(row, pk="name"))

    def delete_model_row(self, name: str) -> None:
        self._write(lambda: self.db.table("models").delete_where("name = ?", [name]))

    def integrity_ok(self) -> bool:
        with self._lock:
            return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


def _insert(table: sqlite_utils.db.Table, row: dict[str, Any]) -> int:
    """Insert ``row``; its new id (rowid tables always report one)."""
    pk = table.insert(row).last_pk
    if not isinstance(pk, int):
        raise StoreError(f"inserting into {table.name} returned no id")
    return pk


def _check_columns(values: dict[str, Any], known: set[str]) -> None:
    if unknown := set(values) - known:
        raise ValueError(f"unknown column(s) {sorted(unknown)} (known: {sorted(known)})")


def export_conversation(
    store: Store, conversation_id: int, fmt: str = "md", model_names: dict[str, str] | None = None
) -> str:
    """A conversation as Markdown or JSON (see ``assistant.storage.export``); ``model_names`` maps stored model
    names to the ones shown in Markdown headings (older histories hold a file's stem)."""
    conversation = store.conversation(conversation_id)  # first: an unknown id is refused in one line
    return export.document(conversation, store.messages(conversation_id), fmt, model_names)
