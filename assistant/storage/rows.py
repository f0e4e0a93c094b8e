"""The history database's typed rows: a conversation, a message, a search hit, an exchange, an attachment record,
a branch version. ``assistant.storage.store`` reads and writes them.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self


class Row:
    """A typed row. ``row["title"]`` and ``row.get("title")`` still work for callers not yet moved to attributes."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # every subclass is a dataclass

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        """From a database row: NULL text reads as "", 0/1 flags as bools; columns the class lacks are skipped."""
        row_class: type = cls  # as a plain class: mypy takes type[Self] for unhashable (dataclasses set __hash__)
        names, texts, flags = _columns(row_class)
        values = {name: row[name] for name in names if name in row}
        for name in texts:
            if name in values and values[name] is None:
                values[name] = ""
        for name in flags:
            if values.get(name) is not None:
                values[name] = bool(values[name])
        return cls(**values)


@functools.cache
def _columns(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A row class's field names, its text fields and its flag fields, worked out once per class."""
    found = fields(cls)
    return (
        tuple(f.name for f in found),
        tuple(f.name for f in found if f.type == "str"),
        tuple(f.name for f in found if f.type == "bool"),
    )


@dataclass
class Conversation(Row):
    id: int
    title: str = ""
    model: str = ""  # the model it was started with
    system: str = ""  # its system prompt
    created: str = ""
    updated: str = ""
    persona: str = ""  # the persona it runs as (empty = none)


@dataclass
class Message(Row):
    id: int
    conversation_id: int
    role: str  # user | assistant
    content: str = ""
    model: str = ""
    escalated: bool = False  # answered by the teacher
    route: str = ""  # JSON: the router's decision and score
    complete: bool = True  # False while streaming (or if the process died mid-answer)
    finish_reason: str = ""  # stop | length | cancelled | failed (a write failed: a full disk)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    created: str = ""
    sources: str = ""  # JSON: what an answer grounded in your documents drew on (``chat.grounding``)

    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class SearchHit(Message):
    snippet: str = ""  # the matching words in [brackets]


@dataclass
class Exchange(Row):
    """A question and the answer that followed it (e.g. the teacher's, for distillation)."""

    conversation_id: int
    question: str
    answer: str
    model: str
    answer_id: int


@dataclass
class AttachmentRecord(Row):
    """What is kept of a file attached to a message (its text is in the message itself)."""

    name: str
    size: int  # bytes
    sha256: str
    tokens: int = 0  # of its block, counted with the model that answered
    message_id: int = 0  # set when stored
    id: int = 0  # set when stored


@dataclass
class Branch(Row):
    """One version at a branch point (``assistant.chat.branches``): the one on screen has ``messages`` None."""

    id: int
    conversation_id: int
    parent_id: int  # the message the versions follow; 0 for the conversation's start
    position: int  # 1, 2, … at its branch point
    messages: str | None = None  # JSON: the archived tail of a version not on screen
    created: str = ""
