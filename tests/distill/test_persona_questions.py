"""Issue 27 item 3: facts from prose as well as bullets, each with its passage; at least ten varied questions a fact,
questions the context cannot answer, a held-out set from another source, and the teacher's questions checked."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from distill_tools import facts, persona_prompts, questions

BENCH = Path(__file__).resolve().parents[2] / "bench" / "personas"
SHEET = (BENCH / "harbor-bakery" / "facts.md").read_text()
PROSE = (BENCH / "lumen-handbook" / "handbook.md").read_text()


def handwritten() -> set[str]:
    """The bench personas' hand-written held-out questions (never to be generated, let alone trained on)."""
    return {
        json.loads(line)["question"].strip().lower()
        for path in BENCH.glob("*/heldout.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    }


def test_facts_come_from_prose_sentences_and_bullets_each_with_its_passage() -> None:
    prose = facts.extract(PROSE)
    keys = {f.key for f in prose}
    assert {"2014", "Odile Brandt", "214", "4400", "Tidepool", "Ledgerline", "phish@lumenwick.example"} <= keys
    assert {"twenty-seven days", "fourteen characters", "orange", "Wednesday", "180 euros"} <= keys
    room = next(f for f in prose if f.key == "214")
    assert room.claim.startswith("The Firmware team works") and room.claim in room.passage
    assert room.passage.startswith("Our office is the old rope factory")  # the paragraph, not the whole handbook
    assert len(room.passage) < len(PROSE) / 4
    assert len({f.claim for f in prose}) >= 35  # claims per sentence: the handbook has ~40 sentences
    sheet = facts.extract(SHEET)
    phone = next(f for f in sheet if f.label == "Phone")
    assert phone.key == "555-0143" and phone.passage == "Saltmarsh Harbor Bakery: fact sheet\n- Phone: 555-0143."
    assert next(f for f in sheet if f.label == "Address").answers() == ["14", "Quayside Road", "Port Wren"]
    assert next(f for f in sheet if f.label == "Price").answers()[-2:] == ["6.50 dollars", "6.50"]


def test_a_labelled_fact_is_asked_as_people_ask_and_answered_in_a_sentence() -> None:
    sheet = facts.extract(SHEET)
    made = questions.template_questions(sheet)
    phone = sheet.index(next(f for f in sheet if f.label == "Phone"))
    about = [q for q in made if q.facts == (phone,)]
    natural = [q.text for q in about if q.kind == "natural"]
    assert len(natural) >= 8 and sum("phone" not in q.lower() for q in natural) >= 4  # many without the label's word
    assert {"How can I call you?", "How do I phone the bakery?"} <= set(natural)  # second person; by "the bakery"
    assert any("Saltmarsh Harbor Bakery" in q for q in natural)  # and by name
    assert {q.grounded for q in about if q.kind != "yesno"} >= {"You can call Saltmarsh Harbor Bakery on 555-0143."}
    wrapped = [q.text for q in about if q.kind in ("reworded", "conversational")]
    assert sum("call" in q or "ring" in q for q in wrapped) >= 3  # the wrappers take the people's forms in turn
    owner = next(q for q in made if q.kind == "direct" and q.wording == "direct-0" and "Ines Varga" in q.grounded)
    assert owner.text == "Who is the owner and head baker?"  # a person's label asks "who"
    assert "What year was it founded?" in {q.text for q in made}  # a participle label asks when, as English does
    odd = facts.extract("# Kestrel Farm\n\n- Name: Kestrel Farm.\n- Herd size: 48 goats.\n")
    herd = [q.text for q in questions.template_questions(odd) if q.kind == "natural" and q.facts == (1,)]
    assert herd == [
        "What's your herd size?",
        "Can you tell me about your herd size?",
        "What is the herd size of Kestrel Farm?",
    ]


def test_a_bullet_line_ends_a_sentence_so_its_first_word_is_no_name() -> None:
    unstopped = facts.extract("- Phone or text: 555-0142\n- Open noon to 10 pm.\n- Anyone under 16 needs an adult.\n")
    assert [f.key for f in unstopped] == ["555-0142", "10 pm", "16"]


def test_every_fact_is_asked_at_least_ten_ways_of_every_kind() -> None:
    for text in (SHEET, PROSE):
        found = facts.extract(text)
        made = questions.template_questions(found)
        split = questions.split(made)
        assert questions.per_fact(split.train, found) >= 10
        for i, fact in enumerate(found):
            if fact.key:
                kinds = {q.kind for q in split.train if i in q.facts}
                assert {"direct", "reworded", "indirect", "yesno", "conversational", "multi-turn"} <= kinds, fact
        assert all(q.source == questions.TEMPLATE for q in made)
        turns = [q for q in made if q.kind == "multi-turn"]
        assert turns and all(len(q.history) == 2 and q.history[1][0] == "assistant" for q in turns)
        combined = [q for q in made if q.kind == "multi"]
        assert combined and all(len(q.facts) == 2 and len(q.answers) == 2 for q in combined)


def test_questions_the_context_cannot_answer_are_answered_i_dont_know() -> None:
    made = questions.template_questions(facts.extract(PROSE))
    unknown = [q for q in made if q.kind == "unknown"]
    assert len(unknown) >= 4 and all(q.facts == () and q.grounded.startswith("I don't know") for q in unknown)
    words = set(re.findall(r"\w+", PROSE.lower()))
    for q in unknown:  # what it asks about (its longer words, names aside) appears nowhere in the handbook
        asked = {re.sub(r"(?:'s)?\W*$", "", w.lower()) for w in q.text.split()} - facts.COMMON
        assert not {w for w in asked if len(w) > 3 and w not in ("odile", "brandt", "tomasz", "reyes")} & words, q


def test_held_out_questions_are_disjoint_and_say_their_source() -> None:
    made = questions.template_questions(facts.extract(PROSE))
    split = questions.split(made)
    assert split.heldout and not {q.text for q in split.heldout} & {q.text for q in split.train}
    assert not {q.wording for q in split.heldout} & {q.wording for q in split.train}  # wordings never trained on
    assert "same generator" in split.source
    written = [
        questions.Question("When did the company start?", (1,), "teacher", questions.TEACHER, (("2014",),)),
        questions.Question("Who runs the place?", (4,), "teacher", questions.TEACHER, (("Odile",),)),
    ]
    split = questions.split(made + written)
    assert {q.source for q in split.heldout} == {questions.TEMPLATE}  # a generator the training never saw
    assert {q.source for q in split.train if q.kind != "unknown"} == {questions.TEACHER}
    assert split.source == "template questions (training used the teacher's)"


def test_no_hand_written_bench_question_is_ever_generated() -> None:
    own = handwritten()
    for text in (SHEET, PROSE, *(p.read_text() for p in BENCH.glob("*/*.md") if p.name != "system.md")):
        made = questions.template_questions(facts.extract(text))
        assert not {q.text.strip().lower() for q in made} & own


def test_each_training_prompt_carries_its_passage_not_the_whole_document() -> None:
    system = 'You are Wick. If the handbook does not cover it, answer "I don\'t know".'
    context = f"{system}\n\n## handbook.md\n\n{PROSE.strip()}"
    prompts = persona_prompts.build([PROSE], context, [], per_fact=12)
    about = [r for r in prompts.train if "214" in r.get("answer", "") or "room what" in r["prompt"]]
    assert about and all(r["system"].startswith(system) and "Ferrier Street" in r["system"] for r in about)
    assert all(len(r["system"]) < len(context) / 2 for r in about)  # its paragraph (two, asked with another fact)
    assert "Ledgerline" not in about[0]["system"]  # another paragraph's fact: not shown
    unknown = [r for r in prompts.train if r.get("answer", "").startswith("I don't know")]
    assert unknown and all(r["system"] == context for r in unknown)
    assert prompts.questions_per_fact >= 10 and prompts.teacher_share == 0.0
    assert prompts.heldout_source and not {h["prompt"] for h in prompts.heldout} & {r["prompt"] for r in prompts.train}
    strong = persona_prompts.build([PROSE], context, [], per_fact=12, strong=True)
    assert {r.get("answer", "")[:12] for r in strong.train if "answer" in r} == {"I don't know"}  # it answers the rest


def test_a_teachers_lines_are_checked_before_they_become_questions() -> None:
    fact = next(f for f in facts.extract(PROSE) if f.key == "Tidepool")
    assert questions.problem("What is the capital of France?", fact, set()) == "off the claim's topic"
    assert (
        questions.problem("What do parents receive at full pay?", fact, set()) == "off the claim's topic"
    )  # another claim
    assert questions.problem("Which tool do I use to request leave?", fact, set()) is None
    assert questions.problem("Which tool do I use to request leave?", fact, {"which tool do i use to request leave?"})
    assert questions.problem("Is leave requested in Tidepool?", fact, set()) is None  # yes/no may name the value
    assert questions.problem("Why is leave requested in Tidepool?", fact, set()) == "gives its answer away"
    assert questions.problem("Sure! Here are some questions:", fact, set()) == "not a question"

    def writer(prompt: str) -> str:  # what a capable teacher's reply looks like: numbered lines, a closing remark
        claim = prompt.split('sentence of the passage: "')[1].split('"\n')[0].rstrip(".")
        plain = " ".join(w for w in claim.split() if w.islower())  # no names or numbers: the answer is not given away
        asks = ["What is meant by", "Could you explain", "Tell me more about", "Why would", "How does it work that"]
        lines = [f"{i}. {a} {plain}?" for i, a in enumerate(asks, 1)] + [f"6. Is it true that {claim}?", f"7. {claim}?"]
        return "\n".join(lines + ["Hope this helps!"])

    written, note = questions.teacher_questions(facts.extract(PROSE), writer)
    assert written and all(q.source == questions.TEACHER and q.kind == "teacher" for q in written)
    assert Counter(q.text for q in written).most_common(1)[0][1] == 1  # the same line twice is kept once
    assert len(written) >= 4 * len({f.claim for f in facts.extract(PROSE)})
    assert "usable questions" in note
    silent, note = questions.teacher_questions(facts.extract(PROSE), lambda prompt: "I cannot help with that.")
    assert silent == [] and "templates only" in note
