"""``@path`` in the message box: which words name files to attach, and path completion for them.

A word starting with ``@`` is a file only when it names a file that exists (Tab completes one); anything else
(``@app.route``, ``@types/node``, ``@someone``) is text, and ``@@`` writes an ``@`` that is never a file.
Trailing punctuation (``@notes.txt.``) is not part of the path when the file exists without it; a path with
spaces goes in quotes (``@"my notes.txt"``, as the attach dialog writes it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from textual.suggester import Suggester

MENTION = re.compile(r'(?<!\S)@(?:"([^"\n]+)"|(\S+))')
TRAILING = ".,;:!?)]}'\""


def _path_of(word: str) -> str | None:
    """The file an ``@word`` names (without trailing punctuation), or None if it is text."""
    if word.startswith("@"):  # '@@': an escaped '@'
        return None
    for candidate in dict.fromkeys((word, word.rstrip(TRAILING))):
        if candidate and Path(candidate).expanduser().is_file():
            return candidate
    return None


def looks_like_path(word: str) -> bool:
    """Whether an ``@word`` reads like a path (one that names no file is worth a word above the box: a typo?)."""
    stripped = word.rstrip(TRAILING)
    return not word.startswith("@") and ("/" in stripped or "." in stripped.strip("."))


def not_files(text: str) -> list[str]:
    """The path-like ``@words`` of ``text`` that name no file (they go as text), each once."""
    words = [m.group(1) or m.group(2) for m in MENTION.finditer(text)]
    return list(dict.fromkeys(w.rstrip(TRAILING) for w in words if looks_like_path(w) and _path_of(w) is None))


def split(text: str) -> tuple[str, list[str]]:
    """(the question with each ``@path`` replaced by the file's name and ``@@`` by ``@``, the paths in order, each
    once)."""
    paths: list[str] = []

    def name(match: re.Match[str]) -> str:
        quoted, word = match.group(1), match.group(2)
        if quoted is not None:
            path = quoted if Path(quoted).expanduser().is_file() else None
        elif word.startswith("@"):  # '@@x' is the text '@x'
            return word
        else:
            path = _path_of(word)
        if path is None:
            return match.group(0)
        if path not in paths:
            paths.append(path)
        return Path(path).name + ("" if quoted is not None else word[len(path) :])

    return MENTION.sub(name, text), paths


def mention(path: str) -> str:
    """How ``path`` is written in a message: ``@path``, in quotes when it has spaces."""
    return f'@"{path}"' if any(c.isspace() for c in path) else f"@{path}"


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


def partial(text: str) -> str | None:
    """The path of the ``@path`` that ``text`` ends with (being typed); None when it ends otherwise (or in ``@@``)."""
    word = text.rsplit(None, 1)[-1] if text.strip() and not text[-1].isspace() else ""
    return word[1:] if word.startswith("@") and not word.startswith("@@") else None


def typing(text: str) -> tuple[str, list[str]] | None:
    """(path, completions) when ``text`` ends with an ``@path`` that names no file yet but starts some."""
    path = partial(text)
    if not path or Path(path).expanduser().is_file():
        return None
    found = complete(path)
    return (path, found) if found else None


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
