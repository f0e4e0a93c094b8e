"""Questions in customers' words from the bundled base model (Gemma 3 270M, few-shot), round-trip checked with the
sentence vectors document search uses: real llama.cpp, real embedding model."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_persona_questions import SHEET, handwritten

from assistant.documents import embedding
from distill_tools import facts, persona_prompts, question_writer, questions


@pytest.fixture(scope="module")
def sheet() -> list[facts.Fact]:
    return facts.extract("\n".join(SHEET.splitlines()[:8]))  # name, owner, founded, address, phone, hours


@pytest.fixture(scope="module")
def written(gemma_path: Path, sheet: list[facts.Fact]) -> list[questions.Question]:
    return question_writer.write(sheet, question_writer.completer(gemma_path), per_claim=3, tries=1)


def test_each_written_line_is_a_question_about_its_claim_answered_by_its_sentence(
    written: list[questions.Question], sheet: list[facts.Fact]
) -> None:
    claims = {f.claim for f in sheet}
    assert len(written) >= len(claims) // 2, [q.text for q in written]
    per_claim: dict[str, int] = {}
    for q in written:
        own = sheet[q.facts[0]]
        assert q.source == question_writer.WRITER and q.kind == "written"
        assert questions.problem(q.text, own, set()) is None, q.text
        assert q.grounded == own.claim  # the answer is the context's own sentence: nothing invented
        assert all(sheet[i].claim == own.claim for i in q.facts)
        per_claim[own.claim] = per_claim.get(own.claim, 0) + 1
    assert max(per_claim.values()) <= 3
    assert len({q.text.lower() for q in written}) == len(written)
    assert not {q.text.strip().lower() for q in written} & handwritten()


def test_round_trip_keeps_what_finds_its_own_claim_and_drops_a_question_about_another(
    sheet: list[facts.Fact], written: list[questions.Question]
) -> None:
    hours = next(i for i, f in enumerate(sheet) if f.key.startswith("6:30"))
    phone = next(i for i, f in enumerate(sheet) if f.key == "555-0143")
    about_phone = questions.Question("What number should I ring to order?", (phone,), "written", "writer")
    misfiled = questions.Question("What number should I ring to order?", (hours,), "written", "writer")
    embed = embedding.default().embed
    assert question_writer.round_trip([about_phone, misfiled], sheet, embed) == [about_phone]
    kept = question_writer.round_trip(written, sheet, embed)
    assert set(kept) <= set(written)
    claims = list(dict.fromkeys(f.claim for f in sheet))
    for q in kept:
        scores = embed([q.text]) @ embed(claims).T
        assert claims[int(scores.argmax())] == sheet[q.facts[0]].claim


def test_written_questions_train_beside_the_templates_and_are_counted(written: list[questions.Question]) -> None:
    text = "\n".join(SHEET.splitlines()[:8])
    plain = persona_prompts.build([text], text, [], per_fact=4)
    more = persona_prompts.build([text], text, [], per_fact=4, write=lambda found: written)
    assert more.written == len(written) > 0
    texts = {q.text for q in written}
    assert [r for r in more.train if r["prompt"] not in texts] == plain.train  # the templates' share unchanged
    assert texts <= {r["prompt"] for r in more.train}
    assert {h["prompt"] for h in more.heldout} == {h["prompt"] for h in plain.heldout}  # held out as before
    answers = {r["prompt"]: r.get("answer") for r in more.train}
    assert all(answers[q.text] == q.grounded for q in written)
