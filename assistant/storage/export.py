"""A stored conversation as a document: Markdown to read, or JSON with every stored field."""

from __future__ import annotations

import json
from typing import Any

from assistant import AssistantError
from assistant.storage.rows import Conversation, Message


def document(
    conversation: Conversation, messages: list[Message], fmt: str = "md", model_names: dict[str, str] | None = None
) -> str:
    """The conversation and its messages as Markdown (``md``, answers' models named through ``model_names``) or
    JSON (``json``, every field as stored)."""
    if fmt == "json":
        data = {"conversation": conversation.as_dict(), "messages": [m.as_dict() for m in messages]}
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt != "md":
        raise AssistantError(f"unknown export format {fmt!r} (use md or json)")
    lines = [f"# {conversation.title or 'Conversation'} ({conversation.id})", ""]
    for m in messages:
        lines += [f"## {_heading(m, (model_names or {}).get(m.model, m.model))}", "", m.content, ""]
        if labels := _sources(m.sources):  # an answer grounded in your documents: what it drew on
            lines += [f"Sources: {', '.join(labels)}", ""]
    return "\n".join(lines)


def _sources(text: str) -> list[str]:
    """An answer's stored sources (``chat.grounding``'s JSON) as ``path:start-end`` labels; [] if none or unreadable."""
    try:
        found = json.loads(text)["sources"] if text else []
        return [f"{s['path']}:{s['start_line']}-{s['end_line']}" for s in found]
    except (ValueError, TypeError, KeyError):
        return []


def _heading(m: Message, model: str) -> str:
    """Who wrote the message; for an answer, the model and how the answer went."""
    who = m.role.capitalize()
    if m.role == "assistant":
        who += f" · {model}" + (" · escalated" if m.escalated else "")
        who += f" · via {via}" if (via := _route(m.route).get("via")) else ""
        who += "" if m.complete else " · incomplete"
        who += " · failed" if m.finish_reason == "failed" else ""  # a write failed mid-answer (a full disk)
        who += " · cut at the token limit" if m.complete and m.finish_reason == "length" else ""
        who += " · stopped (incomplete)" if m.complete and m.finish_reason == "cancelled" else ""
    return who


def _route(text: str) -> dict[str, Any]:
    """A message's route (the router's decision, the front door it came through), {} if none or unreadable."""
    try:
        route = json.loads(text or "{}")
    except ValueError:
        return {}
    return route if isinstance(route, dict) else {}
