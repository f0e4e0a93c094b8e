"""What a file holds, as text blocks with their line numbers; and what not to read, with the reason.

Only regular files are opened (FIFOs, devices such as ``/dev/zero``, sockets are skipped without opening), never
more than their size limit is read, binary files are recognised by their bytes, and a file that changes while
it is read is read again (a few times) or skipped. Every refusal is a :class:`Skip` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import re
import stat
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

MAX_TEXT_BYTES = 16 << 20  # a text file larger than this is skipped (a log or a dump, not a document)
MAX_PDF_BYTES = 64 << 20
SNIFF_BYTES = 8192
READS = 3  # a file that changed while read is read this many times before it is skipped

KINDS = {
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".rst": "rst", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
}  # fmt: skip
CODE = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".mjs", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".java",
    ".kt", ".go", ".rs", ".rb", ".php", ".swift", ".scala", ".sh", ".bash", ".zsh", ".lua", ".r", ".jl", ".sql",
    ".pl", ".hs", ".ml", ".ex", ".exs", ".erl", ".clj", ".dart", ".m", ".toml", ".yaml", ".yml", ".ini", ".cfg",
    ".css", ".scss", ".vue", ".svelte", ".tex", ".el", ".vim", ".zig", ".nim", ".f90", ".proto", ".json",
}  # fmt: skip
# file names never worth reading: version control and tool caches (walked past, not reported)
IGNORED_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", ".tox", ".mypy_cache", ".cache"}


@dataclass(frozen=True)
class Block:
    """A run of lines: a heading (``level`` 1-6), a structural break such as a top-level definition (``level``
    7, no breadcrumb), or body text (``level`` 0). Lines count from 1."""

    start_line: int
    end_line: int
    text: str
    level: int = 0


@dataclass(frozen=True)
class Document:
    path: Path
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    blocks: list[Block]


@dataclass(frozen=True)
class Skip:
    path: Path
    reason: str


def kind_of(path: Path) -> str:
    """``markdown``, ``rst``, ``text``, ``html``, ``pdf``, ``code``; ``text`` for other names (binary is found
    by the bytes, not the name)."""
    suffix = path.suffix.lower()
    return KINDS.get(suffix) or ("code" if suffix in CODE else "text")


def check(path: Path) -> os.stat_result | Skip:
    """The file's stat if it may be read (a regular file, following symlinks, within its size limit)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return Skip(path, f"cannot read: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode):
        return Skip(path, f"not a regular file ({_file_type(info.st_mode)})")
    limit = MAX_PDF_BYTES if kind_of(path) == "pdf" else MAX_TEXT_BYTES
    if info.st_size > limit:
        return Skip(path, f"too large: {info.st_size / 2**20:.1f} MiB (the limit is {limit >> 20} MiB)")
    return info


def read(path: Path) -> Document | Skip:
    """The file's blocks, or why it was not read."""
    for _ in range(READS):
        info = check(path)
        if isinstance(info, Skip):
            return info
        data = _read_bytes(path, MAX_PDF_BYTES if kind_of(path) == "pdf" else MAX_TEXT_BYTES)
        if isinstance(data, Skip):
            return data
        if data is not None:
            content, size, mtime_ns = data
            return _parse(path, content, size, mtime_ns)
    return Skip(path, f"changed while it was read ({READS} tries)")


