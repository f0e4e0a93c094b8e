"""Shared by the documents tests: a store in the test's home, and the index's consistency checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from assistant.config import database_path
from assistant.storage.store import Store


def home_store() -> Store:
    return Store(database_path())


def consistent(db: Path) -> dict[str, int]:
    """Check the index read with plain sqlite3: SQLite's and FTS5's integrity checks pass, every file holds
    exactly the passages it records, no passage is orphaned. Returns the counts."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("INSERT INTO doc_chunks_fts (doc_chunks_fts, rank) VALUES ('integrity-check', 1)")
        wrong = conn.execute(
            "SELECT f.path, f.chunks, count(c.id) FROM doc_files f LEFT JOIN doc_chunks c ON c.file_id = f.id "
            "GROUP BY f.id HAVING count(c.id) != f.chunks"
        ).fetchall()
        assert wrong == []
        orphans = conn.execute("SELECT count(*) FROM doc_chunks WHERE file_id NOT IN (SELECT id FROM doc_files)")
        assert orphans.fetchone()[0] == 0
        files, chunks = conn.execute("SELECT count(*), coalesce(sum(chunks), 0) FROM doc_files").fetchone()
        return {"files": files, "chunks": chunks}
    finally:
        conn.close()
