"""How well a distilled persona answers without its context, measured on the GGUF files in llama.cpp.

Three models on held-out persona questions with known answers: the prompted base (the persona's context as
system prompt: the teacher), the student and the base model (both *without* it); the share each answers
correctly, and KL(teacher ‖ model) and top-1 agreement on the teacher's greedy answers. Then general ability,
student vs base, on the hand-written general set (``general_eval``: 282 tasks of six kinds, never used to train or
to choose anything), with repetition loops counted on its open prompts. ``verdict`` turns the two ratios into one
line. Also the first-turn time to first token and decode speed in the product's own engine.

Held-out questions never come from the generator that made the training questions (:class:`HeldOut` says where
they came from): the user's own file (``--eval FILE``, :func:`read_eval_file`), else :func:`corrections`, a
question form no training prompt has.

``--eval FILE`` format: JSON lines, one question per line, blank lines ignored::

    {"question": "Who owns the bakery?", "answers": ["Ines Varga", "Varga"], "kind": "reworded"}

``question`` (or ``prompt``): the text asked; ``answers``: accepted answers, any one of which must appear in the
reply as whole words (case-insensitive), or ``answer``: one; ``kind``: optional label, reported per kind.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from assistant.config import data_dir
from assistant.models.engine import Engine
from distill_tools import DistillError, evaluate, general_eval, llama, verdict
from distill_tools.general_eval import Task

TEACHER, STUDENT, BASE = "teacher (base + context)", "student (no context)", "base (no context)"
GROUNDED = "student + retrieval"  # a persona over documents: the student with the passages the product adds
Progress = Callable[[str, int, int], None]  # (phase, done, total)
MAX_EVAL_QUESTIONS = 10_000


def general_cache() -> Path:
    """Where the base models' general answers are kept (they are the same in every run that compares to them)."""
    return data_dir() / "distill" / "general-eval"


@dataclass
class HeldOut:
    """Held-out persona questions ``{"prompt", "answers", "kind"?}`` and where they came from (the report says)."""

    questions: list[dict[str, Any]]
    source: str
    origin: str = "file"  # "file" (the user's), "corrections", or a question generator's own name
    dropped: int = 0  # questions left out because a training prompt is the same text


