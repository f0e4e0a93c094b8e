"""Find passages of your documents: full text (FTS5, BM25) and vectors, merged by reciprocal rank fusion.

Each ranking keeps its best ``DEPTH`` passages; a passage scores ``sum(1 / (RRF_K + rank))`` over the rankings
it is in (Cormack et al., 2009), so a passage both find ranks above one only one finds; the two rankings run at
once. Full text matches any of the question's words; in a large index, only its rarest few, none held by more
than ``COMMON_FLOOR`` passages (their BM25 weight is small, their cost large), or its rarest two if all are
(counted as the index stems them: ``views`` is ``view``). Vectors are held in memory per
store (float32, 1.5 KB a passage), reloaded when the index changes, and compared exactly with a single-threaded
numpy ``einsum``: at 100k passages it measured within noise of BLAS (0.89-1.22x over three runs on a busy
machine, without threads that wait for a core) and of a sign-bit prefilter (which agreed on 99.7 % of the top
5), and sqlite-vec cannot load in this Python's SQLite module (no ``enable_load_extension``): see
``bench/bench_retrieval.py``.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.documents import embedding
from assistant.storage import documents as doc_tables

DEPTH = 50  # passages taken from each ranking
RRF_K = 60
COMMON_FLOOR = 5000  # a word in more passages than this is left out of the full-text query (unless all are)
LARGE_INDEX_WORDS = 4  # and once one is, only the rarest few words are searched
MODES = ("fusion", "bm25", "vector")
STOPWORDS = frozenset(
    "a about an and are as at be but by can do does for from had has have how i if in into is it its me my no not "
    "of on or our so than that the their them then there these they this to was we were what when where which who "
    "why will with would you your".split()
)


@dataclass(frozen=True)
class Hit:
    """A passage found: its file, its lines (from 1, inclusive), its text, and its score (higher is better)."""

    path: str
    start_line: int
    end_line: int
    text: str
    score: float


def search(
    store: Any,
    query: str,
    limit: int = 5,
    paths: Sequence[Path] | None = None,
    *,
    mode: str = "fusion",
    embedder: embedding.Embedder | None = None,
) -> list[Hit]:
    """The ``limit`` best passages for ``query`` (only from files at or under ``paths`` if given).

    ``mode`` ``bm25`` or ``vector`` ranks by one of the two alone (the bench compares them).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if limit <= 0 or not query.strip():
        return []
    allowed = _allowed_files(store, paths) if paths is not None else None
    if allowed is not None and not allowed:
        return []
    vectors = _vectors(store)
    if mode != "bm25":
        vectors.refresh(store)  # before the full-text query takes the store
    full_text: list[Any] = []
    worker = None
    if mode in ("fusion", "bm25"):  # SQLite, the model and numpy all let go of the GIL: both rankings at once
        worker = threading.Thread(target=_collect, args=(full_text, store, query, allowed), daemon=True)
        worker.start()
    nearest = []
    if mode in ("fusion", "vector"):
        nearest = vectors.nearest(query, allowed, embedder or embedding.for_queries())
    if worker:
        worker.join()
        if full_text and isinstance(full_text[0], BaseException):
            raise full_text[0]
    rankings = [r for r, used in ((full_text, mode != "vector"), (nearest, mode != "bm25")) if used]
    if mode == "fusion":
        scores: dict[int, float] = {}
        for ranking in rankings:
            for rank, (chunk_id, _) in enumerate(ranking, 1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    else:
        best = rankings[0][:limit]
    return _hits(store, best)


def _collect(into: list[Any], store: Any, query: str, allowed: set[int] | None) -> None:
    """The full-text ranking into ``into`` (in a thread): its rows, or the exception that stopped it."""
    try:
        into.extend(_bm25(store, query, allowed))
    except BaseException as exc:  # handed to the caller's thread, raised there
        into[:] = [exc]


def query_words(query: str) -> list[str]:
    """The question's words for full-text search: common English words dropped unless nothing else is left."""
    words = re.findall(r"\w+", query.lower())
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:32]


def fts_match(words: list[str]) -> str:
    """An FTS5 query matching any of ``words``."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _bm25(store: Any, query: str, allowed: set[int] | None) -> list[tuple[int, float]]:
    words = query_words(query)
    if not words:
        return []
    counts = doc_tables.term_counts(store, words)
    if max(counts.values(), default=0) > COMMON_FLOOR:  # a large index: its commonest words cost the most
        rarest = sorted(words, key=lambda w: counts.get(w, 0))
        words = [w for w in rarest if counts.get(w, 0) <= COMMON_FLOOR][:LARGE_INDEX_WORDS] or rarest[:2]
    return doc_tables.fts_ranking(store, fts_match(words), allowed, DEPTH)


def _allowed_files(store: Any, paths: Sequence[Path]) -> set[int]:
    """The ids of indexed files at or under any of ``paths`` (as given and resolved)."""
    ids: set[int] = set()
    for path in paths:
        given = Path(path).expanduser()
        for form in {str(given.absolute()), str(given.resolve())}:
            ids |= doc_tables.file_ids_under(store, form)
    return ids


def _hits(store: Any, best: list[tuple[int, float]]) -> list[Hit]:
    if not best:
        return []
    rows = doc_tables.chunk_rows(store, [i for i, _ in best])
    return [Hit(*rows[i], score) for i, score in best if i in rows]  # a file re-indexed meanwhile: gone


class _Vectors:
    """One store's passage vectors in memory, reloaded when the index changed (its largest id or count)."""

    def __init__(self) -> None:
        self.version: tuple[int, int] = (-1, -1)
        self.ids = np.zeros(0, dtype=np.int64)
        self.files = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, embedding.DIM), dtype=np.float32)
        self.lock = threading.Lock()

    def refresh(self, store: Any) -> None:
        with self.lock:
            self._refresh(store)

    def _refresh(self, store: Any) -> None:
        version = doc_tables.chunks_version(store)
        if version == self.version:
            return
        ids, files, blob = doc_tables.vectors(store)
        self.ids = np.array(ids, dtype=np.int64)
        self.files = np.array(files, dtype=np.int64)
        self.matrix = np.frombuffer(blob, dtype=np.float16).reshape(len(ids), embedding.DIM).astype(np.float32)
        self.version = version

    def nearest(self, query: str, allowed: set[int] | None, embedder: embedding.Embedder) -> list[tuple[int, float]]:
        """The passages nearest ``query`` as of the last :meth:`refresh`."""
        vector = embedder.embed([query])[0]
        with self.lock:
            rows = None if allowed is None else np.flatnonzero(np.isin(self.files, list(allowed)))
            matrix = self.matrix if rows is None else self.matrix[rows]
            scores = np.einsum("ij,j->i", matrix, vector)  # one thread, no BLAS: see the module's doc
            top = np.argpartition(-scores, DEPTH)[:DEPTH] if len(scores) > DEPTH else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            ids = self.ids if rows is None else self.ids[rows]
            return [(int(ids[i]), float(scores[i])) for i in top]


_CACHES: weakref.WeakKeyDictionary[Any, _Vectors] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _vectors(store: Any) -> _Vectors:
    with _CACHES_LOCK:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = _Vectors()
        return cache
