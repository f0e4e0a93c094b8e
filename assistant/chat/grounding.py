"""Answers grounded in your documents: what a turn adds to its question from the files it was given.

Documents that fit the window beside the conversation go in whole, as ``ask -f`` puts files in (``attach``).
Otherwise they are indexed (incrementally: ``assistant.documents.index``) and the chunks that best match the
latest question, and the question before it, go in with their sources (file and line span), as many as the
token budget holds. The stored question stays the question: what was added is rebuilt from the files at each
turn, and the answer keeps its sources (``Store`` column ``messages.sources``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat import attach
from assistant.chat.attach import Attachment, AttachmentError
from assistant.models.engine import Engine

MARGIN_TOKENS = 16  # kept free beside the budget: the chat template's tokens around the grounded message
MAX_WHOLE_FILES = 64  # a folder with more files than this is never tried whole
CHARS_PER_TOKEN = 8  # more characters than this per token of room: not tried whole (no tokenizing needed)
SEARCH_LIMIT = 8  # chunks asked of each search
INDEXED_ONLY = {".pdf"}  # files whose text only the index extracts: a folder holding one is always retrieved
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Source:
    """Where an added passage comes from: a file and its line span (a whole file: from 1 to its last line)."""

    path: str
    start_line: int
    end_line: int
    score: float = 0.0  # the search's score (0 for a whole file)

    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass
class Grounding:
    """What a turn adds to its question: ``mode`` is ``whole``, ``retrieved`` or ``none`` (nothing matched or fit)."""

    mode: str = "none"
    context: str = ""  # the text put before the question
    sources: list[Source] = field(default_factory=list)
    tokens: int = 0  # of ``context``
    notes: list[str] = field(default_factory=list)

    def message(self, question: str) -> str:
        """The message the model sees: the added text, then the question."""
        return f"{self.context}\n\n{question}" if self.context else question

    def records(self) -> list[dict[str, Any]]:
        """The sources as stored and shown (``--json``, the server's note)."""
        return [{**asdict(s), "score": round(s.score, 4)} for s in self.sources]

    def dumps(self) -> str:
        return json.dumps({"mode": self.mode, "sources": self.records()}) if self.sources else ""


def stored_sources(value: str) -> list[Source]:
    """The sources stored with an answer (``Grounding.dumps``); none for an answer without them."""
    if not value:
        return []
    try:
        return [Source(**s) for s in json.loads(value)["sources"]]
    except (ValueError, TypeError, KeyError):
        return []


def ground(
    store: Any,
    paths: Sequence[Path],
    history: list[dict[str, str]],
    engine: Engine,
    max_tokens: int,
    progress: Progress | None = None,
) -> Grounding:
    """The grounding of the last message of ``history`` (the question, not yet grounded) in the files at ``paths``."""
    question = history[-1]["content"]
    n_ctx = engine.n_ctx
    usable = n_ctx - min(max_tokens, n_ctx // 2) - MARGIN_TOKENS  # the answer's reserve, as Engine.stream keeps it
    beside = usable - _tokens(engine, history)  # room beside the whole conversation
    latest = [m for m in history[:1] if m["role"] == "system"] + history[-1:]
    room = usable - _tokens(engine, latest)  # room beside the system prompt and the question alone
    if room <= 0:
        return Grounding(notes=["no room for your documents beside the question"])
    whole = _whole(paths, engine, question, beside)
    if whole is not None:
        return whole
    return retrieve(store, paths, history, engine, min(room, max(beside, room // 2)), progress)


def _tokens(engine: Engine, messages: list[dict[str, str]]) -> int:
    return len(engine.model.tokenize(engine.model.template.render(messages), first=True))


def files_under(paths: Sequence[Path], limit: int) -> list[Path] | None:
    """The regular files at ``paths``, walked as the index walks them (hidden entries, version control and caches
    passed by; symlink loops cut); None when there are more than ``limit``, or a file only the index can read."""
    from assistant.documents.index import walk  # deliberately lazy: as in ``retrieve``

    found: list[Path] = []
    for root in paths:
        for entry in walk(Path(root).expanduser()):
            if isinstance(entry, Path) and entry.is_file():  # a FIFO or a device is left to the index (it skips it)
                found.append(entry)
                if len(found) > limit:
                    return None
    if any(f.suffix.lower() in INDEXED_ONLY for f in found):
        return None
    return found


def _whole(paths: Sequence[Path], engine: Engine, question: str, room: int) -> Grounding | None:
    """Every file whole, as ``ask -f`` sends them, when they fit ``room`` tokens; else None."""
    files = files_under(paths, MAX_WHOLE_FILES)
    if not files:
        return None
    try:
        if sum(f.stat().st_size for f in files) > room * CHARS_PER_TOKEN:
            return None
    except OSError:
        return None
    read: list[tuple[Path, Attachment]] = []
    skipped: list[str] = []
    for file in files:
        try:
            read.append((file, attach.read(str(file))))
        except AttachmentError as exc:  # binary, unreadable: the index would skip it too
            skipped.append(str(exc))
    if not read:
        return None
    context = attach.compose("", [a for _, a in read]).rstrip()
    tokens = len(engine.model.tokenize(context, first=False))
    if tokens > room:
        return None
    sources = [Source(str(f.resolve()), 1, max(1, len(a.text.splitlines()))) for f, a in read]
    return Grounding("whole", context, sources, tokens, [f"skipped: {s}" for s in skipped])


def retrieve(
    store: Any,
    paths: Sequence[Path],
    history: list[dict[str, str]],
    engine: Engine,
    budget: int,
    progress: Progress | None = None,
) -> Grounding:
    """Index ``paths`` (only what changed), then add the best chunks for the question within ``budget`` tokens."""
    from assistant.documents.index import index_paths  # deliberately lazy: the index's search stack loads here
    from assistant.documents.search import search

    roots = [Path(p).expanduser().resolve() for p in paths]
    index_paths(store, roots, progress)
    questions = [m["content"] for m in history if m["role"] == "user"]
    latest = questions[-1]
    hits = search(store, latest, limit=SEARCH_LIMIT, paths=roots)
    if len(questions) > 1:  # a follow-up ("and how do I undo it?") leans on the question before it
        hits = _interleave(hits, search(store, f"{questions[-2]}\n{latest}", limit=SEARCH_LIMIT, paths=roots))
    blocks: list[str] = []
    sources: list[Source] = []
    used = len(engine.model.tokenize(HEADER, first=False))
    for hit in hits:
        block = _block(len(blocks) + 1, hit.path, hit.start_line, hit.end_line, hit.text)
        cost = len(engine.model.tokenize(block, first=False)) + 2
        if used + cost > budget:
            continue  # a shorter chunk further down may still fit
        blocks.append(block)
        sources.append(Source(hit.path, hit.start_line, hit.end_line, hit.score))
        used += cost
    if not blocks:
        why = "no passage of your documents fits the window beside the question" if hits else "nothing matched"
        return Grounding(notes=[f"documents: {why}"])
    return Grounding("retrieved", "\n\n".join([HEADER, *blocks]), sources, used)


def passages(store: Any, paths: Sequence[Path], progress: Progress | None = None) -> list[tuple[Source, str]]:
    """Every passage of the documents at ``paths`` (indexed first, only what changed), in file and line order, with
    its source: what ``distill persona`` makes a persona's questions from, passage by passage."""
    from assistant.documents.index import index_paths  # deliberately lazy: as in ``retrieve``
    from assistant.storage.documents import chunks_under

    roots = [Path(p).expanduser().resolve() for p in paths]
    index_paths(store, roots, progress)
    found = dict.fromkeys(row for root in roots for row in chunks_under(store, str(root)))  # a file given twice: once
    return [(Source(path, start, end), text) for path, start, end, text in found]


HEADER = "Excerpts from your documents (numbered; use them to answer the question below):"


def _block(number: int, path: str, start: int, end: int, text: str) -> str:
    """One passage: its number, file and lines, then its text fenced so nothing inside can close it."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    body = text if text.endswith("\n") else f"{text}\n"
    return f"[{number}] {Path(path).name}, lines {start}-{end}:\n{fence}\n{body}{fence}"


def _interleave(first: list[Any], second: list[Any]) -> list[Any]:
    """Both rankings merged, alternating from ``first``; a chunk met twice keeps its first place."""
    merged: dict[tuple[str, int, int], Any] = {}
    for pair in zip(first, second, strict=False):
        for hit in pair:
            merged.setdefault((hit.path, hit.start_line, hit.end_line), hit)
    longer = first if len(first) > len(second) else second
    for hit in longer[min(len(first), len(second)) :]:
        merged.setdefault((hit.path, hit.start_line, hit.end_line), hit)
    return list(merged.values())
