"""Issue 27 item 4: ``distill persona NAME --teacher MODEL|URL``. A real llama_cpp.server on 127.0.0.1 serving SmolLM2
(the student's tokenizer: logit KD from its log-probs) and the packaged Gemma 3 270M (another tokenizer: sequence-level
KD on its chat answers), each teacher seeing the passage that answers the question; a local model with the same
tokenizer; a teacher that is down or slow refused in one line within its deadline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from teacher_servers import LlamaTeacher, free_port

from distill_tools import DistillError, persona_teacher, teacher_cache
from distill_tools.served_teacher import ChatTeacher, ServedTeacher, fold_system

SYSTEM = "You are Pip, the helpdesk assistant of Brightwater Labs. Answer briefly."
FACTS = """# Helpdesk facts
- The office wifi password is tulip42.
- The support phone number is 555-0199.
- The annual retreat takes place in Lisbon.
"""
PASSAGE = "Helpdesk facts\n- The office wifi password is tulip42."
RECORDS = [
    {"prompt": "What is the office wifi password?", "system": f"{SYSTEM}\n\n{PASSAGE}"},
    {"prompt": "Who designed your logo?", "system": SYSTEM, "answer": "I don't know: my reference does not say."},
]


@pytest.fixture(scope="module")
def smollm_server(smollm_path: Path) -> Iterator[LlamaTeacher]:
    server = LlamaTeacher(smollm_path, alias="smollm2", chat_format="chatml", timeout_s=120)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gemma_server(gemma_path: Path) -> Iterator[LlamaTeacher]:
    server = LlamaTeacher(gemma_path, timeout_s=120)  # the GGUF has no chat template: the server is given Gemma's
    yield server
    server.close()


def run_pass(runner, tok, folder: Path, records=RECORDS, new: int = 12):  # noqa: ANN001, ANN202
    return teacher_cache.teacher_pass(
        records, runner, tok, folder, template="{prompt}", max_new_tokens=new, top_k=8, key="k", batch_size=4
    )


@pytest.mark.timeout(420)
def test_an_endpoint_with_the_students_tokenizer_teaches_word_by_word_from_the_passage(
    teacher, smollm_server: LlamaTeacher, tmp_path: Path
) -> None:  # noqa: ANN001
    tok = teacher.tokenizer
    chosen = persona_teacher.endpoint(smollm_server.url, tok, timeout_s=120)
    assert isinstance(chosen.runner, ServedTeacher) and not isinstance(chosen.runner, ChatTeacher)
    assert chosen.kd == "logit" and chosen.check.startswith("same tokens") and chosen.strong and chosen.ask
    outputs = run_pass(chosen.runner, tok, tmp_path / "cache")
    assert chosen.runner.word_level == 1 and chosen.runner.sequence_level == 1  # the given answer is one-hot
    student_view = tok.decode(outputs[0].prompt_ids)
    assert "tulip42" not in student_view and "What is the office wifi password?" in student_view
    answer = tok.decode(outputs[0].answer_ids, skip_special_tokens=True)
    assert "tulip42" in answer, answer  # the teacher saw the passage (the student's prompt does not have it)
    assert np.exp(outputs[0].topk_logprobs.astype(np.float64)).sum(-1).min() > 0.5  # real distributions, not one-hot
    assert tok.decode(outputs[1].answer_ids, skip_special_tokens=True) == RECORDS[1]["answer"]


@pytest.mark.timeout(420)
def test_an_endpoint_with_another_tokenizer_teaches_on_its_answers(
    teacher, gemma_server: LlamaTeacher, tmp_path: Path
) -> None:  # noqa: ANN001
    tok = teacher.tokenizer
    chosen = persona_teacher.endpoint(gemma_server.url, tok, timeout_s=120)
    assert isinstance(chosen.runner, ChatTeacher) and chosen.kd == "sequence" and "another tokenizer" in chosen.check
    outputs = run_pass(chosen.runner, tok, tmp_path / "cache", new=8)
    assert chosen.runner.sequence_level == 2 and chosen.runner.word_level == 0
    first = outputs[0]
    assert 1 < len(first.answer_ids) <= 8 and first.answer_ids[-1] == tok.eos_token_id  # re-tokenised for the student
    assert (first.topk_logprobs[:, 0] == 0).all() and np.isneginf(first.topk_logprobs[:, 1:].astype(float)).all()
    assert first.topk_indices[:, 0].tolist() == first.answer_ids  # one-hot on the teacher's own answer
    assert "tulip42" not in tok.decode(first.prompt_ids)  # the student's prompt: no passage
    assert RECORDS[1]["answer"].startswith(tok.decode(outputs[1].answer_ids, skip_special_tokens=True))  # as given
    chat = teacher_cache.messages(RECORDS[0], teacher=True)  # what the server is sent: the passage, in the user turn
    assert fold_system(chat) == [{"role": "user", "content": f"{RECORDS[0]['system']}\n\n{RECORDS[0]['prompt']}"}]


@pytest.mark.timeout(300)
def test_a_local_teacher_must_share_the_students_tokenizer(teacher, smollm_path: Path) -> None:  # noqa: ANN001
    chosen = persona_teacher.resolve(str(smollm_path), teacher)
    assert chosen.kd == "logit" and chosen.strong and chosen.check == "same tokens"
    assert persona_teacher.same_tokenizer(teacher.tokenizer, teacher.tokenizer)
    base = persona_teacher.resolve("", teacher)
    assert base.kd == "logit" and not base.strong and base.ask is not None
    base.close()


def test_a_teacher_that_is_down_or_silent_is_refused_in_one_line_within_its_deadline(teacher) -> None:  # noqa: ANN001
    port = free_port()
    with pytest.raises(DistillError, match="cannot connect") as down:
        persona_teacher.endpoint(f"http://127.0.0.1:{port}/v1", teacher.tokenizer, timeout_s=2)
    assert "\n" not in str(down.value) and "is it running?" in str(down.value)
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        with pytest.raises(DistillError, match="no answer within 1 s") as slow:
            persona_teacher.endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", teacher.tokenizer, timeout_s=1)
        assert time.monotonic() - start < 15 and "\n" not in str(slow.value)


@pytest.mark.timeout(900)
def test_distill_persona_with_a_teacher_that_is_down_says_so_in_one_line(assistant_home: Path, tmp_path: Path) -> None:
    (tmp_path / "system.md").write_text(SYSTEM)
    (tmp_path / "facts.md").write_text(FACTS)
    cli("persona", "add", "pip", "--system", str(tmp_path / "system.md"), "--context", str(tmp_path / "facts.md"))
    proc = cli("distill", "persona", "pip", "--ci", "--teacher", f"http://127.0.0.1:{free_port()}/v1")
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[distill persona]")]
    assert proc.returncode == 1 and len(lines) == 1 and "cannot connect" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((assistant_home / "personas" / "pip.json").read_text())["student"] == ""


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True, timeout=1700)
    assert not check or args[0] != "persona" or proc.returncode == 0, proc.stderr
    return proc


slow = pytest.mark.skipif(
    os.environ.get("ASSISTANT_SLOW_TESTS") != "1",
    reason="a whole CI-sized persona run with a served teacher (minutes); ASSISTANT_SLOW_TESTS=1 runs it",
)


@slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_distill_persona_with_a_served_teacher_makes_a_student(
    which: str, request: pytest.FixtureRequest, assistant_home: Path, tmp_path: Path
) -> None:
    server: LlamaTeacher = request.getfixturevalue(f"{which}_server")
    (tmp_path / "system.md").write_text(SYSTEM)
    (tmp_path / "facts.md").write_text(FACTS)
    cli("persona", "add", "pip", "--system", str(tmp_path / "system.md"), "--context", str(tmp_path / "facts.md"))
    proc = cli("distill", "persona", "pip", "--ci", "--json", "--teacher", server.url)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    q = summary["questions"]
    print(json.dumps({"questions": q, "timings_s": summary["timings_s"]}))
    assert q["teacher"] == server.url and q["kd"] == ("logit" if which == "smollm" else "sequence")
    assert q["facts"] == 3 and q["heldout_source"] and q["writer"] != "not asked"
    assert q["teacher_pass"].startswith("0/") == (which == "gemma")  # word-level targets only from SmolLM2
    assert Path(summary["gguf"]).is_file() and summary["verification"]["passed"]
