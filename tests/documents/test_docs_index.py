"""The index of your files: structure-aware passages with line spans, incremental updates, search (BM25, vectors,
fusion) restricted by path, and the ``assistant docs`` commands end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_helpers import consistent, home_store

from assistant.config import database_path
from assistant.documents.chunking import MAX_CHARS, chunks
from assistant.documents.index import DocumentsError, index_paths
from assistant.documents.reader import Document, read
from assistant.documents.search import Hit, search

GUIDE = """# Garden guide

Intro to the garden and its beds.

## Tomatoes

Tomatoes need full sun, deep watering twice a week and a stake once they pass knee height.

```python
# a fenced block is kept whole

def water(plant):
    return plant

```

## Compost

A compost heap wants equal parts green and brown material, turned every two weeks.
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_markdown_passages_follow_headings_and_keep_their_lines(tmp_path: Path) -> None:
    doc = read(write(tmp_path / "guide.md", GUIDE))
    assert isinstance(doc, Document)
    headings = [(b.start_line, b.text, b.level) for b in doc.blocks if b.level]
    assert headings == [(1, "# Garden guide", 1), (5, "## Tomatoes", 2), (17, "## Compost", 2)]
    fence = next(b for b in doc.blocks if b.text.startswith("```python"))
    assert (fence.start_line, fence.end_line) == (9, 15)  # blank lines inside the fence do not split it
    lines = GUIDE.splitlines()
    for block in doc.blocks:  # every block's text is its file lines
        assert block.text.splitlines()[0].strip() == lines[block.start_line - 1].strip()
        assert block.text.splitlines()[-1].strip() == lines[block.end_line - 1].strip()


def test_long_sections_become_passages_of_200_to_400_tokens_with_overlap(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i} says " + " ".join(f"word{i}x{j}" for j in range(40)) for i in range(40)]
    text = "# Long\n\n" + "\n\n".join(paragraphs) + "\n\n## Next\n\nShort section.\n"
    doc = read(write(tmp_path / "long.md", text))
    assert isinstance(doc, Document)
    pieces = list(chunks(doc.blocks))
    body = pieces[:-1]
    assert all(len(p.text) <= MAX_CHARS for p in pieces)
    assert all(len(p.text) >= 800 for p in body[:-1]), [len(p.text) for p in body]  # ~200 tokens at least
    for before, after in zip(body, body[1:], strict=False):  # cut inside a section: the next starts with an overlap
        assert after.start_line <= before.end_line
        assert after.context == "Long"
    assert pieces[-1].context == "Long" and pieces[-1].text.startswith("## Next")  # a heading starts afresh
    file_lines = text.splitlines()
    for piece in pieces:  # the first line is its file line, or the end of it (an overlap of one long line)
        assert file_lines[piece.start_line - 1].endswith(piece.text.splitlines()[0])
        assert piece.text.splitlines()[-1] == file_lines[piece.end_line - 1]


def test_rst_html_and_code_structure(tmp_path: Path) -> None:
    rst = read(write(tmp_path / "a.rst", "Title\n=====\n\nText here.\n\nSection\n-------\n\nMore text.\n"))
    assert isinstance(rst, Document)
    assert [(b.text, b.level) for b in rst.blocks if b.level] == [("Title", 1), ("Section", 2)]
    page = "<html><head><style>p{}</style></head><body>\n<h1>Big &amp; bold</h1>\n<p>First\npara</p>\n"
    page += "<script>var x = 1;</script><p>Second</p></body></html>\n"
    html = read(write(tmp_path / "a.html", page))
    assert isinstance(html, Document)
    assert [(b.start_line, b.text, b.level) for b in html.blocks] == [
        (2, "Big & bold", 1),
        (3, "First para", 0),
        (5, "Second", 0),
    ]
    code = read(write(tmp_path / "a.py", "import os\n\n\ndef one():\n    return 1\n\n\nclass Two:\n    pass\n"))
    assert isinstance(code, Document)
    assert [(b.start_line, b.level) for b in code.blocks] == [(1, 0), (4, 7), (8, 7)]


def test_pdf_text_is_read(tmp_path: Path) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
         NameObject("/BaseFont"): NameObject("/Helvetica")}
    )  # fmt: skip
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 72 700 Td (Sourdough starters need feeding daily.) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(stream)
    with (tmp_path / "bread.pdf").open("wb") as handle:
        writer.write(handle)
    doc = read(tmp_path / "bread.pdf")
    assert isinstance(doc, Document) and doc.kind == "pdf"
    assert "Sourdough starters need feeding daily." in doc.blocks[0].text
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n not really a pdf")
    skip = read(tmp_path / "broken.pdf")
    assert not isinstance(skip, Document) and skip.reason.startswith("unreadable PDF")


