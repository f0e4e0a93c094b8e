"""The broad general replay set (a training split) shares nothing with the general evaluation set."""

from __future__ import annotations

from collections import Counter

from distill_tools import general_eval, replay


def test_replay_set_is_broad_and_disjoint_from_the_evaluation_set() -> None:
    records = replay.load()
    prompts = [r["prompt"] for r in records]
    kinds = Counter(r["kind"] for r in records)
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    assert len(kinds) >= 6 and min(kinds.values()) >= 10, kinds
    evaluation = [t.prompt for t in general_eval.load_tasks()]
    assert not set(prompts) & set(evaluation)
    assert replay.overlaps(prompts, evaluation) == []


def test_near_duplicates_are_caught_beyond_exact_matches() -> None:
    assert replay.near_duplicate("What is 12 - 4?", "what is 4 - 12")  # same numbers, same task family
    assert replay.near_duplicate("Who wrote the novel 'Nineteen Eighty-Four'?", "Who wrote Nineteen Eighty-Four?")
    assert not replay.near_duplicate("What is the capital of Canada?", "What is the capital of Peru?")


def test_split_holds_out_a_seeded_disjoint_part() -> None:
    records = replay.load()
    train, heldout = replay.split(records, 32, seed=0)
    assert len(heldout) == 32 and len(train) == len(records) - 32
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in heldout}
    assert replay.split(records, 32, seed=0) == (train, heldout)
