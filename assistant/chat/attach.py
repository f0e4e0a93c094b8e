"""Files in the conversation: read a text file, put it in the message as a delimited block, record it.

A file is read whole (no silent cut) and refused with one line when it is unreadable, binary
or does not fit the model's context. The message sent holds each file as a block naming it,
fenced so that nothing inside the file can close the block early; the store keeps each
attachment's name, size, sha256 and token count beside the message (``Store.add_attachments``),
while the text sent is the message itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from assistant import AssistantError
from assistant.storage.store import AttachmentRecord, Store

MAX_FILE_BYTES = 8 * 2**20  # nothing bigger fits any context this app runs; refused before tokenizing
PIPE_IDLE_S = 10.0  # a pipe (``-f <(cmd)``, a FIFO) that stays silent this long is given up, never a hang
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
    try:
        data = _read_capped(file, path)
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _decode(file.name, data)


def _read_capped(file: Path, shown: str) -> bytes:
    """At most ``MAX_FILE_BYTES`` + 1 bytes (to tell it is too big) of a regular file or a pipe (``-f <(cmd)``).

    A folder, a device (``/dev/tty``, ``/dev/zero``: endless or interactive), or a socket is refused unread; a pipe
    is read with a deadline: ``PIPE_IDLE_S`` without a byte (nobody writing) gives up rather than hang.
    """
    kind = _kind(os.stat(file).st_mode)
    if kind == "folder":
        raise AttachmentError(f"{shown} is a folder; attach files one by one")
    if kind not in ("file", "pipe"):
        raise AttachmentError(f"{shown} is a {kind}, not a file; only text files can be attached")
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # opening a pipe nobody writes to would wait
    try:
        if _kind(os.fstat(fd).st_mode) == "pipe":
            return _read_pipe(fd, shown)
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "pipe"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def _read_pipe(fd: int, shown: str) -> bytes:
    """A pipe's bytes until its writer closes it (or the cap); a pipe silent for ``PIPE_IDLE_S`` is given up."""
    chunks, size = [], 0
    while size <= MAX_FILE_BYTES:
        if not select.select([fd], [], [], PIPE_IDLE_S)[0]:
            raise AttachmentError(f"{shown}: nothing was written to this pipe for {PIPE_IDLE_S:.0f} s; gave up")
        try:
            chunk = os.read(fd, min(1 << 16, MAX_FILE_BYTES + 1 - size))
        except BlockingIOError:  # woken without data (a writer came and went)
            continue
        if not chunk:  # the writer closed it
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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
