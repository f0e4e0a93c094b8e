"""What the command groups share: the parser and its types, the history database, text arguments, the persona."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from assistant.chat import persona as personas
from assistant.chat.persona import Persona
from assistant.config import database_path
from assistant.text_safety import sanitize

if TYPE_CHECKING:
    from assistant.storage.store import Store

Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse has no public name for the object add_subparsers() returns


class Parser(argparse.ArgumentParser):
    """The parser of ``assistant`` and (by argparse's ``parser_class`` default) of each subcommand: a usage error
    is one line and exit 1, as every other error (``assistant: error: ask: argument --max-tokens: invalid int value:
    'lots' (see assistant ask --help)``), not argparse's usage block and exit 2."""

    tool = "assistant"  # the program's name, which each subcommand's ``prog`` starts with

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(self.tool).strip()
        line = f"{command}: {message}" if command else message
        self.exit(1, f"{self.tool}: error: {' '.join(sanitize(line).split())} (see {self.prog} --help)\n")


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
