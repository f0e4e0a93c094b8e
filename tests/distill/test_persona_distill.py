"""`distill persona`: prompts made from the context, a CI-sized run end to end, refusals that change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from persona_helpers import pip_add_args

from distill_tools import persona_prompts

CONTEXT = """# Helpdesk facts
- The office wifi password is tulip42.
- The support phone number is 555-0199.
- The annual retreat takes place in Lisbon.
"""


def cli(*args: str, home: Path, program: str = "assistant") -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSISTANT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", program, *args], capture_output=True, text=True, env=env, timeout=1700)


@pytest.fixture
def pip(assistant_home: Path, tmp_path: Path) -> str:
    system = "You are Pip, the helpdesk assistant of Brightwater Labs. Answer briefly."
    proc = cli(*pip_add_args(tmp_path, CONTEXT, system), home=assistant_home)
    assert proc.returncode == 0, proc.stderr
    return "pip"


def test_every_fact_is_asked_in_several_wordings_and_held_out_in_another() -> None:
    prompts = persona_prompts.build([CONTEXT], CONTEXT, [{"prompt": "Where do I park?"}], per_fact=12)
    assert [f.key for f in prompts.facts] == ["tulip42", "555-0199", "Lisbon"]
    train = {r["prompt"] for r in prompts.train}
    assert "What is the office wifi password?" in train and "Where do I park?" in train
    for fact in prompts.facts:
        assert (
            sum(fact.key in r.get("answer", "") for r in prompts.train) >= 10
        )  # ten wordings, learnt from its sentence
    held = [h for h in prompts.heldout if h.get("answers") and h["kind"] != "unknown"]
    assert {h["answers"][0] for h in held} == {"tulip42", "555-0199", "Lisbon"} and not {
        h["prompt"] for h in held
    } & train
    assert any(h["prompt"] in persona_prompts.IDENTITY for h in prompts.heldout)
    single = {r["prompt"] for r in prompts.train if "history" not in r}  # the fit check: trained, one turn, checkable
    assert {f["prompt"] for f in prompts.fit} <= single and len(prompts.fit) >= 3 * 5
    assert {f["answers"][0] for f in prompts.fit} == {"tulip42", "555-0199", "Lisbon"}
    assert not any(f["prompt"].startswith("Is it true") for f in prompts.fit)  # a "yes" is no evidence of a fact


def test_teacher_sees_the_context_and_the_student_does_not(teacher) -> None:  # noqa: ANN001
    from distill_tools import prompts
    from distill_tools.persona import MARKER, _WithContext

    tok = _WithContext(teacher.tokenizer, "SECRET CONTEXT")
    student = teacher.tokenizer.decode(prompts.prompt_ids(tok, "Hi"))
    prompted = teacher.tokenizer.decode(prompts.prompt_ids(tok, MARKER + "Hi"))
    assert "SECRET CONTEXT" in prompted and "SECRET CONTEXT" not in student and MARKER not in prompted
    assert prompted.endswith(student[student.index("<|im_start|>user") :])  # same question, same template


def test_refusals_change_nothing(pip: str, assistant_home: Path, tmp_path: Path, smollm_path: Path) -> None:
    from assistant.config import database_path
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    empty = tmp_path / "prompts.txt"
    empty.write_text("\n  \n")
    proc = cli("distill", "persona", "pip", "--prompts", str(empty), home=assistant_home)
    assert proc.returncode == 1 and "no prompts found" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("distill", "persona", "pip", "--epochs", "0", home=assistant_home)
    assert proc.returncode == 1 and "--epochs must be at least 1" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("distill", "persona", "nobody", home=assistant_home)
    assert proc.returncode == 1 and "no persona named 'nobody'" in proc.stderr
    proc = cli("persona", "nobody", home=assistant_home, program="distill_tools")  # the library's own command line
    assert proc.returncode == 1 and "no persona named 'nobody'" in proc.stderr and "Traceback" not in proc.stderr
    Registry(Store(database_path())).import_file(str(smollm_path), name="pip", link=True)
    proc = cli("distill", "persona", "pip", home=assistant_home)
    assert proc.returncode == 1 and "a model named 'pip' already exists" in proc.stderr, proc.stderr
    assert json.loads((assistant_home / "personas" / "pip.json").read_text())["student"] == ""


def test_a_bad_eval_file_is_refused_in_one_line_before_any_work(pip: str, assistant_home: Path, tmp_path: Path) -> None:
    """--eval FILE (issue 27.1): a bad line is one error naming the file and line, exit 1, before the model loads."""
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"question": "Who owns the bakery?", "answers": ["Ines"]}\n{"question": "When?"}\n')
    proc = cli("distill", "persona", "pip", "--eval", str(bad), home=assistant_home)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and f'--eval {bad}:2: needs "answers"' in lines[0], proc.stderr
    proc = cli("distill", "persona", "pip", "--eval", str(tmp_path / "none.jsonl"), home=assistant_home)
    assert proc.returncode == 1 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (assistant_home / "distill" / "persona" / "pip").exists()  # nothing was started


@pytest.mark.timeout(300)
def test_a_persona_over_documents_also_trains_open_book(teacher, assistant_home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Issue 28.3 (RAFT): a share of a document persona's questions is trained again with what the product sends,
    the passages real retrieval finds within the budget and then the question, while the answer and the targets stay
    the teacher's; conversations with earlier turns are not; a persona without documents gets none."""
    import numpy as np

    from assistant.chat import grounding
    from assistant.chat import persona as personas
    from assistant.cli.distill import persona_source
    from distill_tools.persona import Settings, open_book_message, open_book_outputs
    from distill_tools.teacher_cache import TeacherOutput, chat_ids

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "house.txt").write_text("The spare key is behind the blue door.\n\nThe wifi password is tulip42.\n")
    personas.save(personas.Persona(name="wick", system="Answer from the notes.", docs=[str(folder)]))
    settings = Settings(open_book=0.5, open_book_tokens=200)
    message = open_book_message(persona_source("wick"), settings)
    assert message is not None and open_book_message(persona_source("wick"), Settings(open_book=0)) is None
    questions = ["Where is the spare key?", "What is the wifi password?", "Who are you?", "And the key?"]
    records = [{"prompt": q} for q in questions[:3]] + [{"prompt": questions[3], "history": [["user", "Hi"]]}]
    tok = teacher.tokenizer
    outputs = [
        TeacherOutput(
            chat_ids(tok, [{"role": "user", "content": q}]), [5, 6], np.zeros((2, 4)), np.zeros((2, 4)), np.zeros(2)
        )
        for q in questions
    ]
    seen: list[tuple[str, int, int]] = []
    opened = open_book_outputs(outputs, records, message, tok, settings, lambda *a: seen.append(a))
    assert len(opened) == 2 and len(seen) == 2  # half of the three single-turn questions, rounded
    assert opened == open_book_outputs(outputs, records, message, tok, settings, lambda *a: None)  # seeded
    for out in opened:
        text = tok.decode(out.prompt_ids)
        asked = next(q for q in questions[:3] if text.rstrip().endswith(q + "<|im_end|>\n<|im_start|>assistant"))
        source = outputs[questions.index(asked)]
        assert grounding.HEADER in text and "house.txt, lines" in text  # the passages, as the chat adds them
        assert out.answer_ids is source.answer_ids and out.topk_logprobs is source.topk_logprobs
        assert len(out.prompt_ids) > len(source.prompt_ids)
    personas.save(personas.Persona(name="plain", system="Answer briefly."))  # no documents: no open-book questions
    assert open_book_message(persona_source("plain"), settings) is None


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 85 s on a quiet 2-core machine, 12 min on a busy one
def test_distill_persona_ci_run(pip: str, assistant_home: Path, tmp_path: Path) -> None:
    """Tiny run end to end: teacher pass with the context, a few steps, verified export, report, registry, switch;
    then the persona's lifecycle (issue 27.5): run again unchanged, edit, ask."""
    from assistant.config import database_path
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    proc = cli("distill", "persona", "pip", "--ci", "--json", "--progress-json", home=assistant_home)
    assert proc.returncode == 0, proc.stderr
    assert_only_progress(proc.stderr)
    summary = json.loads(proc.stdout)
    assert summary["facts"] == 3 and summary["steps"] == 4 and summary["verification"]["passed"]
    labels = list(summary["scores"])
    assert labels == ["teacher (base + context)", "student (no context)", "base (no context)"]
    assert summary["checkable_questions"] == summary["heldout"]["questions"] >= 2
    fit = summary["heldout"]["fit"]  # some of its own training questions, asked without the context
    assert fit["questions"] >= 3 and 0 <= fit["student"] <= fit["questions"]
    teacher_ft, student_ft = summary["first_turn"]["teacher"], summary["first_turn"]["student"]
    assert teacher_ft["prompt_tokens"] > student_ft["prompt_tokens"] + summary["context_tokens"] // 2
    assert summary["ttft_ratio"] > 0 and 0 <= summary["general"]["retention"] <= 2
    assert_the_evaluation_cannot_flatter(summary)
    report = json.loads(Path(summary["report"]["json"]).read_text())
    assert [m["label"] for m in report["models"]] == labels
    assert Path(summary["report"]["plot"]).read_bytes()[:4] == b"\x89PNG"
    gguf = Path(summary["gguf"])
    assert gguf == assistant_home / "models" / "pip.gguf" and not list(gguf.parent.glob("*.partial"))
    assert Registry(Store(database_path())).get("pip")["origin"] == "distilled"
    assert_only_the_upper_third_changed(gguf)

    persona = json.loads((assistant_home / "personas" / "pip.json").read_text())
    assert persona["student"] == "pip"  # the persona now runs prompt-free on its student
    assert persona["student_verdict"] == summary["verdict"]["line"]  # kept with the student's fingerprint
    shown = cli("persona", "show", "pip", home=assistant_home).stdout
    assert f"  verdict: {summary['verdict']['line']}" in shown.splitlines()
    proc = cli("ask", "--persona", "pip", "--json", "--max-tokens", "8", "Hello", home=assistant_home)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["model"] == "pip"
    conversation = Store(database_path()).conversation(answer["conversation_id"])
    assert conversation["persona"] == "pip" and conversation["system"] == ""
    assert answer["notes"] == []
    assert_nothing_to_do(assistant_home, gguf)
    assert_an_edit_makes_it_stale(assistant_home, tmp_path)