def test_incremental_index_and_search_restricted_by_path(tmp_path: Path) -> None:
    store = home_store()
    garden = write(tmp_path / "docs" / "garden.md", GUIDE)
    write(tmp_path / "docs" / "kitchen" / "bread.md", "# Bread\n\nSourdough needs a lively starter and a long rise.\n")
    seen: list[tuple[int, int]] = []
    report = index_paths(store, [tmp_path / "docs"], progress=lambda done, total: seen.append((done, total)))
    assert (report.added, report.updated, report.removed, report.skipped_count) == (2, 0, 0, 0)
    assert seen == [(1, 2), (2, 2)]

    hits = search(store, "how often should I turn my compost pile?", limit=2)
    assert isinstance(hits[0], Hit) and hits[0].path == str(garden.resolve()) and hits[0].end_line >= 19
    for mode in ("bm25", "vector"):
        assert search(store, "compost heap turning", limit=1, mode=mode)[0].path == str(garden.resolve())
    only_kitchen = search(store, "how often should I turn my compost pile?", paths=[tmp_path / "docs" / "kitchen"])
    assert {h.path for h in only_kitchen} == {str((tmp_path / "docs" / "kitchen" / "bread.md").resolve())}

    again = index_paths(store, [tmp_path / "docs"])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 2, 0)
    os.utime(garden, ns=(1, 1))  # touched, same bytes: not re-chunked
    assert index_paths(store, [tmp_path / "docs"]).unchanged == 2
    garden.write_text(GUIDE.replace("two weeks", "three days"))
    changed = index_paths(store, [tmp_path / "docs"])
    assert (changed.updated, changed.unchanged) == (1, 1)
    assert "three days" in search(store, "compost turned every", limit=1, mode="bm25")[0].text
    garden.unlink()
    gone = index_paths(store, [tmp_path / "docs"])
    assert gone.removed == 1
    assert all(h.path != str(garden.resolve()) for h in search(store, "compost heap", limit=5))
    assert consistent(database_path()) == {"files": 1, "chunks": 1}
    with pytest.raises(DocumentsError, match="cannot index"):
        index_paths(store, [tmp_path / "missing"])


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_docs_commands_end_to_end(tmp_path: Path) -> None:
    write(tmp_path / "notes" / "bread.md", "# Bread\n\nSourdough needs a lively starter and a long rise.\n")
    write(tmp_path / "notes" / "bikes.txt", "Chain lube every 300 km keeps a bicycle drivetrain quiet.\n")
    added = run_cli("docs", "add", str(tmp_path / "notes"))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("2 added, 0 updated, 0 removed, 0 unchanged, 0 skipped; 2 passages")
    listed = json.loads(run_cli("docs", "list", "--json").stdout)
    assert [(r["path"], r["files"], r["chunks"]) for r in listed] == [(str((tmp_path / "notes").resolve()), 2, 2)]
    found = run_cli("docs", "search", "how do I keep my bike chain quiet", "--limit", "1", "--json")
    hits = json.loads(found.stdout)
    assert [(Path(h["path"]).name, h["start_line"], h["end_line"]) for h in hits] == [("bikes.txt", 1, 1)]
    shown = run_cli("docs", "search", "starter", "--limit", "1")
    assert "bread.md:1-3" in shown.stdout and "Sourdough" in shown.stdout
    removed = run_cli("docs", "rm", str(tmp_path / "notes" / "bread.md"))
    assert removed.stdout.strip() == "1 files dropped from the index"
    for args, needle in [
        (("docs", "rm", str(tmp_path / "notes" / "bread.md")), "nothing indexed under"),
        (("docs", "add", str(tmp_path / "nowhere")), "cannot index"),
        (("docs", "search", "x", "--limit", "0"), "--limit"),
    ]:
        failed = run_cli(*args)
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode == 1 and len(lines) == 1 and lines[0].startswith("assistant: error: "), failed.stderr
        assert needle in lines[0] and "Traceback" not in failed.stderr
    assert consistent(database_path()) == {"files": 1, "chunks": 1}


def test_a_large_index_searches_the_rarest_words_counted_as_stemmed(tmp_path: Path, monkeypatch) -> None:
    """At scale full text keeps only a question's rare words; a word the index stems (``views`` is ``view``) is
    counted as the index holds it, so a common word is not taken for a rare one."""
    from assistant.documents import search as search_module
    from assistant.storage import documents as tables

    store = home_store()
    for n in range(3):
        write(tmp_path / f"view{n}.md", f"# Notes {n}\n\nThe view from window {n} is viewed daily.\n")
    write(tmp_path / "dicts.md", "# Mappings\n\nDictionaries map keys to values.\n")
    index_paths(store, [tmp_path])
    assert tables.term_counts(store, ["views", "dictionary", "zebra"]) == {"views": 3, "dictionary": 1, "zebra": 0}
    # two words of one stem (a question asking "which badges … my badge") once crashed the search: 2 marks, 1 term
    assert tables.term_counts(store, ["views", "view", "viewed"]) == {"views": 3, "view": 3, "viewed": 3}
    assert [Path(h.path).name for h in search(store, "dictionary views view", limit=5, mode="bm25")][:1] == ["dicts.md"]
    monkeypatch.setattr(search_module, "COMMON_FLOOR", 2)  # "view" is now a common word here
    hits = search(store, "dictionary views", limit=5, mode="bm25")
    assert [Path(h.path).name for h in hits] == ["dicts.md"]
    only_common = search(store, "views", limit=5, mode="bm25")  # every word common: the rarest still searched
    assert len(only_common) == 3
