"""Files named in the message box, read and counted with the answering model, cached per file.

Counting a big file takes seconds, so the hint above the box counts in a thread; the cache keeps one result per
(model, path, size, mtime): the hint, redone as the user types, and the send count each file once.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from assistant import AssistantError
from assistant.chat import attach
from assistant.chat.attach import Attachment
from assistant.chat.session import Session

KEEP = 16  # files kept counted (the oldest goes first)
Key = tuple[str, str, int, int]


class FileCounts:
    """Each named file read once and counted alone with the model (or its one-line refusal), by file version."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cache: dict[Key, Attachment | AssistantError] = {}
        self._lock = threading.Lock()  # two hints counting the same big file: the second waits for the first

    def read(self, path: str) -> Attachment:
        """The file, its ``tokens`` counted when the model is ready; raises the one line why it cannot go."""
        key = self._key(path)
        if key is None:
            return attach.read(path)  # gone or unreadable: attach says so
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = self._cache[key] = self._count(path)
                while len(self._cache) > KEEP:
                    del self._cache[next(iter(self._cache))]
        if isinstance(found, AssistantError):
            raise type(found)(*found.args)
        return replace(found)

    def _key(self, path: str) -> Key | None:
        try:
            stat = Path(path).expanduser().stat()
        except OSError:
            return None
        models = self.session.models
        return (models.name if models.ready else "", path, stat.st_size, stat.st_mtime_ns)

    def _count(self, path: str) -> Attachment | AssistantError:
        try:
            file = attach.read(path)
            if self.session.models.ready:
                self.session.check_attachments([file], "")  # counts it; one that cannot fit alone never will
            return file
        except AssistantError as exc:
            return exc
