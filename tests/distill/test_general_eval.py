"""The hand-written general-ability set: its checks, intervals, loop detector and the shipped data (no model)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from distill_tools.general_eval import (
    DEFAULT_PATH,
    MAX_TOKENS,
    OPEN_KINDS,
    degenerate,
    load_tasks,
    numbers,
    paired_ratio_interval,
    passes,
    ratio_interval,
    subset,
    wilson,
)

DATA = Path(DEFAULT_PATH).parent
KINDS = {"arithmetic", "fact", "definition", "code", "instruction", "writing"}


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        ({"type": "number", "value": 42}, "23 + 19 = 42.", "The sum is 36."),
        ({"type": "number", "value": 1200}, "That comes to 1,200 dollars.", "About 120 dollars."),
        ({"type": "number", "value": -8}, "10 - 18 is -8", "10 - 18 is 8"),
        ({"type": "number", "value": 7}, "She has seven apples left.", "She has 17 apples left."),
        ({"type": "number", "value": 2.5}, "It prints 2.5", "It prints 2"),
        ({"type": "any", "values": ["Ottawa"]}, "The capital is ottawa.", "The capital is Toronto."),
        ({"type": "any", "values": ["rain"]}, "Soft rain, falling.", "The train was late."),
        ({"type": "any", "values": ["=="]}, "Use == to compare.", "Use = to assign."),
        ({"type": "all", "values": ["river", "lantern"]}, "A lantern by the River.", "A lantern by the sea."),
        ({"type": "regex", "pattern": r"\[1,\s*2,\s*3\]"}, "It returns [1, 2, 3].", "It returns [3, 2, 1]."),
        ({"type": "max_words", "n": 5}, "Because bodies need rest.", "People sleep because their bodies need rest."),
        ({"type": "min_words", "n": 3}, "Cats nap daily.", "Cats."),
        ({"type": "lines", "n": 3}, "Grey clouds gather\nrain taps the window\n\nthe street shines", "One line only."),
        ({"type": "upper"}, "HELLO TEAM, HAVE A GREAT DAY!", "Hello team!"),
        ({"type": "starts_with", "value": "Yes"}, '**"Yes**, the Pacific is an ocean.', "The answer is yes."),
        ({"type": "items", "n": 3, "sep": ","}, "red, green, blue.", "1. red\n2. green\n3. blue"),
        ({"type": "items", "n": 3, "sep": ";"}, "rain; snow; fog", "rain, snow, fog"),
        (
            {"type": "and", "checks": [{"type": "number", "value": 4}, {"type": "max_words", "n": 2}]},
            "4",
            "A normal car has 4 wheels.",
        ),
        (
            {"type": "or", "checks": [{"type": "any", "values": ["hot"]}, {"type": "any", "values": ["warm"]}]},
            "warm",
            "cool",
        ),
        ({"type": "not", "check": {"type": "regex", "pattern": r"\d"}}, "A cat has four legs.", "A cat has 4 legs."),
    ],
)
def test_each_check_type_passes_and_fails(check: dict, good: str, bad: str) -> None:
    assert passes(good, check)
    assert not passes(bad, check)


def test_an_empty_answer_fails_max_words_and_an_unknown_type_is_an_error() -> None:
    assert not passes("   ", {"type": "max_words", "n": 5})
    with pytest.raises(ValueError):
        passes("x", {"type": "sonnet"})


def test_numbers_reads_digits_and_small_number_words() -> None:
    assert numbers("1,000 and -3, 2.5 or twelve; 1,2,3") == [1000, -3, 2.5, 12, 1, 2, 3]


def test_wilson_matches_known_values() -> None:
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=5e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_ratio_interval_is_the_katz_log_interval() -> None:
    ratio, low, high = ratio_interval(80, 100, 90, 100)
    assert ratio == pytest.approx(80 / 90)
    assert (low, high) == pytest.approx((0.7901, 1.0001), abs=5e-4)
    ratio, low, high = ratio_interval(0, 50, 25, 50)  # a zero count stays finite
    assert 0 < low < ratio < high < 1


def test_paired_ratio_interval_bootstraps_over_tasks() -> None:
    same = [True, False] * 50
    assert paired_ratio_interval(same, same) == (1.0, 1.0, 1.0)
    better = [True] * 60 + [False] * 40
    worse = [True] * 50 + [False] * 50
    ratio, low, high = paired_ratio_interval(better, worse, rounds=500, seed=1)
    assert ratio == pytest.approx(1.2) and 1.0 <= low < ratio < high < 1.6
    assert paired_ratio_interval(better, worse, rounds=500, seed=1) == (ratio, low, high)  # seeded
    wider = paired_ratio_interval(better[::4], worse[::4], rounds=500)
    assert wider[2] - wider[1] > high - low  # fewer tasks, wider interval
    with pytest.raises(ValueError):
        paired_ratio_interval([True], [True, False])


@pytest.mark.parametrize(
    "answer",
    [
        "The capital of France is Paris. The capital of France is Paris. The capital of France is Paris.",
        "Here are three fruits:\n- Apples\n- Apples\n- Apples\n- Apples",
        "No no no no no no no no no no",
        "1. Preheat the oven.\n2. Mix the flour and the sugar and the eggs and the milk and the flour and the "
        "sugar and the eggs and the milk and the flour and the sugar and the eggs",
        "Sure! " + "!" * 3 + " ha ha ha ha ha ha ha ha",
    ],
)
def test_degenerate_flags_repetition_loops(answer: str) -> None:
    assert degenerate(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make glucose "
        "and release oxygen. It happens mostly in the leaves, inside the chloroplasts.",
        "```js\nfunction f(n) {\n  if (n < 2) {\n    return 1;\n  }\n  return n * f(n - 1);\n}\n```",
        "1. Apples\n2. Bananas\n3. Cherries",
        "Grey clouds gather\nrain taps on the window\nthe street shines",
        "I don't know.",
        "",
    ],
)
def test_degenerate_leaves_normal_text_alone(answer: str) -> None:
    assert not degenerate(answer)


def _grams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_the_shipped_set_loads_balanced_unique_and_well_formed() -> None:
    tasks = load_tasks()
    assert len(tasks) >= 240
    kinds = Counter(task.kind for task in tasks)
    assert set(kinds) == KINDS and min(kinds.values()) >= 30
    assert len({task.id for task in tasks}) == len(tasks)
    assert len({" ".join(task.prompt.lower().split()) for task in tasks}) == len(tasks)
    for task in tasks:  # every check is of a known type (an unknown one raises)
        passes("", task.check)


def test_no_shipped_prompt_shares_five_words_with_the_training_or_old_task_prompts() -> None:
    seen: set[tuple[str, ...]] = set()
    for name in ("prompts.jsonl", "tasks.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                seen |= _grams(json.loads(line)["prompt"])
    overlapping = [task.id for task in load_tasks() if _grams(task.prompt) & seen]
    assert overlapping == []


def test_a_limited_run_takes_every_kind_in_turn() -> None:
    """``--general-limit N`` (the tests' quick path) scores N tasks of all six kinds, not N arithmetic ones; 0: all."""
    tasks = load_tasks()
    six = subset(tasks, 6)
    assert {t.kind for t in six} == KINDS and len({t.id for t in six}) == 6
    assert [t.kind for t in subset(tasks, 12)] == [t.kind for t in six] * 2
    assert subset(tasks, 0) == tasks and subset(tasks, 10_000) == tasks
    assert MAX_TOKENS.keys() == KINDS and set(OPEN_KINDS) <= KINDS  # every kind has its answer length


@pytest.mark.timeout(300)
def test_the_base_s_answers_are_generated_once(smollm_path: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Every distillation compares its student to the same base on the same tasks: the base's greedy answers are
    kept (per file and task set) and the next run reads them instead of generating 282 answers again."""
    from distill_tools import general_eval

    tasks = subset(load_tasks(), 3)
    first = general_eval.run_cached(smollm_path, tasks, tmp_path)
    assert [a.id for a in first] == [t.id for t in tasks] and len(list(tmp_path.glob("*.json"))) == 1
    ticks: list[int] = []

    def generate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the cached answers were generated again")

    monkeypatch.setattr(general_eval, "run", generate)
    again = general_eval.run_cached(smollm_path, tasks, tmp_path, on_answer=lambda: ticks.append(1))
    assert again == first and len(ticks) == 3  # progress still told, task by task
    with pytest.raises(AssertionError, match="generated again"):  # another task set is another cache entry
        general_eval.run_cached(smollm_path, subset(load_tasks(), 4), tmp_path)
