"""What the command groups share: the parser types, the history database, text arguments, the persona."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.chat import persona as personas
from assistant.chat.persona import Persona
from assistant.config import database_path

if TYPE_CHECKING:
    from assistant.storage.store import Store

Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse has no public name for the object add_subparsers() returns


def open_store(readonly: bool = False) -> Store:
    """The history database of this ``ASSISTANT_HOME``; ``readonly`` for commands that only read."""
    from assistant.storage.store import Store  # deliberately lazy: sqlite-utils (~150 ms) stays off `--help`

    return Store(database_path(), readonly=readonly)


def text_argument(value: str) -> str:
    """A text argument as typed: bytes that are not UTF-8 become U+FFFD instead of failing later."""
    return os.fsencode(value).decode("utf-8", errors="replace")


def persona_named(name: str | None) -> Persona | None:
    """The persona named by ``--persona``, if any (loaded and checked)."""
    return personas.load(name) if name else None
