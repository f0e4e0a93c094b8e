"""``@path`` in the message box: which words name files to attach, and path completion for them.

A word starting with ``@`` is a file when it names one that exists, or looks like a path (holds a
``/`` or a ``.``) so that a typo is refused with one line instead of going out as text; ``@someone``
stays text. Trailing punctuation (``@notes.txt.``) is not part of the path when the path exists without it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from textual.suggester import Suggester

MENTION = re.compile(r"(?<!\S)@(\S+)")
TRAILING = ".,;:!?)]}'\""


def _path_of(word: str) -> str | None:
    """The path an ``@word`` names, or None if it is just text."""
    if Path(word).expanduser().exists():
        return word
    stripped = word.rstrip(TRAILING)
    if stripped and Path(stripped).expanduser().exists():
        return stripped
    return stripped if stripped and ("/" in stripped or "." in stripped.strip(".")) else None


def split(text: str) -> tuple[str, list[str]]:
    """(the question with each ``@path`` replaced by the file's name, the paths in order, each once)."""
    paths: list[str] = []

    def name(match: re.Match[str]) -> str:
        path = _path_of(match.group(1))
        if path is None:
            return match.group(0)
        if path not in paths:
            paths.append(path)
        return Path(path).name + match.group(1)[len(path) :]

    return MENTION.sub(name, text), paths


def complete(partial: str, limit: int = 30) -> list[str]:
    """Paths starting with ``partial`` (folders end with '/'); hidden ones only when ``partial`` asks for them."""
    head, prefix = os.path.split(partial)
    folder = Path(os.path.expanduser(head or "."))
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        found.append(os.path.join(head, entry.name) + ("/" if entry.is_dir() else ""))
        if len(found) >= limit:
            break
    return found


def typing(text: str) -> tuple[str, list[str]] | None:
    """(path, completions) when ``text`` ends with an ``@path`` that names no file yet (it is being typed)."""
    word = text.rsplit(None, 1)[-1] if text.strip() and not text[-1].isspace() else ""
    if not word.startswith("@") or len(word) < 2 or Path(word[1:]).expanduser().is_file():
        return None
    found = complete(word[1:])
    return (word[1:], found) if found or _path_of(word[1:]) else None  # '@someone' is text


def tail(path: str) -> str:
    """The last part of a completion, as the candidates list shows it ('docs/' stays 'docs/')."""
    return path.rstrip("/").rsplit("/", 1)[-1] + ("/" if path.endswith("/") else "")


def common_prefix(candidates: list[str]) -> str:
    return os.path.commonprefix(candidates) if candidates else ""


class PathSuggester(Suggester):
    """Suggests the rest of a path in an ``Input`` (the attach dialog): the only match, or what all matches share."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        found = complete(value) if value else []
        suggestion = found[0] if len(found) == 1 else common_prefix(found)
        return suggestion if len(suggestion) > len(value) else None
