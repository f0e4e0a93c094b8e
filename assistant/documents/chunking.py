"""Passages of a document along its own structure: sections, paragraphs, definitions; ~200-400 tokens each.

A passage ends at a heading (or a top-level definition, a PDF page) once it holds ``MIN_CHARS``, and before it
would pass ``MAX_CHARS``; a passage cut inside a section carries the end of the one before it (the overlap).
Each passage keeps its file lines and its section's headings (its ``context``, searched and embedded with it).
Sizes are in characters, about four to a token in English prose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from assistant.documents.reader import Block

MIN_CHARS = 800  # ~200 tokens
MAX_CHARS = 1600  # ~400 tokens
OVERLAP_CHARS = 300  # ~75 tokens carried into the next passage of the same section
BREAK = 7  # Block.level of a structural break that has no heading text


@dataclass(frozen=True)
class Chunk:
    start_line: int
    end_line: int
    text: str
    context: str  # the headings above it, outermost first ("Guide › Install"); empty at the top


def chunks(blocks: list[Block]) -> Iterator[Chunk]:
    """The document's passages, in order."""
    headings: list[tuple[int, str]] = []
    current: list[Block] = []
    size = 0
    context = ""
    for block in _small(blocks):
        starts_section = block.level > 0
        fresh = not current
        if current and ((starts_section and size >= MIN_CHARS) or size + len(block.text) > MAX_CHARS):
            yield _chunk(current, context)
            current = [] if starts_section else _overlap(current)
            if sum(len(b.text) + 1 for b in current) + len(block.text) > MAX_CHARS:
                current = []
            size = sum(len(b.text) + 1 for b in current)
            fresh = True
        heading = 0 < block.level < BREAK
        if fresh:  # the headings above this passage: a heading's own outer ones
            context = " › ".join(title for level, title in headings if not heading or level < block.level)
        if heading:
            headings = [h for h in headings if h[0] < block.level] + [(block.level, block.text.lstrip("# ").strip())]
        current.append(block)
        size += len(block.text) + 1
    if current:
        yield _chunk(current, context)


def _chunk(blocks: list[Block], context: str) -> Chunk:
    return Chunk(blocks[0].start_line, blocks[-1].end_line, "\n\n".join(b.text for b in blocks), context)


def _overlap(blocks: list[Block]) -> list[Block]:
    """The tail of a passage that the next one starts with: its last block, or that block's last lines."""
    last = blocks[-1]
    if last.level or len(blocks) == 1 and len(last.text) > OVERLAP_CHARS:
        return [] if last.level else _tail(last)
    return [last] if len(last.text) <= OVERLAP_CHARS else _tail(last)


def _tail(block: Block) -> list[Block]:
    lines = block.text.splitlines()
    kept: list[str] = []
    while lines and sum(len(line) + 1 for line in kept) + len(lines[-1]) <= OVERLAP_CHARS:
        kept.insert(0, lines.pop())
    if not kept:  # one long line: its last words
        words = lines[-1][-OVERLAP_CHARS:].split(" ")
        kept = [" ".join(words[1:] if len(words) > 1 else words)]
    return [Block(block.end_line - len(kept) + 1, block.end_line, "\n".join(kept))]


def _small(blocks: list[Block]) -> Iterator[Block]:
    """Every block no longer than ``MAX_CHARS``: a longer one is split by lines (a longer line by characters)."""
    for block in blocks:
        if len(block.text) <= MAX_CHARS:
            yield block
            continue
        part: list[str] = []
        start = block.start_line
        level = block.level
        for number, line in enumerate(block.text.splitlines(), block.start_line):
            pieces = [line[i : i + MAX_CHARS] for i in range(0, len(line), MAX_CHARS)] or [""]
            for piece in pieces:
                if part and sum(len(p) + 1 for p in part) + len(piece) > MAX_CHARS:
                    yield Block(start, max(start, number - (piece is pieces[0])), "\n".join(part), level)
                    part, start, level = [], number, 0
                part.append(piece)
        if part:
            yield Block(start, block.end_line, "\n".join(part), level)