def assert_the_evaluation_cannot_flatter(summary: dict) -> None:
    """Issue 27.1: held-out questions from another source than the training questions (the report says which), the three
    models compared on them and the student vs the base on the general set (3 tasks: --ci), each ratio with an
    interval, loops counted, and a one-line verdict that a run this small never recommends."""
    held, general, verdict = summary["heldout"], summary["general"], summary["verdict"]
    teacher_wrote = summary["questions"]["teacher_written_share"] > 0  # then the template questions are held out
    assert held["origin"] == ("templates" if teacher_wrote else "corrections")
    assert held["source"] == summary["checkable_source"] and "training" in held["source"]
    assert set(held["correct"]) == {"prompted", "student", "base"} and len(held["student_vs_prompted"]) == 3
    assert general["tasks"] == 3 and set(general["passed"]) == set(general["degenerate"]) == {"student", "base"}
    assert len(general["interval_ratio"]) == 3 and general["seconds"] > 0
    assert not verdict["recommended"] and verdict["line"].startswith("not recommended: keeps ")
    few = f"too few to tell ({held['questions']} held-out questions, 3 general tasks"
    assert few in verdict["line"] and "\n" not in verdict["line"]


def assert_only_progress(stderr: str) -> None:
    """Row 16: off a terminal, stderr holds our own `progress:` lines only (no transformers or huggingface_hub
    bars such as `Loading weights: 100%|…|`, no library warnings): the chat UI and scripts read it."""
    others = [line for line in stderr.splitlines() if line.strip() and not line.startswith("progress: ")]
    assert others == [], others


