"""Branches instead of overwrites: regenerate and edit-and-resend keep the earlier versions.

The conversation on screen stays the plain list of messages every reader already uses (the UI,
export, distill-from-history: they see only the branch the user keeps). The other versions live in
table ``branches``: at each *branch point* (the message a tail follows: the question whose answer
was regenerated, or the message before an edited question; 0 for the conversation's start) every
version has a numbered row; the one on screen has ``messages`` NULL, the others hold their tail as
JSON (messages, their attachment records, and the branch points inside them). Switching archives
the tail on screen and restores the chosen one, so the tree survives restarts and the next turn
continues from the version on screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from assistant import AssistantError, attach
from assistant.store import now

BRANCH_COLUMNS = {"id": int, "conversation_id": int, "parent_id": int, "position": int, "messages": str,
                  "created": str}
KEPT = ("role", "content", "model", "escalated", "route", "complete", "finish_reason", "prompt_tokens",
        "completion_tokens", "ttft_s", "tokens_per_s", "created")


class BranchError(AssistantError):
    """No such version."""


@dataclass
class BranchPoint:
    """Where versions diverge: ``active`` of ``count`` is on screen (``◀ 2/3 ▶``)."""

    parent_id: int
    active: int
    count: int


def _table(store: Any) -> Any:
    """The branches table, created on first use (beside the store's own schema)."""
    table = store.db["branches"]
    if not table.exists():
        table.create(BRANCH_COLUMNS, pk="id", if_not_exists=True)
        table.create_index(["conversation_id", "parent_id"], if_not_exists=True)
        store.db.execute(  # a deleted conversation takes every version with it
            "CREATE TRIGGER IF NOT EXISTS branches_follow_conversations AFTER DELETE ON conversations "
            "BEGIN DELETE FROM branches WHERE conversation_id = old.id; END"
        )
    return table


def fork(store: Any, conversation_id: int, parent_id: int) -> None:
    """Keep the tail after ``parent_id`` as a version and clear it: a new version follows (regenerate, resend)."""

    def write() -> None:
        table = _table(store)
        rows = _rows(store, conversation_id, parent_id)
        if not rows:  # the first fork here: the tail on screen becomes version 1
            rows = [_insert(table, conversation_id, parent_id, 1, None)]
        active = next(r for r in rows if r["messages"] is None)
        table.update(active["id"], {"messages": json.dumps(_take_tail(store, conversation_id, parent_id))})
        _insert(table, conversation_id, parent_id, len(rows) + 1, None)

    store._write(write)


def switch(store: Any, conversation_id: int, parent_id: int, position: int) -> None:
    """Put version ``position`` of the branch point on screen (the current one is kept)."""

    def write() -> None:
        table = _table(store)
        rows = {r["position"]: r for r in _rows(store, conversation_id, parent_id)}
        if position not in rows:
            raise BranchError(f"no version {position} here (there are {len(rows)})")
        chosen = rows[position]
        if chosen["messages"] is None:
            return
        active = next(r for r in rows.values() if r["messages"] is None)
        table.update(active["id"], {"messages": json.dumps(_take_tail(store, conversation_id, parent_id))})
        _restore(store, conversation_id, json.loads(chosen["messages"]))
        table.update(chosen["id"], {"messages": None})

    store._write(write)


def points(store: Any, conversation_id: int) -> list[BranchPoint]:
    """The branch points on screen, in order, with the version shown and how many there are."""
    with store._lock:
        if not store.db["branches"].exists():
            return []
        rows = list(store.db["branches"].rows_where("conversation_id = ?", [conversation_id], order_by="position"))
    by_parent: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_parent.setdefault(row["parent_id"], []).append(row)
    return [
        BranchPoint(parent, next(r["position"] for r in versions if r["messages"] is None), len(versions))
        for parent, versions in sorted(by_parent.items())
    ]


def _rows(store: Any, conversation_id: int, parent_id: int) -> list[dict[str, Any]]:
    return list(_table(store).rows_where("conversation_id = ? and parent_id = ?", [conversation_id, parent_id],
                                         order_by="position"))


def _insert(table: Any, conversation_id: int, parent_id: int, position: int, messages: str | None) -> dict[str, Any]:
    row = {"conversation_id": conversation_id, "parent_id": parent_id, "position": position,
           "messages": messages, "created": now()}
    row["id"] = table.insert(row).last_pk
    return row


def _take_tail(store: Any, conversation_id: int, parent_id: int) -> dict[str, Any]:
    """Remove the messages after ``parent_id`` (and the branch points among them); return them as data."""
    db = store.db
    messages = list(db["messages"].rows_where("conversation_id = ? and id > ?", [conversation_id, parent_id],
                                              order_by="id"))
    ids = [m["id"] for m in messages]
    marks = ",".join("?" * len(ids))
    nested = list(db["branches"].rows_where(f"conversation_id = ? and parent_id in ({marks})",
                                            [conversation_id, *ids])) if ids else []
    files = {i: attach.of_message(store, i) for i in ids}
    tail = {
        "messages": [{"id": m["id"], **{k: m[k] for k in KEPT if k in m},
                      "attachments": [{k: f[k] for k in ("name", "size", "sha256", "tokens")} for f in files[m["id"]]]}
                     for m in messages],
        "branches": [{k: b[k] for k in ("parent_id", "position", "messages", "created")} for b in nested],
    }
    if ids:
        db["branches"].delete_where(f"conversation_id = ? and parent_id in ({marks})", [conversation_id, *ids])
        db["messages"].delete_where(f"id in ({marks})", ids)
    return tail


def _restore(store: Any, conversation_id: int, tail: dict[str, Any]) -> None:
    """Re-insert an archived tail after the messages on screen (new ids; its branch points follow them)."""
    db = store.db
    new_ids: dict[int, int] = {}
    for message in tail["messages"]:
        row = {k: message[k] for k in KEPT if k in message}
        new_ids[message["id"]] = db["messages"].insert({"conversation_id": conversation_id, **row}).last_pk
        for record in message["attachments"]:
            db["attachments"].insert({"message_id": new_ids[message["id"]], **record})
    for branch in tail["branches"]:
        db["branches"].insert({"conversation_id": conversation_id, **branch,
                               "parent_id": new_ids.get(branch["parent_id"], branch["parent_id"])})
    db["conversations"].update(conversation_id, {"updated": now()})


def with_versions(text: str, store: Any, conversation_id: int, fmt: str) -> str:
    """An export (``store.export_conversation``) plus the versions not on screen (`history … --all-branches`)."""
    versions = _archived(store, conversation_id)
    if fmt == "json":
        data = json.loads(text)
        data["versions"] = versions
        return json.dumps(data, indent=2, ensure_ascii=False)
    lines = [text.rstrip("\n"), ""]
    for version in versions:
        where = f"after message #{version['parent_id']}" if version["parent_id"] else "from the start"
        lines += [f"# Version {version['position']} {where} (not on screen)", ""]
        for message in version["messages"]:
            lines += [f"## {message['role'].capitalize()}", "", message["content"], ""]
    return "\n".join(lines)


def _archived(store: Any, conversation_id: int) -> list[dict[str, Any]]:
    """Every version not on screen, nested ones included (their parent ids are the archived messages' ids)."""
    with store._lock:
        if not store.db["branches"].exists():
            return []
        pending = [r for r in store.db["branches"].rows_where("conversation_id = ?", [conversation_id],
                                                              order_by="parent_id, position")]
    versions = []
    while pending:
        row = pending.pop(0)
        if row["messages"] is None:
            continue
        tail = json.loads(row["messages"])
        versions.append({"parent_id": row["parent_id"], "position": row["position"], "messages": tail["messages"]})
        pending += tail["branches"]
    return versions
