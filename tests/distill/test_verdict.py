"""The one-line verdict and its rule (issue 27 item 1): lower bounds against stated floors, and no new loops."""

from __future__ import annotations

import math

from distill_tools.general_eval import paired_ratio_interval
from distill_tools.verdict import (
    GENERAL_FLOOR,
    MIN_QUESTIONS,
    MIN_TASKS,
    PERSONA_FLOOR,
    RULE,
    judge,
    percent,
    ratio,
)


def test_a_student_that_keeps_both_is_recommended_in_one_line() -> None:
    prompted = [True] * 40 + [False] * 10
    student = [True] * 39 + [False] * 11
    base = [True] * 140 + [False] * 142
    student_general = [True] * 139 + [False] * 143
    persona, general = ratio(student, prompted), ratio(student_general, base)
    assert persona == paired_ratio_interval(student, prompted) and persona[1] >= PERSONA_FLOOR
    verdict = judge(persona, general, 0, 0, sum(prompted))
    assert verdict["recommended"] and verdict["reasons"] == []
    assert verdict["line"] == (
        f"keeps {percent(persona)} of the prompted persona and {percent(general)} of the base's general ability: "
        "recommended"
    )
    assert verdict["line"].startswith("keeps 98 % [") and "\n" not in verdict["line"]
    assert "80 %" in RULE and "90 %" in RULE and verdict["rule"] == RULE


def test_each_failed_condition_is_named() -> None:
    prompted = [True] * 20
    student = [True] * 8 + [False] * 12
    base = [True] * 100 + [False] * 182
    worse = [True] * 60 + [False] * 222
    verdict = judge(ratio(student, prompted), ratio(worse, base), 3, 1, 20)
    assert not verdict["recommended"] and len(verdict["reasons"]) == 3
    line = verdict["line"]
    assert line.startswith("not recommended: keeps 40 % [") and "of the base's general ability; " in line
    assert "persona lower bound 2" in line and f"under {PERSONA_FLOOR * 100:.0f} %" in line
    assert f"under {GENERAL_FLOOR * 100:.0f} %" in line and "3 degenerate answers on open prompts (the base: 1)" in line


def test_the_base_s_own_loops_do_not_count_against_the_student() -> None:
    same = [True] * 200 + [False] * 82
    verdict = judge(ratio(same, same), ratio(same, same), 2, 2, 200)
    assert verdict["recommended"] and verdict["line"].startswith("keeps 100 % [100–100]")


def test_nothing_to_compare_is_not_recommended() -> None:
    """A prompted persona that answers none of the questions (or no question at all) cannot be kept or shown kept."""
    none = ratio([True, False], [False, False])
    assert all(math.isnan(x) for x in none) and percent(none) == "n/a"
    verdict = judge(none, ratio([True] * 200, [True] * 200), 0, 0, 0)
    assert not verdict["recommended"] and "answers none of the held-out questions" in verdict["line"]
    assert judge(ratio([], []), ratio([True], [True]), 0, 0, 0)["recommended"] is False


def test_a_tiny_set_is_never_recommended() -> None:
    """A student that answers the CI run's three questions as the prompted base does has the interval [100–100]:
    the lower bound alone would recommend it; too few questions or tasks never are."""
    all_kept = ratio([True, True, False], [True, True, False])
    assert all_kept == (1.0, 1.0, 1.0)
    verdict = judge(all_kept, all_kept, 0, 0, 2, questions=3, tasks=3)
    assert not verdict["recommended"] and verdict["reasons"] == [
        f"too few to tell (3 held-out questions, 3 general tasks; at least {MIN_QUESTIONS} and {MIN_TASKS} needed)"
    ]
    assert judge(all_kept, all_kept, 0, 0, 2, questions=MIN_QUESTIONS, tasks=MIN_TASKS)["recommended"]
