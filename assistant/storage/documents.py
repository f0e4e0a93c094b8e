"""The tables of your documents' index (``doc_roots``, ``doc_files``, ``doc_chunks`` and its FTS5 index; step
m009): every statement ``assistant.documents`` needs, as functions of the store, which owns the connection.

Writes go through :meth:`Store.atomic` (one transaction each), reads through :meth:`Store.read`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.storage.store import Store


@dataclass(frozen=True)
class FileRow:
    """An indexed file as stored."""

    id: int
    path: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    chunks: int
    indexed: str


@dataclass(frozen=True)
class NewFile:
    """A file to write with its passages: (start line, end line, text, context, vector bytes) each."""

    path: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    chunks: list[tuple[int, int, str, str, bytes]]


@dataclass(frozen=True)
class RootRow:
    """A file or folder added to the index, with what it holds now."""

    path: str
    added: str
    files: int
    chunks: int
    bytes: int


def under(path: str, column: str = "path") -> tuple[str, list[Any]]:
    """SQL matching ``path`` itself or anything below it (no LIKE: names may hold % and _)."""
    prefix = path.rstrip("/") + "/"
    return f"({column} = ? OR substr({column}, 1, ?) = ?)", [path, len(prefix), prefix]


def add_roots(store: Store, paths: Iterable[str], stamp: str) -> None:
    rows = [(p, stamp) for p in paths]
    store.atomic(lambda: store.db.conn.executemany("INSERT OR IGNORE INTO doc_roots VALUES (?, ?)", rows))


def files_under(store: Store, path: str) -> list[FileRow]:
    where, args = under(path)
    sql = f"SELECT id, path, kind, size, mtime_ns, sha256, chunks, indexed FROM doc_files WHERE {where} ORDER BY path"
    return [FileRow(*row) for row in store.read(lambda: store.db.conn.execute(sql, args).fetchall())]


def chunks_under(store: Store, path: str) -> list[tuple[str, int, int, str]]:
    """Every passage of the files at or under ``path``: (file path, start line, end line, text), in file and line
    order (what ``distill persona`` makes its questions from, passage by passage)."""
    where, args = under(path, "f.path")
    sql = (
        "SELECT f.path, c.start_line, c.end_line, c.text FROM doc_chunks c JOIN doc_files f ON f.id = c.file_id "
        f"WHERE {where} ORDER BY f.path, c.start_line, c.id"
    )
    return [tuple(row) for row in store.read(lambda: store.db.conn.execute(sql, args).fetchall())]


def file_ids_under(store: Store, path: str) -> set[int]:
    where, args = under(path)
    return {
        row[0] for row in store.read(lambda: store.db.conn.execute(f"SELECT id FROM doc_files WHERE {where}", args))
    }


def write_files(store: Store, files: Sequence[NewFile], touched: Sequence[tuple[int, int]], stamp: str) -> None:
    """In one transaction: each file replaced whole (its old passages go with it), and the mtimes of files
    whose bytes did not change (``touched``: (mtime_ns, file id))."""

    def write() -> None:
        conn = store.db.conn
        conn.executemany("UPDATE doc_files SET mtime_ns = ? WHERE id = ?", touched)
        for f in files:
            conn.execute("DELETE FROM doc_files WHERE path = ?", [f.path])
            file_id = conn.execute(
                "INSERT INTO doc_files (path, kind, size, mtime_ns, sha256, chunks, indexed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [f.path, f.kind, f.size, f.mtime_ns, f.sha256, len(f.chunks), stamp],
            ).lastrowid
            conn.executemany(
                "INSERT INTO doc_chunks (file_id, start_line, end_line, text, context, vector) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(file_id, *chunk) for chunk in f.chunks],
            )

    store.atomic(write)


def delete_files(store: Store, file_ids: Sequence[int]) -> None:
    for start in range(0, len(file_ids), 500):
        batch = list(file_ids[start : start + 500])
        marks = ",".join("?" * len(batch))
        store.atomic(lambda: store.db.conn.execute(f"DELETE FROM doc_files WHERE id IN ({marks})", batch))


def remove_under(store: Store, path: str) -> tuple[int, int]:
    """Drop the files and the added roots at or under ``path``: (files, roots) removed."""
    where, args = under(path)

    def delete() -> tuple[int, int]:
        conn = store.db.conn
        files = conn.execute(f"DELETE FROM doc_files WHERE {where}", args).rowcount
        return int(files), int(conn.execute(f"DELETE FROM doc_roots WHERE {where}", args).rowcount)

    return store.atomic(delete)


def roots(store: Store) -> list[RootRow]:
    """The added files and folders, each with its files, passages and bytes now."""

    def read() -> list[RootRow]:
        found = []
        for path, added in store.db.conn.execute("SELECT path, added FROM doc_roots ORDER BY path").fetchall():
            where, args = under(path)
            files, chunks, size = store.db.conn.execute(
                f"SELECT count(*), coalesce(sum(chunks), 0), coalesce(sum(size), 0) FROM doc_files WHERE {where}", args
            ).fetchone()
            found.append(RootRow(path, added, files, chunks, size))
        return found

    return store.read(read)


def fts_ranking(store: Store, match: str, allowed: set[int] | None, depth: int) -> list[tuple[int, float]]:
    """The best passages for an FTS5 query by BM25 (text weighted 1, headings 0.5): (chunk id, -bm25)."""
    sql = "SELECT rowid, bm25(doc_chunks_fts, 1.0, 0.5) AS s FROM doc_chunks_fts WHERE doc_chunks_fts MATCH ?"
    args: list[Any] = [match]
    if allowed is not None:
        sql += " AND rowid IN (SELECT id FROM doc_chunks WHERE file_id IN (SELECT value FROM json_each(?)))"
        args.append("[" + ",".join(map(str, sorted(allowed))) + "]")
    sql += " ORDER BY s LIMIT ?"
    args.append(depth)
    rows = store.read(lambda: store.db.conn.execute(sql, args).fetchall())
    return [(int(rowid), -float(score)) for rowid, score in rows]


def chunk_rows(store: Store, chunk_ids: Sequence[int]) -> dict[int, tuple[str, int, int, str]]:
    """Chunk id -> (file path, start line, end line, text), for the ids still there."""
    marks = ",".join("?" * len(chunk_ids))
    sql = (
        "SELECT c.id, f.path, c.start_line, c.end_line, c.text FROM doc_chunks c "
        f"JOIN doc_files f ON f.id = c.file_id WHERE c.id IN ({marks})"
    )
    found = store.read(lambda: store.db.conn.execute(sql, list(chunk_ids)).fetchall())
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in found}


def chunks_version(store: Store) -> tuple[int, int]:
    """(largest passage id, files removed so far): changes whenever a file is added, replaced or removed
    (passage ids are never reused). Two index lookups, whatever the index holds."""
    sql = "SELECT (SELECT max(id) FROM doc_chunks), (SELECT removals FROM doc_state WHERE id = 1)"
    largest, removals = store.read(lambda: store.db.conn.execute(sql).fetchone())
    return int(largest or 0), int(removals or 0)


def term_counts(store: Store, words: Sequence[str]) -> dict[str, int]:
    """How many passages hold each of ``words``, as the index sees them (stemmed: ``views`` counts ``view``)."""
    stemmed = stems(words)
    terms = sorted(set(stemmed.values()))  # "badge" and "badges" are one term
    sql = f"SELECT term, doc FROM doc_chunks_vocab WHERE term IN ({','.join('?' * len(terms))})"
    counts = dict(store.read(lambda: store.db.conn.execute(sql, terms).fetchall()))
    return {word: counts.get(stem, 0) for word, stem in stemmed.items()}


def stems(words: Sequence[str]) -> dict[str, str]:
    """Each word -> its term in the index: the same FTS5 ``porter`` tokenizer, in a throwaway in-memory table
    (0.2 ms; a word it drops, such as punctuation, is left out)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(w, tokenize='porter')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        conn.executemany("INSERT INTO t(rowid, w) VALUES (?, ?)", enumerate(words))
        return {words[doc]: term for doc, term in conn.execute("SELECT doc, term FROM v WHERE offset = 0")}
    finally:
        conn.close()


def vectors(store: Store) -> tuple[list[int], list[int], bytes]:
    """Every passage's id and file id, and their vectors' bytes end to end (in the same order)."""

    def read() -> tuple[list[int], list[int], bytes]:
        ids: list[int] = []
        files: list[int] = []
        blobs: list[bytes] = []
        for chunk_id, file_id, blob in store.db.conn.execute("SELECT id, file_id, vector FROM doc_chunks"):
            ids.append(chunk_id)
            files.append(file_id)
            blobs.append(blob)
        return ids, files, b"".join(blobs)

    return store.read(read)
