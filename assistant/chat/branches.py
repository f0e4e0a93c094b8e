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

from assistant import AssistantError
from assistant.storage.store import AttachmentRecord, Branch, Store

KEPT = (
    "role",
    "content",
    "model",
    "escalated",
    "route",
    "complete",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "ttft_s",
    "tokens_per_s",
    "created",
)
FILE_KEPT = ("name", "size", "sha256", "tokens")


class BranchError(AssistantError):
    """No such version."""


@dataclass
class BranchPoint:
    """Where versions diverge: ``active`` of ``count`` is on screen (``◀ 2/3 ▶``)."""

    parent_id: int
    active: int
    count: int


def fork(store: Store, conversation_id: int, parent_id: int) -> None:
    """Keep the tail after ``parent_id`` as a version and clear it: a new version follows (regenerate, resend)."""

    def write() -> None:
        rows = store.branches(conversation_id, [parent_id])
        if not rows:  # the first fork here: the tail on screen becomes version 1
            rows = [store.add_branch(conversation_id, parent_id, 1)]
        active = next(r for r in rows if r.messages is None)
        store.set_branch_messages(active.id, json.dumps(_take_tail(store, conversation_id, parent_id)))
        store.add_branch(conversation_id, parent_id, len(rows) + 1)

    store.atomic(write)


def switch(store: Store, conversation_id: int, parent_id: int, position: int) -> None:
    """Put version ``position`` of the branch point on screen (the current one is kept)."""

    def write() -> None:
        rows = {r.position: r for r in store.branches(conversation_id, [parent_id])}
        if position not in rows:
            raise BranchError(f"no version {position} here (there are {len(rows)})")
        chosen = rows[position]
        if chosen.messages is None:
            return
        active = next(r for r in rows.values() if r.messages is None)
        store.set_branch_messages(active.id, json.dumps(_take_tail(store, conversation_id, parent_id)))
        _restore(store, conversation_id, json.loads(chosen.messages))
        store.set_branch_messages(chosen.id, None)

    store.atomic(write)


def points(store: Store, conversation_id: int) -> list[BranchPoint]:
    """The branch points on screen, in order, with the version shown and how many there are."""
    by_parent: dict[int, list[Branch]] = {}
    for row in store.branches(conversation_id):
        by_parent.setdefault(row.parent_id, []).append(row)
    return [
        BranchPoint(parent, next(r.position for r in versions if r.messages is None), len(versions))
        for parent, versions in sorted(by_parent.items())
    ]


def _take_tail(store: Store, conversation_id: int, parent_id: int) -> dict[str, Any]:
    """Remove the messages after ``parent_id`` (and the branch points among them); return them as data."""
    messages = [m for m in store.messages(conversation_id) if m.id > parent_id]
    ids = [m.id for m in messages]
    nested = store.branches(conversation_id, ids) if ids else []
    tail = {
        "messages": [
            {
                "id": m.id,
                **{k: m[k] for k in KEPT},
                "attachments": [{k: f[k] for k in FILE_KEPT} for f in store.attachments(m.id)],
            }
            for m in messages
        ],
        "branches": [{k: b[k] for k in ("parent_id", "position", "messages", "created")} for b in nested],
    }
    store.delete_branches(conversation_id, ids)
    for message_id in ids:
        store.delete_message(message_id)
    return tail


def _restore(store: Store, conversation_id: int, tail: dict[str, Any]) -> None:
    """Re-insert an archived tail after the messages on screen (new ids; its branch points follow them)."""
    new_ids: dict[int, int] = {}
    for message in tail["messages"]:
        row = {k: message[k] for k in KEPT if k in message}
        new_ids[message["id"]] = new_id = store.add_message(conversation_id, row.pop("role"), row.pop("content"), **row)
        store.add_attachments(new_id, [AttachmentRecord(**record) for record in message["attachments"]])
    for branch in tail["branches"]:
        parent_id = new_ids.get(branch["parent_id"], branch["parent_id"])
        store.add_branch(conversation_id, parent_id, branch["position"], branch["messages"], branch["created"])
    store.update_conversation(conversation_id)


def with_versions(text: str, store: Store, conversation_id: int, fmt: str) -> str:
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


def _archived(store: Store, conversation_id: int) -> list[dict[str, Any]]:
    """Every version not on screen, nested ones included (their parent ids are the archived messages' ids)."""
    pending = [b.as_dict() for b in store.branches(conversation_id)]
    versions = []
    while pending:
        row = pending.pop(0)
        if row["messages"] is None:
            continue
        tail = json.loads(row["messages"])
        versions.append({"parent_id": row["parent_id"], "position": row["position"], "messages": tail["messages"]})
        pending += tail["branches"]
    return versions
