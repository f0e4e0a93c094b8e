"""Keep the app's database up to date with your files: incremental, bounded in memory, consistent if killed.

A file whose size and mtime are unchanged is not read; one whose bytes hash the same is not re-chunked; a file
gone from an indexed folder is dropped. Files are streamed (one folder listing and one file at a time), passages
are embedded in batches, and each batch's files are written in one transaction: a file is in the index whole
or not at all, whenever the process stops. What cannot be read is skipped with its reason (``reader``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant import AssistantError
from assistant.documents import embedding
from assistant.documents.chunking import Chunk, chunks
from assistant.documents.reader import IGNORED_DIRS, Document, Skip, check, read
from assistant.storage import documents as doc_tables
from assistant.storage.documents import FileRow, NewFile

Progress = Callable[[int, int], None]
BATCH_CHUNKS = 64  # passages embedded together (and their files written in one transaction)
BATCH_FILES = 256  # at most this many files per transaction
SEEN_TEXTS = 4096  # passages remembered with their vectors within a run (then forgotten: memory stays bounded)
MAX_SKIPS_KEPT = 1000  # reasons kept in a report; the rest are counted


class DocumentsError(AssistantError):
    """A path to index or remove is not there, or names nothing indexed."""


@dataclass
class IndexReport:
    """What one :func:`index_paths` run did. ``skipped`` holds (path, reason) for the first 1,000 skips."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    chunks: int = 0  # passages written
    bytes: int = 0  # of the files read and indexed
    seconds: float = 0.0

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPS_KEPT:
            self.skipped.append((str(path), reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": self.skipped_count,
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
            "chunks": self.chunks,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class _Pending:
    document: Document
    pieces: list[Chunk]
    replaces: bool  # the file was indexed before


def index_paths(
    store: Any,
    paths: Sequence[Path],
    progress: Progress | None = None,
    embedder: embedding.Embedder | None = None,
) -> IndexReport:
    """Index these files and folders (only what changed); ``progress(done, total)`` after each file."""
    started = time.perf_counter()
    roots = [root_of(p) for p in paths]
    report = IndexReport()
    total = sum(1 for root in roots for item in walk(root) if not isinstance(item, Skip))
    doc_tables.add_roots(store, [str(r) for r in roots], _now())
    writer = _Writer(store, embedder, report)
    done = 0
    for root in roots:
        known = _known(store, root)
        seen: set[str] = set()
        for item in walk(root):
            if isinstance(item, Skip):
                report.skip(item.path, item.reason)
                continue
            seen.add(str(item))
            _one(item, known.get(str(item)), writer, report)
            done += 1
            if progress:
                progress(done, total)
        writer.flush()
        gone = [row.id for path, row in known.items() if path not in seen or writer.dropped(path)]
        writer.remove(gone)
    writer.flush()
    report.seconds = time.perf_counter() - started
    return report


def _one(path: Path, row: FileRow | None, writer: _Writer, report: IndexReport) -> None:
    info = check(path)
    if isinstance(info, Skip):
        report.skip(path, info.reason)
        writer.drop(str(path))
        return
    if row and (row.size, row.mtime_ns) == (info.st_size, info.st_mtime_ns):
        report.unchanged += 1
        return
    document = read(path)
    if isinstance(document, Skip):
        report.skip(path, document.reason)
        writer.drop(str(path))
        return
    if row and row.sha256 == document.sha256:  # touched, not changed
        writer.touch(row.id, document)
        report.unchanged += 1
        return
    pieces = list(chunks(document.blocks))
    if not pieces:
        report.skip(path, "no text")
        writer.drop(str(path))
        return
    writer.add(_Pending(document, pieces, row is not None))


class _Writer:
    """Embeds queued files' passages in batches and writes each batch's files in one transaction."""

    def __init__(self, store: Any, embedder: embedding.Embedder | None, report: IndexReport) -> None:
        self.store = store
        self.embedder = embedder
        self.report = report
        self.queue: list[_Pending] = []
        self.touched: list[tuple[int, int]] = []
        self.dropped_paths: set[str] = set()
        self.seen: dict[str, np.ndarray] = {}

    def add(self, item: _Pending) -> None:
        self.queue.append(item)
        if sum(len(p.pieces) for p in self.queue) >= BATCH_CHUNKS or len(self.queue) >= BATCH_FILES:
            self.flush()

    def touch(self, file_id: int, document: Document) -> None:
        self.touched.append((document.mtime_ns, file_id))

    def drop(self, path: str) -> None:
        self.dropped_paths.add(path)

    def dropped(self, path: str) -> bool:
        return path in self.dropped_paths

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        touched, self.touched = self.touched, []
        if not queue and not touched:
            return
        texts = [f"{c.context}\n{c.text}" if c.context else c.text for p in queue for c in p.pieces]
        vectors = self._embed(texts)
        files, offset = [], 0
        for item in queue:
            doc = item.document
            rows = [
                (c.start_line, c.end_line, c.text, c.context, vectors[offset + i].astype(np.float16).tobytes())
                for i, c in enumerate(item.pieces)
            ]
            files.append(NewFile(str(doc.path), doc.kind, doc.size, doc.mtime_ns, doc.sha256, rows))
            offset += len(item.pieces)
        doc_tables.write_files(self.store, files, touched, _now())
        for item in queue:
            self.report.chunks += len(item.pieces)
            self.report.bytes += item.document.size
            if item.replaces:
                self.report.updated += 1
            else:
                self.report.added += 1

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts``; a passage met before in this run (boilerplate, copies) is not embedded again."""
        fresh = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if fresh:
            if len(self.seen) + len(fresh) > SEEN_TEXTS:
                self.seen = {t: self.seen[t] for t in texts if t in self.seen}
            vectors = (self.embedder or embedding.default()).embed(fresh)
            self.seen.update(zip(fresh, vectors, strict=True))
        return np.array([self.seen[t] for t in texts], dtype=np.float32).reshape(len(texts), embedding.DIM)

    def remove(self, file_ids: list[int]) -> None:
        doc_tables.delete_files(self.store, file_ids)
        self.report.removed += len(file_ids)


def root_of(path: Path | str) -> Path:
    """The absolute, resolved path of a file or folder to index; an error if it is not there."""
    given = Path(path).expanduser()
    try:
        resolved = given.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        why = getattr(exc, "strerror", None) or "not found"
        raise DocumentsError(f"cannot index {given}: {why}") from None
    return resolved


def walk(root: Path) -> Iterator[Path | Skip]:
    """The files under ``root`` (or ``root`` itself), depth first in name order; folders reached twice (a
    symlink loop) and unlistable ones are skips. Hidden entries, version control and tool caches are passed by."""
    if not root.is_dir():
        yield root
        return
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
        except OSError as exc:
            yield Skip(folder, f"cannot open folder: {exc.strerror or exc}")
            continue
        if (info.st_dev, info.st_ino) in visited:
            yield Skip(folder, "folder already indexed through another path (a symlink loop?)")
            continue
        visited.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            yield Skip(folder, f"cannot list folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if entry.name not in IGNORED_DIRS:
                    subfolders.append(Path(entry.path))
            else:
                yield Path(entry.path)
        stack.extend(reversed(subfolders))


def remove_paths(store: Any, paths: Sequence[Path | str]) -> int:
    """Drop the indexed files at or under these paths (and the files and folders added as such): how many
    files. An error names a path under which nothing is indexed (nothing is removed then)."""
    targets = []
    for path in paths:
        given = Path(path).expanduser()
        target = str(given.resolve() if given.exists() else given.absolute())
        if not doc_tables.files_under(store, target) and target not in {r.path for r in doc_tables.roots(store)}:
            raise DocumentsError(f"nothing indexed under {target} (see assistant docs list)")
        targets.append(target)
    return sum(doc_tables.remove_under(store, target)[0] for target in targets)


def _known(store: Any, root: Path) -> dict[str, FileRow]:
    return {row.path: row for row in doc_tables.files_under(store, str(root))}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
