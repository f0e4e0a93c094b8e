"""Training and held-out prompts for distilling a persona, made from its own context.

The context's facts (``facts``: from bullets and prose, each with its passage) are asked about in many
wordings (``questions``: templates, and the teacher's own words when it writes usable ones), at most
``per_fact`` a fact in training. Each training prompt carries the short focused context its teacher sees: the
persona's instructions and the passage(s) that answer it, not the whole document. A weak teacher (the base
model) answers the first wording of each fact itself; the others carry the context's own sentence as their
answer (asked vaguely, a small prompted model often invents details instead of quoting its context), and
questions the context cannot answer carry "I don't know". Held-out questions come from a source the training
questions did not (``questions.split``; the PromptSet names it). Questions about the persona itself ("Who are
you?") and the user's own prompts see the whole context.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill_tools import questions as asking
from distill_tools.facts import Fact, extract
from distill_tools.questions import Question

IDENTITY = (
    "Who are you?",
    "What can you help me with?",
    "Introduce yourself.",
    "Hello!",
    "What are your rules?",
    "How should I ask you things?",
    "What do you know?",
    "Hi, what is your job?",
)


@dataclass
class PromptSet:
    train: list[dict[str, Any]] = field(default_factory=list)  # records: prompt, system (the teacher's), history?,
    # answer? (a given answer)
    heldout: list[dict[str, Any]] = field(default_factory=list)  # {"prompt", "answers"?, "answers_all"?, "kind",
    # "source"}: never trained on
    facts: list[Fact] = field(default_factory=list)
    fit: list[dict[str, Any]] = field(default_factory=list)  # training questions with one checkable answer, as
    # held-out items: whether the student learnt its own material tells under-training from not carrying over
    heldout_source: str = ""  # where the held-out questions come from (never the training questions' generator)
    questions_per_fact: float = 0.0  # training questions per checkable fact
    teacher_share: float = 0.0  # the share of training questions the teacher wrote
    writer: str = ""  # how the teacher's question writing went

    def fit_sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` of the fit questions (all when fewer), drawn with ``seed``: the report's and the bench's sample."""
        return random.Random(seed).sample(self.fit, min(n, len(self.fit)))


def instructions(context: str, texts: list[str]) -> str | None:
    """The persona's own instructions: its context up to its first context file ('' if none; None when the texts
    are the system prompt itself, which then is the focused context of every question)."""
    first = texts[0].strip() if texts else ""
    at = context.find(first) if first else -1
    if at <= 0:
        return None
    return re.sub(r"\n*## [^\n]*\n*$", "", context[:at]).strip()


def build(
    texts: list[str],
    context: str,
    user_prompts: list[dict[str, str]],
    per_fact: int,
    seed: int = 0,
    heldout_user: float = 0.1,
    grounded: bool = True,
    writer: Callable[[str], str] | None = None,
    strong: bool = False,
) -> PromptSet:
    """Training records and held-out questions about the facts of ``texts`` (the context files, or the system prompt).

    ``writer``: the teacher, asked to write questions; ``strong``: a teacher other than the base model, which
    answers every question itself (no grounded answers)."""
    rng = random.Random(seed)
    facts = [f for text in texts for f in extract(text)]
    prompts = PromptSet(facts=facts)
    if not facts:
        return prompts
    made = asking.template_questions(facts, seed=seed)
    if writer is not None:
        written, prompts.writer = asking.teacher_questions(facts, writer)
        made += written
    split = asking.split(made, seed)
    train = asking.sample(split.train, per_fact, seed)
    head = instructions(context, texts)
    prompts.train = [_record(q, facts, head, context, grounded and not strong) for q in train]
    prompts.heldout = [_heldout(q) for q in split.heldout]
    picked = {id(q) for q in train}
    prompts.fit = [_heldout(q) for q in made if id(q) in picked and _checkable_alone(q)]
    prompts.heldout_source = split.source
    prompts.questions_per_fact = asking.per_fact(train, facts)
    prompts.teacher_share = sum(q.source == asking.TEACHER for q in train) / len(train) if train else 0.0
    identity = list(IDENTITY)
    rng.shuffle(identity)
    prompts.train += [{"prompt": p, "system": context} for p in identity[:-2]]
    prompts.heldout += [{"prompt": p, "kind": "identity", "source": "template"} for p in identity[-2:]]
    users = list(user_prompts)
    rng.shuffle(users)
    n_held = int(len(users) * heldout_user) if len(users) >= 10 else 0
    prompts.heldout += [{**r, "kind": "user", "source": "yours"} for r in users[:n_held]]
    prompts.train += [{**r, "system": context} for r in users[n_held:]]
    return prompts


def _record(q: Question, facts: list[Fact], head: str | None, context: str, grounded: bool) -> dict[str, Any]:
    """A training record: the question, the focused context the teacher sees, and a given answer where due."""
    passages = list(dict.fromkeys(facts[i].passage for i in q.facts))
    system = "\n\n".join(p for p in [head, *passages] if p) if head is not None and passages else context
    record: dict[str, Any] = {"prompt": q.text, "system": system}
    if q.history:
        record["history"] = [list(turn) for turn in q.history]
    if q.kind == "unknown" or (grounded and q.wording != "direct-0"):
        record["answer"] = q.grounded
    return record


def _checkable_alone(q: Question) -> bool:
    """A single-turn question about one fact whose answer is a span to find in the reply (not yes/no)."""
    return bool(q.answers) and not q.history and q.kind not in ("yesno", "multi")


def _heldout(q: Question) -> dict[str, Any]:
    item: dict[str, Any] = {"prompt": q.text, "kind": q.kind, "source": q.source}
    if q.answers:
        item["answers"] = list(q.answers[0])
        item["answers_all"] = [list(group) for group in q.answers]
    elif q.kind == "unknown":
        item["answers"] = ["don't know", "do not know", "not sure", "does not say", "doesn't say"]
    return item
