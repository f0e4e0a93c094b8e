"""Conversation history in SQLite (sqlite-utils): conversations, messages, full-text search.

WAL mode and a busy timeout let the UI and ``assistant ask`` write at once. The user's
message is written before generation starts; the answer is written as it streams.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from assistant import AssistantError

T = TypeVar("T")

MESSAGE_COLUMNS = {
    "id": int,
    "conversation_id": int,
    "role": str,
    "content": str,
    "model": str,
    "escalated": int,
    "route": str,  # JSON: the router's decision and score
    "complete": int,  # 0 while streaming (or if the process died mid-answer)
    "finish_reason": str,  # stop | length | cancelled
    "prompt_tokens": int,
    "completion_tokens": int,
    "ttft_s": float,
    "tokens_per_s": float,
    "created": str,
}


class StoreError(AssistantError):
    """The history database cannot be opened or written."""


def _transient(exc: sqlite3.OperationalError) -> bool:
    """Another process holds the lock, or created the schema first: worth a retry."""
    return any(word in str(exc) for word in ("locked", "busy", "already exists"))


def _hint(path: Path | str) -> str:
    """Why a write may have failed, in words: a read-only folder (even root cannot write there)."""
    folder = Path(path).parent
    if str(path) != ":memory:" and folder.is_dir() and not os.access(folder, os.W_OK):
        return f" (the folder {folder} is read-only)"
    return ""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Message:
    role: str
    content: str
    id: int | None = None
    model: str = ""
    escalated: bool = False
    complete: bool = True
    route: str = ""

    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class Store:
    """The history database. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        for attempt in range(10):  # another process may be creating the database right now
            try:
                self._open(path)
                return
            except sqlite3.OperationalError as exc:
                if hasattr(self, "db"):
                    self.db.conn.close()
                if not _transient(exc) or attempt == 9:
                    raise StoreError(f"cannot open history database {path}: {exc}{_hint(path)}") from None
                time.sleep(0.05 * 2**min(attempt, 4))
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open history database {path}: {exc}{_hint(path)}") from None

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

    def _migrate(self) -> None:
        """Create what is missing; each step is idempotent, so a killed or concurrent first run is harmless."""
        with self._lock:
            tables = set(self.db.table_names())
            if "conversations" not in tables:
                self.db["conversations"].create(
                    {"id": int, "title": str, "model": str, "system": str, "created": str, "updated": str},
                    pk="id",
                    if_not_exists=True,
                )
            if "messages" not in tables:
                self.db["messages"].create(
                    MESSAGE_COLUMNS,
                    pk="id",
                    foreign_keys=[("conversation_id", "conversations", "id")],
                    if_not_exists=True,
                )
                self.db["messages"].create_index(["conversation_id"], if_not_exists=True)
            if "messages_fts" not in tables or len(self.db["messages"].triggers) < 3:
                self.db["messages"].enable_fts(["content"], create_triggers=True, tokenize="porter", replace=True)

    def _write(self, fn: Callable[[], T]) -> T:
        """Run a write, retrying while another process holds the lock; one clear error otherwise."""
        delay = 0.05
        for attempt in range(8):
            try:
                with self._lock, self.db.conn:
                    if not self.db.conn.in_transaction:  # DDL gets no implicit BEGIN: take the write lock now
                        self.db.conn.execute("BEGIN IMMEDIATE")
                    return fn()
            except sqlite3.OperationalError as exc:
                if not _transient(exc) or attempt == 7:
                    raise StoreError(f"cannot write history database {self.path}: {exc}{_hint(self.path)}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write history database {self.path}: {exc}") from None
        raise AssertionError("unreachable")

    # conversations
    def new_conversation(self, title: str = "", model: str = "", system: str = "") -> int:
        stamp = now()
        row = {"title": title, "model": model, "system": system, "created": stamp, "updated": stamp}
        return self._write(lambda: self.db["conversations"].insert(row).last_pk)

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        with self._lock:
            try:
                return self.db["conversations"].get(conversation_id)
            except sqlite_utils.db.NotFoundError:
                raise StoreError(f"no conversation with id {conversation_id}") from None

    def conversations(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db["conversations"].rows_where(order_by="updated desc, id desc", limit=limit))

    def latest_conversation_id(self) -> int | None:
        rows = self.conversations(limit=1)
        return rows[0]["id"] if rows else None

    def update_conversation(self, conversation_id: int, **values: Any) -> None:
        values.setdefault("updated", now())
        self._write(lambda: self.db["conversations"].update(conversation_id, values))

    def delete_conversation(self, conversation_id: int) -> None:
        def delete() -> None:
            self.db["messages"].delete_where("conversation_id = ?", [conversation_id])
            self.db["conversations"].delete(conversation_id)

        self._write(delete)

    # messages
    def add_message(self, conversation_id: int, role: str, content: str, **extra: Any) -> int:
        row = {"conversation_id": conversation_id, "role": role, "content": content, "created": now()}
        row.update({"complete": 1, "escalated": 0, "model": "", "route": "", "finish_reason": ""})
        row.update(extra)

        def insert() -> int:
            pk = self.db["messages"].insert(row).last_pk
            self.db["conversations"].update(conversation_id, {"updated": row["created"]})
            return pk

        return self._write(insert)

    def update_message(self, message_id: int, **values: Any) -> None:
        self._write(lambda: self.db["messages"].update(message_id, values))

    def delete_message(self, message_id: int) -> None:
        self._write(lambda: self.db["messages"].delete(message_id))

    def messages(self, conversation_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id"))

    def message(self, message_id: int) -> dict[str, Any]:
        with self._lock:
            return self.db["messages"].get(message_id)

    def search(self, query: str, limit: int = 50, window: int = 2000) -> list[dict[str, Any]]:
        """Full-text search over message content, best matches first.

        Ranking is bounded to the ``window`` most recent matches, so a very common word costs the
        same as a rare one (ranking all 52k matches of "the" in 100k messages took 50 ms; this 3 ms).
        """
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
            rows = list(self.db.query(
                f"""select messages.*, snippet(messages_fts, 0, '[', ']', '…', 12) as snippet
                    from messages_fts join messages on messages.rowid = messages_fts.rowid
                    where messages_fts match ? and messages_fts.rowid in ({marks})""",
                [quoted, *order],
            ))
        return sorted(rows, key=lambda row: order[row["id"]])

    def iter_messages(self, where: str = "1", params: list[Any] | None = None) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = list(self.db["messages"].rows_where(where, params or [], order_by="id"))
        yield from rows

    def integrity_ok(self) -> bool:
        with self._lock:
            return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


def export_conversation(store: Store, conversation_id: int, fmt: str = "md") -> str:
    """A conversation as Markdown or JSON."""
    conversation = store.conversation(conversation_id)
    messages = store.messages(conversation_id)
    if fmt == "json":
        return json.dumps({"conversation": conversation, "messages": messages}, indent=2, ensure_ascii=False)
    if fmt != "md":
        raise AssistantError(f"unknown export format {fmt!r} (use md or json)")
    lines = [f"# {conversation['title'] or 'Conversation'} ({conversation_id})", ""]
    for m in messages:
        who = m["role"].capitalize()
        if m["role"] == "assistant":
            who += f" · {m['model']}" + (" · escalated" if m["escalated"] else "")
            who += f" · via {via}" if (via := _route(m).get("via")) else ""
            who += "" if m["complete"] else " · incomplete"
        lines += [f"## {who}", "", m["content"], ""]
    return "\n".join(lines)


def _route(message: dict[str, Any]) -> dict[str, Any]:
    """A message's route (the router's decision, the front door it came through), {} if none or unreadable."""
    try:
        route = json.loads(message.get("route") or "{}")
    except ValueError:
        return {}
    return route if isinstance(route, dict) else {}
