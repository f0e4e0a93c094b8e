"""The persona evaluation: held-out questions from the user's file or a form training never asks, the three models
and general ability on the real packaged model, and the fields of the report (issue 27 item 1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill_tools import DistillError
from distill_tools.evaluate import correct
from distill_tools.general_eval import load_tasks, subset
from distill_tools.persona_eval import HeldOut, corrections, evaluate_persona, read_eval_file

BENCH = Path(__file__).resolve().parents[2] / "bench" / "personas"


@pytest.mark.timeout(300)
def test_evaluate_persona_reports_three_models_general_ability_and_a_verdict(smollm_path: Path) -> None:
    """It once called the KL comparison without its top-k argument (a TypeError after the whole training). The
    report carries the source of its questions, each ratio with its interval, loops counted, and the verdict."""
    heldout = HeldOut([{"prompt": "What is the capital of France?", "answers": ["Paris"], "kind": "fact"}], "test")
    general = subset(load_tasks(), 6)
    seen: list[tuple[str, int, int]] = []
    result = evaluate_persona(
        smollm_path,
        smollm_path,
        "You are a geography tutor.",
        heldout,
        ["What is the capital of France?"],
        general,
        max_new=16,
        n_ctx=512,
        top_k=8,
        progress=lambda phase, done, total: seen.append((phase, done, total)),
        fit=[{"prompt": "What is the capital of France?", "answers": ["Paris"]}],
    )
    teacher, student, base = result["reports"]
    assert teacher.mean_kl == 0.0 and teacher.top1_agreement == 1.0
    for report in (student, base):  # the same weights without the system prompt: measured, finite figures
        assert report.mean_kl is not None and report.mean_kl >= 0.0
        assert 0.0 <= report.top1_agreement <= 1.0 and report.outside_topk is not None
    held = result["heldout"]
    assert held["source"] == "test" and held["questions"] == 1
    assert set(held["correct"]) == {"prompted", "student", "base"} and held["by_kind"]["fact"]["questions"] == 1
    general_block = result["general"]
    assert general_block["tasks"] == 6 and {t.kind for t in general} == {
        "arithmetic", "fact", "definition", "code", "instruction", "writing"
    }  # fmt: skip
    # the student is the base's own file: the same greedy answers, so the ratio is exactly 1 (when any passed)
    assert general_block["passed"]["student"] == general_block["passed"]["base"]
    assert general_block["degenerate"]["student"] == general_block["degenerate"]["base"]
    assert general_block["seconds"] > 0 and len(general_block["interval_ratio"]) == 3
    assert held["student_vs_prompted"][0] == (held["correct"]["student"] / 1 if held["correct"]["prompted"] else None)
    verdict = result["verdict"]
    assert not verdict["recommended"]  # one question and six tasks can never clear the lower bounds
    assert verdict["line"].startswith("not recommended: keeps ") and "too few to tell" in verdict["line"]
    # the fit question is the held-out one here, asked of the same student without context: the same greedy answer
    assert held["fit"] == {"questions": 1, "student": held["correct"]["student"]}
    got = held["correct"]["student"]
    assert verdict["fit"].startswith(f"its own training questions, no context: student {got}/1 (")
    assert seen[0] == ("evaluating", 0, 3 + 1 + 12 + 1) and seen[-1] == ("evaluating", 17, 17)  # every step told


@pytest.mark.timeout(300)
def test_a_persona_over_documents_is_judged_with_retrieval(smollm_path: Path, tmp_path: Path) -> None:
    """Issue 28.3: the prompted base and the student are scored with the passages the product retrieves for each
    question (the student closed-book beside them), and the verdict judges the student as it answers in the
    product: with retrieval. Real retrieval: the assistant's own, over a folder, through ``persona_source``."""
    from assistant.chat import persona as personas
    from assistant.cli.distill import persona_source

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "house.txt").write_text("The spare key is behind the blue door.\nThe wifi password is tulip42.\n")
    personas.save(personas.Persona(name="wick", system="Answer from the notes.", docs=[str(folder)]))
    source = persona_source("wick")
    assert source.retrieve is not None
    asked: list[str] = []

    def retrieve(question: str) -> str:
        asked.append(question)
        return source.retrieve(question)  # type: ignore[misc]

    message = source.retrieve("Where is the spare key?")
    assert "behind the blue door" in message and message.endswith("Where is the spare key?")
    heldout = HeldOut([{"prompt": "What is the wifi password?", "answers": ["tulip42"]}], "test")
    result = evaluate_persona(
        smollm_path, smollm_path, source.context, heldout, [], subset(load_tasks(), 2), max_new=16, retrieve=retrieve
    )
    labels = [r.label for r in result["reports"]]
    assert labels == ["teacher (base + retrieval)", "student (no context)", "base (no context)", "student + retrieval"]
    assert asked == ["What is the wifi password?"]  # once per question: the teacher and the student see the same
    held = result["heldout"]
    assert set(held["correct"]) == {"prompted", "student", "base", "grounded"}
    assert len(held["closed_book_vs_prompted"]) == 3 and len(held["student_vs_prompted"]) == 3
    grounded = result["reports"][3].answers[0]  # what the verdict judged: the student's answer with the passages
    assert grounded["prompt"] == "What is the wifi password?" and grounded["answer"]
    from distill_tools.persona_cli import _evaluation

    printed = "\n".join(_evaluation({"heldout": held, "general": result["general"]}))
    assert "prompted base + retrieval" in printed and "student closed-book" in printed


