"""Whether a distilled persona's student is worth switching to: one line, from two ratios and their intervals.

The rule (``judge``): a student is **recommended** only if, on the same questions and tasks (paired bootstrap,
95 % intervals, ``general_eval.paired_ratio_interval``),

- the lower bound of *student (no context) / prompted base (context in the prompt)* on the held-out persona
  questions is at least ``PERSONA_FLOOR`` (80 %),
- the lower bound of *student / base* on the general-ability set is at least ``GENERAL_FLOOR`` (90 %), and
- the student gives no more degenerate answers (repetition loops, ``general_eval.degenerate``) on open prompts
  than the base model does on the same prompts, and
- there is evidence enough: at least ``MIN_QUESTIONS`` (10) held-out questions and ``MIN_TASKS`` (200) general
  tasks (a student that answers three questions as the prompted base does has the interval [100–100]).

Otherwise it is **not recommended**, and the line says which condition failed. A prompted persona that answers
none of the held-out questions leaves nothing to compare: not recommended (the questions or the base model are
the problem, and the student cannot be shown to keep anything). Lower bounds, not point estimates, and never on a
set too small to tell (the CI run's 3 questions and 3 tasks).
"""

from __future__ import annotations

import math
from typing import Any

from distill_tools.general_eval import Ratio, paired_ratio_interval

PERSONA_FLOOR = 0.80
GENERAL_FLOOR = 0.90
MIN_QUESTIONS = 10
MIN_TASKS = 200
FITS = 0.8  # the share of its own training questions a student that has learnt them answers (issue 27: 40-44 of 48)
RULE = (
    f"recommended only if the 95 % lower bounds of student/prompted (held-out persona questions) >= "
    f"{PERSONA_FLOOR * 100:.0f} % and student/base (general tasks) >= {GENERAL_FLOOR * 100:.0f} %, "
    f"and no more degenerate answers on open prompts than the base, on >= {MIN_QUESTIONS} questions and "
    f">= {MIN_TASKS} general tasks"
)


def ratio(a: list[bool], b: list[bool]) -> Ratio:
    """sum(a) / sum(b) with its paired-bootstrap 95 % interval (nan when ``b`` has no success or there is no item)."""
    if not a or not any(b):
        return math.nan, math.nan, math.nan
    return paired_ratio_interval(a, b)


def percent(r: Ratio) -> str:
    """``93 % [85–100]`` (``n/a`` for an undefined ratio)."""
    if any(math.isnan(x) or math.isinf(x) for x in r):
        return "n/a"
    return f"{r[0] * 100:.0f} % [{r[1] * 100:.0f}–{r[2] * 100:.0f}]"


def judge(
    persona: Ratio,
    general: Ratio,
    degenerate_student: int,
    degenerate_base: int,
    prompted_correct: int,
    questions: int = MIN_QUESTIONS,
    tasks: int = MIN_TASKS,
) -> dict[str, Any]:
    """The verdict: ``recommended``, its one ``line``, the failed conditions (``reasons``) and the ``rule``."""
    reasons = []
    if questions < MIN_QUESTIONS or tasks < MIN_TASKS:
        reasons.append(
            f"too few to tell ({questions} held-out questions, {tasks} general tasks; at least {MIN_QUESTIONS} and "
            f"{MIN_TASKS} needed)"
        )
    if prompted_correct == 0:
        reasons.append("the prompted persona answers none of the held-out questions, so there is nothing to keep")
    elif math.isnan(persona[1]) or persona[1] < PERSONA_FLOOR:
        reasons.append(f"its persona lower bound {_pct(persona[1])} is under {_pct(PERSONA_FLOOR)}")
    if math.isnan(general[1]) or general[1] < GENERAL_FLOOR:
        reasons.append(f"its general-ability lower bound {_pct(general[1])} is under {_pct(GENERAL_FLOOR)}")
    if degenerate_student > degenerate_base:
        reasons.append(f"{degenerate_student} degenerate answers on open prompts (the base: {degenerate_base})")
    keeps = f"keeps {percent(persona)} of the prompted persona and {percent(general)} of the base's general ability"
    line = f"{keeps}: recommended" if not reasons else f"not recommended: {keeps}; " + "; ".join(reasons)
    return {"recommended": not reasons, "line": line, "reasons": reasons, "rule": RULE}


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:.0f} %"


def fit_line(got: int, questions: int) -> str:
    """Whether the student learnt its own training questions (asked without context): tells under-training from
    wordings that did not carry over. '' when none were asked."""
    if not questions:
        return ""
    if got >= FITS * questions:
        why = "it has learnt its material; what it misses above is wording that did not carry over"
    else:
        why = "it has not learnt its material yet: more --epochs should help"
    return f"its own training questions, no context: student {got}/{questions} ({why})"
