"""The general replay set (``data/general_replay.jsonl``): broad prompts the base model answers without any
context, mixed into every training step so the student keeps the base's distribution (a KL-to-the-base term).

It is a *training* split: it shares no prompt, exactly or nearly, with the general evaluation set
(``general_eval.jsonl``), which makes no training decision. Part of it is held out for early stopping on the
student's general KL (see ``train``)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

PATH = Path(__file__).parent / "data" / "general_replay.jsonl"
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the is are was were of in on to for and or what which who how do does did you your me my i it "
    "this that with be by as at from one".split()
)


def load(path: Path = PATH) -> list[dict[str, str]]:
    """The replay prompts: ``{"prompt", "kind"}`` records."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def split(
    records: list[dict[str, str]], heldout: int, seed: int = 0
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(training, held-out) parts: ``heldout`` records drawn with ``seed``, the rest in file order."""
    chosen = set(random.Random(seed).sample(range(len(records)), min(heldout, len(records))))
    return [r for i, r in enumerate(records) if i not in chosen], [r for i, r in enumerate(records) if i in chosen]


def sample(records: list[dict[str, str]], n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` records (all when ``n`` is 0 or larger than the set), seeded."""
    return records if not n or n >= len(records) else random.Random(seed).sample(records, n)


def content_words(text: str) -> frozenset[str]:
    """The lower-cased words of ``text`` without the commonest function words."""
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


def near_duplicate(a: str, b: str, threshold: float = 0.6) -> bool:
    """Whether two prompts are the same task: equal after normalisation, or their content words overlap by
    ``threshold`` (Jaccard) or more."""
    words_a, words_b = content_words(a), content_words(b)
    if " ".join(_WORD.findall(a.lower())) == " ".join(_WORD.findall(b.lower())):
        return True
    if not words_a or not words_b:
        return False
    return len(words_a & words_b) / len(words_a | words_b) >= threshold


def overlaps(prompts: list[str], others: list[str]) -> list[tuple[str, str]]:
    """Pairs (prompt, other) that are near duplicates."""
    return [(p, o) for p in prompts for o in others if near_duplicate(p, o)]