def test_the_report_tells_under_training_from_wordings_that_do_not_carry_over() -> None:
    from distill_tools.persona_cli import _fit

    assert "it has learnt its material" in _fit({"questions": 24, "student": 20})[0]
    assert "more --epochs should help" in _fit({"questions": 24, "student": 12})[0]
    assert _fit({"questions": 0, "student": 0}) == _fit(None) == []


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "eval.jsonl"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no questions"),
        ("\n  \n", "no questions"),
        ('{"question": "Who?", "answers": ["Ines"]}\n{"question": "When?"\n', ":2: invalid JSON"),
        ('["Who?", "Ines"]\n', ":1: expected a JSON object"),
        ('{"answers": ["Ines"]}\n', ':1: needs "question"'),
        ('{"question": "  ", "answers": ["Ines"]}\n', ':1: needs "question"'),
        ('{"question": "Who?"}\n', ':1: needs "answers"'),
        ('{"question": "Who?", "answers": []}\n', ':1: needs "answers"'),
        ('{"question": "Who?", "answers": ["Ines", 3]}\n', ':1: needs "answers"'),
        ('{"question": "Who?", "answers": "Ines"}\n', ':1: needs "answers"'),
        ('{"question": "Who?", "answers": ["Ines"], "kind": 2}\n', ':1: "kind" must be a string'),
    ],
)
def test_a_bad_eval_file_is_one_line_naming_it(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DistillError) as caught:
        read_eval_file(path)
    message = str(caught.value)
    assert message.startswith(f"--eval {path}") and error in message and "\n" not in message


def test_a_missing_or_binary_eval_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="no such file"):
        read_eval_file(tmp_path / "nope.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DistillError, match="cannot read it"):
        read_eval_file(tmp_path / "bin.jsonl")


def test_the_bench_personas_questions_are_a_valid_eval_file() -> None:
    """The format is the bench's own: "question", "answers", "kind" (and "prompt" / "answer" are taken too)."""
    counts = {"harbor-bakery": 24, "lumen-handbook": 30, "tidewater-bikes": 24, "tufted-otter-grooming": 24}
    counts |= {"tinderloft-makers": 24, "brindlewick-ferry": 30, "quillmoss-clinic": 40, "saltfen-library": 40}
    assert {p.name for p in BENCH.iterdir() if p.is_dir()} == set(counts)
    for name, count in counts.items():
        questions = read_eval_file(BENCH / name / "heldout.jsonl")
        assert len(questions) == count and all(q["prompt"] and q["answers"] and q["kind"] for q in questions)
        context = " ".join(p.read_text() for p in (BENCH / name).glob("*.md") if p.name != "system.md")
        found = [correct(context, q["answers"]) for q in questions if q["kind"] in ("reworded", "indirect", "casual")]
        assert all(found), f"{name}: a question none of whose answers is in its context"


def test_prompt_and_answer_are_accepted_too(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"prompt": " Who bakes? ", "answer": "Ines"}) + "\n")
    assert read_eval_file(path) == [{"prompt": "Who bakes?", "answers": ["Ines"], "kind": ""}]


@dataclass(frozen=True)
class Fact:  # what persona_eval reads of distill_tools.facts.Fact
    claim: str
    key: str
    kind: str

    def answers(self) -> list[str]:
        return [self.key] if self.key else []


def test_corrections_ask_back_an_altered_claim_whose_answer_is_not_in_the_question() -> None:
    facts = [
        Fact("Phone: 555-0143.", "555-0143", "number"),
        Fact("Founded: 2009.", "2009", "year"),
        Fact("Owner and head baker: Ines Varga.", "Ines Varga", "name"),
        Fact("The sales lead is Odile Brand.", "Odile Brand", "name"),
        Fact("Closing day: closed every Monday.", "Monday", "weekday"),
        Fact("The bakery smells of bread.", "", ""),  # nothing to check: left out
        Fact("Colour: the door is teal.", "teal", "colour"),  # no other colour to swap in: left out
    ]
    trained = ['Someone told me "Founded: 2000". Is that right? If not, what is it really?']
    held = corrections(facts, trained)
    assert held.origin == "corrections" and "no training prompt" in held.source and held.dropped == 1
    prompts = [q["prompt"] for q in held.questions]
    assert prompts == [
        'Someone told me "Phone: 555-0144". Is that right? If not, what is it really?',
        'Someone told me "Owner and head baker: Odile Brand". Is that right? If not, what is it really?',
        'Someone told me "The sales lead is Ines Varga". Is that right? If not, what is it really?',
        'Someone told me "Closing day: closed every Tuesday". Is that right? If not, what is it really?',
    ]
    assert [q["answers"] for q in held.questions] == [["555-0143"], ["Ines Varga"], ["Odile Brand"], ["Monday"]]
    assert all(q["answers"][0] not in q["prompt"] for q in held.questions)