def _read_bytes(path: Path, limit: int) -> tuple[bytes, int, int] | Skip | None:
    """The file's bytes with the size and mtime they belong to; None if it changed meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return Skip(path, f"cannot read: {exc.strerror or exc}")
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):  # swapped for a FIFO or a device since it was checked
            return Skip(path, f"not a regular file ({_file_type(before.st_mode)})")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            return Skip(path, f"too large: grew past {limit >> 20} MiB while read")
        after = os.fstat(fd)
    except OSError as exc:
        return Skip(path, f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or total != before.st_size:
        return None
    return b"".join(chunks), total, after.st_mtime_ns


def _parse(path: Path, data: bytes, size: int, mtime_ns: int) -> Document | Skip:
    kind = kind_of(path)
    digest = hashlib.sha256(data).hexdigest()
    if kind == "pdf":
        blocks = _pdf_blocks(data)
        if isinstance(blocks, str):
            return Skip(path, blocks)
        return Document(path, kind, size, mtime_ns, digest, blocks)
    if b"\x00" in data[:SNIFF_BYTES]:
        return Skip(path, "binary file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") > max(8, len(text) // 100):
            return Skip(path, "binary file (not UTF-8 text)")
    text = text.removeprefix("\ufeff")
    parse = {"markdown": markdown_blocks, "rst": rst_blocks, "html": html_blocks, "code": code_blocks}
    return Document(path, kind, size, mtime_ns, digest, parse.get(kind, text_blocks)(text))


def _file_type(mode: int) -> str:
    types = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    for test, name in types:
        if test(mode):
            return name
    return "not a file"


def text_blocks(text: str, first_line: int = 1) -> list[Block]:
    """Paragraphs: runs of non-blank lines."""
    blocks: list[Block] = []
    start, lines = 0, list[str]()
    for number, line in enumerate(text.splitlines(), first_line):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            blocks.append(Block(start, number - 1, "\n".join(lines)))
            lines = []
    if lines:
        blocks.append(Block(start, start + len(lines) - 1, "\n".join(lines)))
    return blocks


ATX = re.compile(r"^ {0,3}(#{1,6})\s+\S")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_blocks(text: str) -> list[Block]:
    """Headings (``#`` and underlined), paragraphs, and fenced code kept whole."""
    blocks: list[Block] = []
    lines = text.splitlines()
    start, body, fence = 0, list[str](), ""

    def close(end: int) -> None:
        nonlocal body
        if body:
            blocks.append(Block(start, end, "\n".join(body)))
            body = []

    for number, line in enumerate(lines, 1):
        marker = FENCE.match(line)
        if fence:
            body.append(line)
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = ""
            continue
        heading = ATX.match(line)
        underline = re.fullmatch(r" {0,3}(=+|-+)\s*", line) and len(body) == 1 and line.strip()
        if heading:
            close(number - 1)
            blocks.append(Block(number, number, line.strip(), len(heading.group(1))))
        elif underline and not body[0].lstrip().startswith(("-", "*", "|")):
            title = body[0]
            body = []
            blocks.append(Block(number - 1, number, title.strip(), 1 if line.strip()[0] == "=" else 2))
        elif marker:
            close(number - 1)
            start, body, fence = number, [line], marker.group(1)
        elif line.strip():
            if not body:
                start = number
            body.append(line)
        else:
            close(number - 1)
    close(len(lines))
    return blocks


RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")


def rst_blocks(text: str) -> list[Block]:
    """Sections (a title underlined, perhaps overlined; levels in the order the styles first appear), paragraphs."""
    blocks: list[Block] = []
    styles: list[str] = []
    for block in text_blocks(text):
        lines = block.text.splitlines()
        overline = len(lines) >= 3 and RST_UNDERLINE.match(lines[0]) and lines[0].strip() == lines[2].strip()
        if overline:
            style, title, used = "o" + lines[0].strip()[0], lines[1], 3
        elif len(lines) >= 2 and RST_UNDERLINE.match(lines[1]) and len(lines[1].strip()) >= len(lines[0].strip()):
            style, title, used = lines[1].strip()[0], lines[0], 2
        else:
            blocks.append(block)
            continue
        if style not in styles:
            styles.append(style)
        level = min(styles.index(style) + 1, 6)
        blocks.append(Block(block.start_line, block.start_line + used - 1, title.strip(), level))
        if len(lines) > used:
            blocks.append(Block(block.start_line + used, block.end_line, "\n".join(lines[used:])))
    return blocks


DEFINITION = re.compile(
    r"^(?:@|(?:export\s+|pub(?:\(\w+\))?\s+|public\s+|private\s+|static\s+|async\s+|default\s+)*"
    r"(?:def|class|function|fn|func|impl|struct|enum|trait|interface|type|module|macro_rules!|defn?|sub)\b)"
)


def code_blocks(text: str) -> list[Block]:
    """Paragraphs of code; one that starts a top-level definition (``def``, ``class``, ``fn`` …) is a break."""
    blocks = []
    for block in text_blocks(text):
        starts = DEFINITION.match(block.text)
        blocks.append(Block(block.start_line, block.end_line, block.text, 7 if starts else 0))
    return blocks


class _HTMLText(HTMLParser):
    """Text of an HTML page by source line: headings, block elements and line breaks end a block."""

    SKIP = {"script", "style", "noscript", "template", "head", "svg"}
    BREAK = {"p", "div", "li", "ul", "ol", "pre", "tr", "table", "br", "section", "article", "blockquote", "dt",
             "dd", "hr", "header", "footer", "nav", "main", "aside", "figure", "form", "title"}  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.parts: list[str] = []
        self.start = 0
        self.skipping = 0
        self.level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.level = int(tag[1])
        elif tag in self.BREAK:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BREAK:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.skipping or not data.strip():
            return
        if not self.parts:
            self.start = self.getpos()[0]
        self.parts.append(data)

    def flush(self) -> None:
        text = " ".join(" ".join(self.parts).split())
        if text:
            end = max(self.start, self.getpos()[0])
            self.blocks.append(Block(self.start, end, html.unescape(text) if "&" in text else text, self.level))
        self.parts, self.level = [], 0


def html_blocks(text: str) -> list[Block]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.blocks


def _pdf_blocks(data: bytes) -> list[Block] | str:
    """Each page's text (lines counted through the whole extracted text), or why it cannot be read."""
    try:
        from pypdf import PdfReader  # deliberately lazy: only PDFs need it

        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return "encrypted PDF"
        blocks: list[Block] = []
        line = 1
        for page in reader.pages:
            text = page.extract_text() or ""
            page_blocks = text_blocks(text, line)
            if page_blocks:
                first = page_blocks[0]
                page_blocks[0] = Block(first.start_line, first.end_line, first.text, 7)  # a page is a break
            blocks.extend(page_blocks)
            line += len(text.splitlines()) + 1
        return blocks
    except Exception as exc:  # pypdf raises many kinds on a broken file; any of them means "not readable"
        return f"unreadable PDF: {' '.join(str(exc).split())[:120] or type(exc).__name__}"