def read_eval_file(path: str | Path) -> list[dict[str, Any]]:
    """The questions of an ``--eval`` file (format: the module docstring); a bad line is one error naming it."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DistillError(f"--eval {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DistillError(f"--eval {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    questions: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            questions.append(_question(line, f"--eval {path}:{number}"))
    if not questions:
        raise DistillError(f'--eval {path}: no questions (one JSON object a line: {{"question", "answers"}})')
    if len(questions) > MAX_EVAL_QUESTIONS:
        raise DistillError(f"--eval {path}: {len(questions)} questions; at most {MAX_EVAL_QUESTIONS}")
    return questions


def _question(line: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DistillError(f"{where}: invalid JSON: {exc.msg}") from None
    if not isinstance(item, dict):
        raise DistillError(f'{where}: expected a JSON object {{"question", "answers"}}')
    text = item.get("question", item.get("prompt"))
    if not isinstance(text, str) or not text.strip():
        raise DistillError(f'{where}: needs "question": a non-empty string')
    answers = item.get("answers", [item["answer"]] if "answer" in item else None)
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DistillError(f'{where}: needs "answers": a non-empty list of non-empty strings (or "answer")')
    kind = item.get("kind", "")
    if not isinstance(kind, str):
        raise DistillError(f'{where}: "kind" must be a string')
    return {"prompt": text.strip(), "answers": [a.strip() for a in answers], "kind": kind}


class FactLike(Protocol):
    """What :func:`corrections` reads of a fact (``facts.Fact``): the claim stating it, its key span and kind."""

    @property
    def claim(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def answers(self) -> list[str]: ...


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def corrections(facts: Sequence[FactLike], train_prompts: Sequence[str]) -> HeldOut:
    """One question per checkable fact in a form no training prompt has: the fact's claim with its key altered, asked
    back ("Someone told me "…". Is that right? If not, what is it really?"). Only the right key is accepted:
    answering takes knowing it (it is not in the question). A fact whose key cannot be altered is left out."""
    trained = {p.strip() for p in train_prompts}
    questions, dropped = [], 0
    for fact in facts:
        answers = fact.answers()
        wrong = _altered(fact, facts) if fact.key and fact.key in fact.claim else None
        if wrong is None:
            continue
        claim = fact.claim.replace(fact.key, wrong, 1).strip().rstrip(".")
        prompt = f'Someone told me "{claim}". Is that right? If not, what is it really?'
        if prompt in trained or evaluate.correct(prompt, answers):
            dropped += 1
            continue
        questions.append({"prompt": prompt, "answers": answers, "kind": "correction"})
    source = "corrections: each fact's claim with its key altered, asked back (a form no training prompt has)"
    return HeldOut(questions, source, "corrections", dropped)


def _altered(fact: FactLike, facts: Sequence[FactLike]) -> str | None:
    """``fact.key`` made wrong: a number's digit changed (the last of a long one), a weekday moved on, anything else
    swapped for the key of the next fact of the same kind stated in another claim."""
    key = fact.key
    digits = [m.start() for m in re.finditer(r"\d", key)]
    if digits:
        i = digits[-1] if len(digits) >= 4 else digits[0]
        return key[:i] + str((int(key[i]) + 1) % 10) + key[i + 1 :]
    if key.capitalize() in WEEKDAYS:
        return WEEKDAYS[(WEEKDAYS.index(key.capitalize()) + 1) % 7]
    at = next(i for i, f in enumerate(facts) if f is fact)
    after = [*facts[at + 1 :], *facts[:at]]  # the next one of its kind, so that the swaps differ
    same = (
        f for f in after if f.kind == fact.kind and f.key and f.key.lower() != key.lower() and f.claim != fact.claim
    )
    return next((f.key for f in same), None)


def _prompt(runner: evaluate.Runner, text: str, system: str = "") -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return runner.llm.tokenize(runner.template.render(messages).encode(), add_bos=False, special=True)


def _score(
    runner: evaluate.Runner,
    tasks: list[dict[str, Any]],
    system: str,
    max_new: int,
    tick: Callable[[], None],
    message: Callable[[str], str] = str,
) -> tuple[float, list[dict[str, Any]]]:
    """The share of ``tasks`` answered right, and each answer; ``message``: the user message sent for a question
    (with retrieval: its passages, then the question)."""
    answers = []
    for task in tasks:
        text = runner.text(runner.generate(_prompt(runner, message(task["prompt"]), system), max_new))
        answers.append(
            {
                "prompt": task["prompt"],
                "answer": text,
                "correct": _correct(text, task),
                "degenerate": general_eval.degenerate(text),
            }
        )
        tick()
    return (sum(a["correct"] for a in answers) / len(answers) if answers else 0.0), answers


def _correct(text: str, task: dict[str, Any]) -> bool:
    """Any accepted answer in ``text``; a question about several facts (``answers_all``): one of each group."""
    groups = task.get("answers_all") or [task["answers"]]
    return all(evaluate.correct(text, group) for group in groups)


@dataclass
class _Ticker:
    """One step done: the terminal bar (when there is one) and the run's progress callback."""

    total: int
    progress: Progress
    bar: Any = None
    done: int = 0
    phase: str = field(default="evaluating")

    def __call__(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        self.progress(self.phase, self.done, self.total)


def evaluate_persona(
    base: Path,
    student: Path,
    system: str,
    heldout: HeldOut,
    kl_prompts: list[str],
    general: list[Task],
    max_new: int = 40,
    n_ctx: int = 1024,
    top_k: int = 32,
    progress: Progress | None = None,
    retrieve: Callable[[str], str] | None = None,
    fit: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Reports (teacher, student, base, and with ``retrieve`` the student + retrieval) as ``evaluate.ModelReport``,
    the held-out and general comparisons with their intervals, and the verdict.

    ``retrieve`` (a persona over documents): the message the product sends for a question, its passages first. The
    teacher is then the prompted base *with retrieval*, and the verdict judges the student as it answers in the
    product, with retrieval too; the student closed-book is reported beside it.

    ``n_ctx`` must hold the context, a question and ``max_new`` tokens (every position's logits are kept);
    ``kl_prompts``: prompts the KL and top-1 agreement are measured on; ``top_k``: the teacher top-k the student was
    trained on (the report gives its mass outside them); ``fit``: some of the student's own training questions, asked
    without context (``heldout["fit"]``: how many it answers; few means under-trained, not failing to generalise)."""
    reference: list[tuple[list[int], list[int], np.ndarray]] = []  # prompt without context, teacher answer, log-probs
    reports: list[evaluate.ModelReport] = []
    checkable = heldout.questions
    grounded = functools.cache(retrieve) if retrieve is not None else str  # once per question: the same passages
    runs: list[tuple[str, Path, str, Callable[[str], str]]] = [
        (TEACHER.replace("context", "retrieval") if retrieve else TEACHER, base, system, grounded),
        (STUDENT, student, "", str),
        (BASE, base, "", str),
    ]
    if retrieve is not None:
        runs.append((GROUNDED, student, "", grounded))
    fit = fit or []
    fitted: list[dict[str, Any]] = []
    steps = len(runs) * len(checkable) + len(kl_prompts) + 2 * len(general) + len(fit)
    with tqdm(total=steps, desc="evaluate", unit="prompt", disable=None) as bar:
        tick = _Ticker(steps, progress or (lambda phase, done, total: None), bar)
        tick.progress(tick.phase, 0, steps)
        for label, path, context, message in runs:
            # the cores other processes leave idle, chosen again for each model: a thread per core stalls llama.cpp's
            # barriers on a busy machine
            runner = evaluate.Runner(path, n_ctx=n_ctx, threads=llama.threads())
            try:
                report = evaluate.ModelReport(label, str(path), path.stat().st_size, runner.info.parameters)
                report.task_score, report.answers = _score(runner, checkable, context, max_new, tick, message)
                if label == STUDENT:
                    fitted = _score(runner, fit, "", max_new, tick)[1]
                if label == runs[0][0]:
                    for text in kl_prompts:
                        prompt = _prompt(runner, grounded(text), system)
                        answer = runner.generate(prompt, max_new)
                        if answer:
                            logits = runner.logits(prompt, answer)
                            reference.append((_prompt(runner, text), answer, evaluate.log_softmax(logits)))
                        tick()
                    report.mean_kl, report.top1_agreement = 0.0, 1.0
                else:
                    evaluate.compare(runner, reference, report, top_k)
            finally:
                runner.close()
            reports.append(report)
        start = time.perf_counter()
        scored = {STUDENT: general_eval.run(student, general, llama.threads(), on_answer=tick)}
        scored[BASE] = general_eval.run_cached(base, general, general_cache(), llama.threads(), on_answer=tick)
        general_s = time.perf_counter() - start
    teacher_score = reports[0].task_score
    for report in reports:
        report.retention = (report.task_score or 0.0) / teacher_score if teacher_score else 0.0
    prompted, student_ok, base_ok = ([bool(a["correct"]) for a in r.answers] for r in reports[:3])
    answering = [bool(a["correct"]) for a in reports[3 if retrieve else 1].answers]  # the student as it runs
    persona_ratio = verdict.ratio(answering, prompted)
    general_ratio = verdict.ratio([a.passed for a in scored[STUDENT]], [a.passed for a in scored[BASE]])
    persona = _heldout_block(heldout, reports, persona_ratio, verdict.ratio(base_ok, prompted))
    persona["fit"] = {"questions": len(fitted), "student": sum(bool(a["correct"]) for a in fitted)}
    if retrieve is not None:
        persona["closed_book_vs_prompted"] = _rounded(verdict.ratio(student_ok, prompted))
    generality = _general_block(scored[STUDENT], scored[BASE], general_ratio, general_s)
    degenerate = generality["degenerate"]
    judged = verdict.judge(
        persona_ratio,
        general_ratio,
        degenerate["student"],
        degenerate["base"],
        sum(prompted),
        len(checkable),
        len(general),
    )
    judged["fit"] = verdict.fit_line(persona["fit"]["student"], persona["fit"]["questions"])
    return {"reports": reports, "heldout": persona, "general": generality, "verdict": judged}


def _rounded(r: tuple[float, float, float]) -> list[float | None]:
    return [None if (x != x or x in (float("inf"), float("-inf"))) else round(x, 4) for x in r]


def _heldout_block(
    heldout: HeldOut, reports: list[evaluate.ModelReport], student: general_eval.Ratio, base: general_eval.Ratio
) -> dict[str, Any]:
    """The persona questions: source, counts per model, both ratios to the prompted base with their intervals
    (``student_vs_prompted``: the student as the product runs it, with retrieval for a persona over documents)."""
    keys = _KEYS + (("grounded",) if len(reports) > len(_KEYS) else ())
    kinds = sorted({q.get("kind", "") for q in heldout.questions} - {""})
    return {
        "source": heldout.source,
        "origin": heldout.origin,
        "questions": len(heldout.questions),
        "dropped_as_trained": heldout.dropped,
        "correct": {k: sum(bool(a["correct"]) for a in r.answers) for k, r in zip(keys, reports)},
        "student_vs_prompted": _rounded(student),
        "base_vs_prompted": _rounded(base),
        "degenerate": {k: sum(bool(a["degenerate"]) for a in r.answers) for k, r in zip(keys, reports)},
        "by_kind": {
            kind: {
                k: sum(a["correct"] for a, q in zip(r.answers, heldout.questions) if q.get("kind") == kind)
                for k, r in zip(keys, reports)
            }
            | {"questions": sum(q.get("kind") == kind for q in heldout.questions)}
            for kind in kinds
        },
    }


_KEYS = ("prompted", "student", "base")


def _general_block(
    student: list[general_eval.Answer], base: list[general_eval.Answer], ratio: general_eval.Ratio, seconds: float
) -> dict[str, Any]:
    """General ability: pass rates (Wilson intervals), student/base with its paired interval, loops, time."""
    s, b = [a.passed for a in student], [a.passed for a in base]
    n = len(s)
    return {
        "tasks": n,
        "passed": {"student": sum(s), "base": sum(b)},
        "student": round(sum(s) / n, 4) if n else 0.0,
        "base": round(sum(b) / n, 4) if n else 0.0,
        "wilson": {
            "student": [round(x, 4) for x in general_eval.wilson(sum(s), n)],
            "base": [round(x, 4) for x in general_eval.wilson(sum(b), n)],
        },
        "retention": _rounded(ratio)[0] or 0.0,
        "interval_ratio": _rounded(ratio),
        "degenerate": {"student": sum(a.degenerate for a in student), "base": sum(a.degenerate for a in base)},
        "degenerate_ids": {
            "student": [a.id for a in student if a.degenerate],
            "base": [a.id for a in base if a.degenerate],
        },
        "seconds": round(seconds, 1),
    }


def first_turn(
    path: Path, system: str, questions: list[str], n_ctx: int = 4096, max_tokens: int = 24
) -> dict[str, float]:
    """Median first-turn TTFT, decode tokens/s and prompt tokens, each question in a freshly loaded engine."""
    threads = llama.threads()  # the configured count, else the cores left idle on a shared machine
    ttft, speed, prompt_tokens = [], [], 0
    for question in questions:
        engine = Engine(path, n_ctx=n_ctx, threads=threads)
        try:
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": question})
            for _ in engine.stream(messages, max_tokens=max_tokens, temperature=0.0):
                pass
            ttft.append(engine.stats.ttft_s)
            if engine.stats.tokens_per_s:
                speed.append(engine.stats.tokens_per_s)
            prompt_tokens = engine.stats.prompt_tokens
        finally:
            engine.close()
    return {
        "ttft_s": statistics.median(ttft),
        "tokens_per_s": statistics.median(speed) if speed else 0.0,
        "prompt_tokens": prompt_tokens,
    }