def assert_nothing_to_do(home: Path, gguf: Path) -> None:
    """Row 15: the same command again, nothing changed (prompt, recipe, options; the student file is there and
    registered), says so in one line and does nothing (the student file is not rewritten), exit 0; --json gives the
    summary of the run that made the student, marked unchanged (the chat UI reads it)."""
    written = gguf.stat().st_mtime_ns
    proc = cli("distill", "persona", "pip", "--ci", home=home)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing changed since pip was distilled" in lines[0] and "--fresh" in lines[0], lines
    assert "(its verdict: not recommended: keeps " in lines[0]  # the verdict of the student in place
    assert not [line for line in proc.stderr.splitlines() if line.strip()], proc.stderr
    proc = cli("distill", "persona", "pip", "--ci", "--json", "--progress-json", home=home)
    assert proc.returncode == 0 and json.loads(proc.stdout)["unchanged"] is True, proc.stderr
    assert gguf.stat().st_mtime_ns == written


def assert_an_edit_makes_it_stale(home: Path, tmp_path: Path) -> None:
    """Row 10: a context added after distillation makes the student stale: the persona answers prompted (base model
    + the whole context) and says so, until distilled again (tests/test_persona_stale.py has the details)."""
    from assistant.config import database_path
    from assistant.storage.store import Store

    (tmp_path / "extra.md").write_text("- The cafeteria opens at 8 am.\n")
    proc = cli("persona", "edit", "pip", "--add-context", str(tmp_path / "extra.md"), home=home)
    assert proc.returncode == 0 and "distill persona pip" in proc.stdout, proc.stdout
    assert json.loads(cli("persona", "show", "pip", "--json", home=home).stdout)["state"] == "stale"
    proc = cli("ask", "--persona", "pip", "--json", "--max-tokens", "8", "Hello", home=home)
    answer = json.loads(proc.stdout)
    assert answer["model"] != "pip" and len(answer["notes"]) == 1 and "stale" in answer["notes"][0]
    assert "cafeteria" in Store(database_path()).conversation(answer["conversation_id"])["system"]


