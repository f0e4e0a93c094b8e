"""Files in the conversation: read a text file, put it in the message as a delimited block, record it.

A file is read whole (no silent cut) and refused with one line when it is unreadable, binary
or does not fit the model's context. The message sent holds each file as a block naming it,
fenced so that nothing inside the file can close the block early; the store keeps each
attachment's name, size, sha256 and token count beside the message (``Store.add_attachments``),
while the text sent is the message itself.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from assistant import AssistantError
from assistant.storage.store import AttachmentRecord, Store

MAX_FILE_BYTES = 8 * 2**20  # nothing bigger fits any context this app runs; refused before tokenizing
STDIN_NAME = "stdin"


class AttachmentError(AssistantError):
    """A file cannot be attached."""


@dataclass
class Attachment:
    name: str
    text: str
    size: int  # bytes
    sha256: str
    tokens: int = 0  # of its block, counted with the model that answers

    def block(self) -> str:
        """The file as it goes into the message: its name, then its text in a fence longer than any inside."""
        longest = max((len(run) for run in re.findall(r"`{3,}", self.text)), default=2)
        fence = "`" * (longest + 1)
        body = self.text if self.text.endswith("\n") else f"{self.text}\n"
        return f"File {self.name}:\n{fence}\n{body}{fence}"

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "text"}


def read(path: str, stdin: BinaryIO | None = None) -> Attachment:
    """A text file (``-`` for standard input) as an attachment; one clear line when it cannot be one."""
    if path == "-":
        data = (stdin or sys.stdin.buffer).read(MAX_FILE_BYTES + 1)
        return _decode(STDIN_NAME, data)
    file = Path(path).expanduser()
    if file.is_dir():
        raise AttachmentError(f"{path} is a folder; attach files one by one")
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _decode(file.name, data)


def _decode(name: str, data: bytes) -> Attachment:
    if len(data) > MAX_FILE_BYTES:
        raise AttachmentError(f"{name} is larger than {MAX_FILE_BYTES // 2**20} MiB; too big to attach")
    if b"\0" in data[:8192]:
        raise AttachmentError(f"{name} is a binary file; only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachmentError(f"{name} is not UTF-8 text (binary?); only text files can be attached") from None
    return Attachment(name, text.removeprefix("\ufeff"), len(data), hashlib.sha256(data).hexdigest())


def compose(question: str, attachments: list[Attachment]) -> str:
    """The message: every file's block, then the question."""
    return "\n\n".join([*(a.block() for a in attachments), question])


def question_of(message: str, attachments: list[Attachment]) -> str:
    """The question part of a message built by ``compose``."""
    return message.removeprefix(compose("", attachments)) if attachments else message


def unpack(message: str, names: list[str]) -> tuple[list[str], str]:
    """The inverse of ``compose``: the texts of the files named ``names`` and the question.

    A message that does not start with those blocks (edited elsewhere) comes back whole as the question."""
    texts: list[str] = []
    rest = message
    for name in names:
        opening = re.match(re.escape(f"File {name}:\n") + r"(`{3,})\n", rest)
        closing = re.compile("\n" + opening.group(1) + "(?!`)") if opening else None
        end = closing.search(rest, opening.end() - 1) if opening and closing else None
        if opening is None or end is None:
            return [], message
        texts.append(rest[opening.end() : end.start() + 1])
        rest = rest[end.end() :].removeprefix("\n\n")
    return texts, rest


def count_and_check(attachments: list[Attachment], question: str, engine: Any, max_tokens: int) -> None:
    """Count each block's tokens with the answering model; refuse a message that cannot fit its context.

    The engine keeps ``min(max_tokens, n_ctx // 2)`` tokens for the answer (see ``Engine._fit``).
    """
    tokenize = engine.model.tokenize
    for attachment in attachments:
        attachment.tokens = len(tokenize(attachment.block(), first=False))
    total = len(tokenize(compose(question, attachments), first=False))
    budget = engine.n_ctx - min(max_tokens, engine.n_ctx // 2)
    if total > budget:
        sizes = ", ".join(f"{a.name} {a.tokens}" for a in attachments)
        raise AttachmentError(
            f"the message with its files is {total} tokens ({sizes}) but only {budget} fit the model's "
            f"{engine.n_ctx}-token context beside the answer; attach less, or raise n_ctx"
        )


# -- the store's side: one record per file beside the message (``Store.add_attachments``)
def save(store: Store, message_id: int, attachments: list[Attachment]) -> None:
    """Record the attachments of a stored message (name, size, sha256, tokens)."""
    store.add_attachments(message_id, [AttachmentRecord(**a.record()) for a in attachments])


def of_message(store: Store, message_id: int) -> list[AttachmentRecord]:
    """The attachments recorded with a message (empty if none)."""
    return store.attachments(message_id)
