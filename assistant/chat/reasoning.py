"""Reasoning blocks: the ``<think>…</think>`` part some models (DeepSeek-R1 distills, Qwen3) write before answering.

The whole answer is stored as the model wrote it; ``answer_only`` gives what later turns send back
to the model (those models expect their earlier reasoning left out), ``split`` separates the two
for display, and ``ReasoningFilter`` does the same on a stream. Some templates open the block in
the prompt itself (the answer then starts inside it and only ``</think>`` appears).
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"
_BLOCK = re.compile(re.escape(OPEN) + r".*?(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


def split(text: str, starts_inside: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a whole answer; an unclosed block is all reasoning."""
    if OPEN not in text.split(CLOSE, 1)[0] and (starts_inside or CLOSE in text):  # the template opened the block
        text = OPEN + text
    reasoning = [m.group(0)[len(OPEN) :].removesuffix(CLOSE).strip() for m in _BLOCK.finditer(text)]
    if not reasoning:
        return "", text
    return "\n\n".join(r for r in reasoning if r), _BLOCK.sub("", text).strip()


def answer_only(text: str) -> str:
    """The answer without its reasoning: what a later turn sends back to the model."""
    if OPEN not in text and CLOSE not in text:
        return text
    return split(text)[1]


def opens_in_prompt(rendered_prompt: str) -> bool:
    """Whether a chat template's generation prompt already opens the reasoning block."""
    return rendered_prompt.rstrip().endswith(OPEN)


class ReasoningFilter:
    """Splits a streamed answer into reasoning and answer pieces, holding back only a possible partial tag."""

    def __init__(self, starts_inside: bool = False) -> None:
        self.state = "think" if starts_inside else "start"  # start | think | answer
        self.buffer = ""
        self._trim = False  # right after a reasoning block: the blank lines before the answer are dropped

    def feed(self, piece: str) -> tuple[str, str]:
        """(reasoning, answer) text that can be shown now."""
        self.buffer += piece
        reasoning = answer = ""
        if self.state == "start":
            head = self.buffer.lstrip()
            if head.startswith(OPEN):
                self.state, self.buffer = "think", head[len(OPEN) :]
            elif not OPEN.startswith(head):  # cannot become a block: it is the answer
                self.state = "answer"
            else:
                return "", ""  # still undecided (empty, or a prefix of <think>)
        if self.state == "think":
            if CLOSE in self.buffer:
                reasoning, self.buffer = self.buffer.split(CLOSE, 1)
                self.state, self._trim = "answer", True
            else:
                keep = _partial_suffix(self.buffer, CLOSE)
                reasoning, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep :]
                return reasoning, ""
        if self.state == "answer":
            answer, self.buffer = self.buffer, ""
            if self._trim:
                answer = answer.lstrip()
                self._trim = not answer
        return reasoning, answer

    def flush(self) -> tuple[str, str]:
        """What is left at the end of the stream."""
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "think" else ("", rest)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