def test_checkpoints_resume_only_for_the_same_inputs(tmp_path: Path) -> None:
    from distill_tools.persona import fresh_checkpoints

    folder = tmp_path / "checkpoints"
    fresh_checkpoints(folder, ["context", [{"prompt": "a"}]])
    (folder / "ckpt-000004").mkdir()
    fresh_checkpoints(folder, ["context", [{"prompt": "a"}]])
    assert (folder / "ckpt-000004").exists()  # same inputs: Ctrl-C and run again resumes
    fresh_checkpoints(folder, ["edited context", [{"prompt": "a"}]])
    assert not (folder / "ckpt-000004").exists() and (folder / "inputs.key").exists()


def assert_only_the_upper_third_changed(student: Path) -> None:
    """The layers that did not train are the base GGUF's own bytes (its Q4_1 size and speed); trained ones are not."""
    import gguf
    import numpy as np

    from assistant.models.registry import embedded_model_path

    base = {t.name: t for t in gguf.GGUFReader(embedded_model_path()).tensors}
    kept, changed = set(), set()
    for tensor in gguf.GGUFReader(student).tensors:
        theirs = base[tensor.name]
        same = tensor.tensor_type == theirs.tensor_type and np.array_equal(tensor.data, theirs.data)
        (kept if same else changed).add(tensor.name)
    layer = {int(name.split(".")[1]) for name in changed if name.startswith("blk.")}
    assert layer == set(range(20, 30)) and all(name.startswith("blk.") for name in changed)
    assert {"token_embd.weight", "blk.0.ffn_up.weight", "blk.19.attn_q.weight", "blk.19.attn_norm.weight"} <= kept
    assert {"blk.20.ffn_up.weight", "blk.29.attn_q.weight"} <= changed and "blk.20.attn_norm.weight" in kept
