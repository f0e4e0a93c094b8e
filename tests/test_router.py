"""The router: question kind, the student's draft confidence, thresholds from config, the labelled set."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from assistant.chat.escalation.router import Route, Router, confidence, factual_score
from assistant.config import EscalationSettings


def draft(engine, question: str, tokens: int = 8) -> list:
    return list(engine.stream([{"role": "user", "content": question}], max_tokens=tokens, temperature=0.0))


def labelled() -> list[dict]:
    text = resources.files("assistant").joinpath("data/router_questions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(
    "question",
    [
        "Who was the second president of Botswana?",
        "In what year was the Treaty of Westphalia signed?",
        "How many moons does Neptune have?",
        "Name the founder of the Mughal Empire.",
        "What is the population of Reykjavik?",
    ],
)
def test_long_tail_factual_questions_look_factual(question: str) -> None:
    assert factual_score(question) >= 0.5


@pytest.mark.parametrize(
    "question",
    [
        "Write a Python function that reverses a string.",
        "Why is the sky blue?",
        "If a train travels 60 km in 45 minutes, what is its average speed?",
        "Tell me a joke about cats.",
        "How do I undo the last git commit but keep the changes?",
    ],
)
def test_reasoning_code_and_chat_do_not(question: str) -> None:
    assert factual_score(question) < 0.5


def test_confidence_is_the_geometric_mean_probability_of_the_draft(engine) -> None:
    deltas = draft(engine, "Who was the second president of Botswana?")
    score, entropy = confidence(deltas)
    assert len(deltas) == 8
    assert score == pytest.approx(math.exp(sum(d.logprob for d in deltas) / len(deltas)))
    assert 0.0 < score < 1.0 and entropy > 0.0
    assert confidence([]) == (1.0, 0.0)


def test_factual_question_with_an_unsure_draft_escalates(engine) -> None:
    question = "Who was the second president of Botswana?"
    router = Router(EscalationSettings())
    assert router.needs_draft(question)
    route = router.decide(question, "auto", draft(engine, question))
    assert route.escalate and route.kind == "factual" and route.draft_tokens == 8
    assert route.confidence is not None and route.confidence < EscalationSettings().min_confidence
    assert route.reason == f"escalated: low confidence {route.confidence:.2f} on a factual question"
    stored = route.to_dict()
    assert json.loads(json.dumps(stored))["reason"] == route.reason and stored["policy"] == "auto"


def test_thresholds_come_from_config(engine) -> None:
    question = "Who was the second president of Botswana?"
    deltas = draft(engine, question)
    confident = Router(EscalationSettings(min_confidence=0.01)).decide(question, "auto", deltas)
    assert not confident.escalate
    assert confident.reason.startswith("answered on-device: confident (")
    strict = Router(EscalationSettings(min_factual=0.999))
    assert not strict.needs_draft(question)
    assert strict.decide(question, "auto").reason == "answered on-device: not a factual question"


def test_code_question_stays_local_without_a_draft() -> None:
    router = Router(EscalationSettings())
    question = "Write a Python function that reverses a string."
    assert not router.needs_draft(question)
    route = router.decide(question, "auto")
    assert route == Route(
        escalate=False, reason="answered on-device: not a factual question", policy="auto", kind="other",
        factual=route.factual, router_ms=route.router_ms,
    )  # fmt: skip
    assert route.router_ms < 50


def test_labelled_set_is_shipped_and_the_classifier_generalises_to_its_held_out_split() -> None:
    rows = labelled()
    assert len(rows) >= 300
    assert {r["kind"] for r in rows} == {"factual", "code", "reasoning", "chat"}
    assert all(r["escalate"] == (r["kind"] == "factual") for r in rows)
    assert len({r["question"] for r in rows}) == len(rows)
    held_out = [r for r in rows if r["split"] == "heldout"]
    assert len(held_out) >= 100
    factual = [factual_score(r["question"]) >= 0.5 for r in held_out if r["escalate"]]
    others = [factual_score(r["question"]) >= 0.5 for r in held_out if not r["escalate"]]
    assert sum(factual) / len(factual) >= 0.8  # kind alone; the draft's confidence then keeps sure answers local
    assert sum(others) / len(others) <= 0.2
