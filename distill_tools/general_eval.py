"""The hand-written general-ability set (``data/general_eval.jsonl``): tasks, their checks and intervals.

Each task is ``{"id", "kind", "prompt", "check"}``; a check is one of ``number`` (``value`` appears as a
number), ``any`` / ``all`` (of ``values``, whole words, case-insensitive), ``regex`` (``pattern``, searched),
``max_words`` / ``min_words`` (``n``), ``lines`` (exactly ``n`` non-empty lines), ``upper`` (no lowercase
letters), ``starts_with`` (``value``), ``items`` (exactly ``n`` non-empty items split on ``sep``), and the
combinators ``and`` / ``or`` (``checks``) and ``not`` (``check``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.storage.files import atomic_write_text

DEFAULT_PATH = Path(__file__).parent / "data" / "general_eval.jsonl"
_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
NUMBER_WORDS = {w: i for i, w in enumerate(f"{_WORDS} seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS |= {"thirty": 30, "forty": 40, "fifty": 50, "hundred": 100}
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?|\b[a-z]+\b", re.IGNORECASE)
Ratio = tuple[float, float, float]  # a ratio and its 95 % interval
_LEAD = re.compile(r"^[\s\"'*_`#>\-]+")  # quotes and markdown before an answer's first word


@dataclass(frozen=True)
class Task:
    """One general task: its id, kind, prompt and check."""

    id: str
    kind: str
    prompt: str
    check: dict[str, Any]


def load_tasks(path: Path | str | None = None) -> list[Task]:
    """The tasks of a JSON-lines file (default: the bundled set)."""
    lines = Path(path or DEFAULT_PATH).read_text(encoding="utf-8").splitlines()
    return [Task(**json.loads(line)) for line in lines if line.strip()]


def numbers(answer: str) -> list[float]:
    """Every number written in ``answer``, in digits (``1,200``, ``-3``, ``2.5``) or as a word (up to twenty)."""
    found = []
    for token in _NUMBER.findall(answer):
        if token[-1].isdigit():
            found.append(float(token.replace(",", "")))
        elif token.lower() in NUMBER_WORDS:
            found.append(float(NUMBER_WORDS[token.lower()]))
    return found


def _has(answer: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", answer.lower()) is not None


def passes(answer: str, check: dict[str, Any]) -> bool:
    """Whether ``answer`` satisfies ``check`` (see the module docstring for the types)."""
    kind, text = check["type"], answer.strip()
    if kind == "number":
        return any(math.isclose(x, float(check["value"]), abs_tol=1e-9) for x in numbers(text))
    if kind == "any":
        return any(_has(text, v) for v in check["values"])
    if kind == "all":
        return all(_has(text, v) for v in check["values"])
    if kind == "regex":
        return re.search(check["pattern"], text) is not None
    if kind == "max_words":
        return 0 < len(text.split()) <= check["n"]
    if kind == "min_words":
        return len(text.split()) >= check["n"]
    if kind == "lines":
        return len([line for line in text.splitlines() if line.strip()]) == check["n"]
    if kind == "upper":
        return any(c.isalpha() for c in text) and text == text.upper()
    if kind == "starts_with":
        return _LEAD.sub("", text).lower().startswith(check["value"].lower())
    if kind == "items":
        body = text.rstrip(".").strip()
        return "\n" not in body and len([i for i in body.split(check.get("sep", ",")) if i.strip()]) == check["n"]
    if kind == "and":
        return all(passes(text, c) for c in check["checks"])
    if kind == "or":
        return any(passes(text, c) for c in check["checks"])
    if kind == "not":
        return not passes(text, check["check"])
    raise ValueError(f"unknown check type {kind!r}")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_interval(a_successes: int, a_n: int, b_successes: int, b_n: int, z: float = 1.96) -> Ratio:
    """The ratio of two independent pass rates, rate(a) / rate(b), with its log-normal (Katz) interval.

    A zero count gets 0.5 added to its successes and failures (Haldane), so the bounds stay finite."""
    a, b, an, bn = float(a_successes), float(b_successes), float(a_n), float(b_n)
    if a == 0 or b == 0:
        a, b, an, bn = a + 0.5, b + 0.5, an + 1, bn + 1
    ratio = (a / an) / (b / bn)
    spread = z * math.sqrt(1 / a - 1 / an + 1 / b - 1 / bn)
    return ratio, ratio * math.exp(-spread), ratio * math.exp(spread)


def paired_ratio_interval(a: list[bool], b: list[bool], rounds: int = 2000, seed: int = 0) -> Ratio:
    """sum(a) / sum(b) over the same tasks with a percentile-bootstrap 95 % interval (tasks resampled)."""
    if len(a) != len(b) or not a:
        raise ValueError("a and b must be non-empty and answer the same tasks")

    def ratio(x: int, y: int) -> float:
        return x / y if y else (math.inf if x else math.nan)

    rng, n = random.Random(seed), len(a)
    picks = ([rng.randrange(n) for _ in range(n)] for _ in range(rounds))
    samples = sorted(r for p in picks if not math.isnan(r := ratio(sum(a[i] for i in p), sum(b[i] for i in p))))
    if not samples:
        return math.nan, math.nan, math.nan
    low, high = samples[int(0.025 * (len(samples) - 1))], samples[math.ceil(0.975 * (len(samples) - 1))]
    return ratio(sum(a), sum(b)), low, high


def degenerate(answer: str) -> bool:
    """Whether ``answer`` loops: a line (with letters or digits) three times, a 4-word n-gram three times,
    or one word eight times in a row."""
    lines = [line.strip().lower() for line in answer.splitlines() if any(c.isalnum() for c in line)]
    if lines and Counter(lines).most_common(1)[0][1] >= 3:
        return True
    words = [w.strip(".,;:!?\"'()*").lower() for w in answer.split()]
    words = [w for w in words if w]
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if grams and grams.most_common(1)[0][1] >= 3:
        return True
    run = 1
    for previous, word in zip(words, words[1:]):
        run = run + 1 if word == previous else 1
        if run >= 8:
            return True
    return False


# -- running the set on a model
MAX_TOKENS = {"arithmetic": 32, "fact": 32, "definition": 48, "code": 64, "instruction": 48, "writing": 64}
OPEN_KINDS = ("definition", "instruction", "writing")  # open prompts: where a repetition loop is looked for


@dataclass(frozen=True)
class Answer:
    """One task's greedy answer, whether its check passed and whether it loops."""

    id: str
    kind: str
    answer: str
    passed: bool
    degenerate: bool


def run(
    path: Path, tasks: list[Task], threads: int = 0, n_ctx: int = 512, on_answer: Callable[[], None] | None = None
) -> list[Answer]:
    """Each task asked of the GGUF at ``path`` in the product's engine, greedy, at most ``MAX_TOKENS[kind]``."""
    from assistant.models.engine import Engine  # deliberately lazy: llama.cpp loads when a model is scored

    engine = Engine(path, n_ctx=n_ctx, threads=threads)
    answers = []
    try:
        for task in tasks:
            text = engine.complete(
                [{"role": "user", "content": task.prompt}], max_tokens=MAX_TOKENS.get(task.kind, 48), temperature=0.0
            )
            answers.append(_answer(task, text))
            if on_answer is not None:
                on_answer()
    finally:
        engine.close()
    return answers


def _answer(task: Task, text: str) -> Answer:
    return Answer(task.id, task.kind, text, passes(text, task.check), task.kind in OPEN_KINDS and degenerate(text))


def run_cached(
    path: Path, tasks: list[Task], folder: Path, threads: int = 0, on_answer: Callable[[], None] | None = None
) -> list[Answer]:
    """:func:`run`, its answers kept in ``folder`` for the same file (path, size, time) and tasks: the base model's
    greedy answers are the same in every run that compares a student to it, so they are generated once."""
    stat = path.stat()
    spec = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, MAX_TOKENS, [(t.id, t.prompt) for t in tasks]]
    cache = folder / f"{hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:24]}.json"
    try:
        texts = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        texts = None
    if isinstance(texts, list) and len(texts) == len(tasks) and all(isinstance(t, str) for t in texts):
        for _ in tasks:
            if on_answer is not None:
                on_answer()
        return [_answer(task, text) for task, text in zip(tasks, texts)]
    answers = run(path, tasks, threads, on_answer=on_answer)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps([a.answer for a in answers]))
    return answers


def subset(tasks: list[Task], limit: int) -> list[Task]:
    """The first ``limit`` tasks taking the kinds in turn (every kind in a small run); 0 = all of them."""
    if not limit or limit >= len(tasks):
        return list(tasks)
    by_kind: dict[str, list[Task]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    queues = list(by_kind.values())
    picked: list[Task] = []
    while len(picked) < limit:
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked
