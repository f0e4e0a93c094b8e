"""A teacher behind a real llama_cpp.server on 127.0.0.1: the same teacher pass as the local torch teacher, a student
trained from it like one trained from the local pass, a server with another tokenizer refused before any work, and a
pass that resumes after the server died."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from teacher_servers import LlamaTeacher

from assistant.config import TeacherSettings
from distill_tools import DistillError, teacher_cache, torch_teacher
from distill_tools.served_teacher import ServedTeacher

RECORDS = [
    {"prompt": p}
    for p in ("What is the capital of France?", "Name three colours.", "What is 2 + 2?", "Name a large animal.")
]
TRAIN = RECORDS + [
    {"prompt": p}
    for p in (
        "What is the capital of Germany?",
        "Name three planets in the solar system.",
        "What is 19 - 5?",
        "What is the tallest mountain in the world?",
    )
]
HELDOUT = [
    {"prompt": p}
    for p in (
        "What is the capital of Italy?",
        "Name a fruit.",
        "What is 3 + 5?",
        "Name a small bird.",
        "What is the capital of Spain?",
        "Name two metals.",
        "What is 7 - 2?",
        "What is the longest river in the world?",
    )
]
K, NEW = 8, 12
# Measured here (SmolLM2-135M Q4_1): llama.cpp's log-probs differ from the dequantised torch model's by 0.06-0.09
# nats on average and at most 0.46 over the top-k entries above e^-5 (llama.cpp quantises the activations to 8 bits
# in Q4_1 matrix products; torch multiplies in float32), and a greedy answer can flip where two tokens are that close.
MEAN_TOL, MAX_TOL, TIE = 0.15, 0.6, 0.6


@pytest.fixture(scope="module")
def smollm_server(smollm_path: Path) -> Iterator[LlamaTeacher]:
    server = LlamaTeacher(smollm_path, alias="smollm2", chat_format="chatml", timeout_s=90)
    yield server
    server.close()


def served(server: LlamaTeacher, tokenizer, **settings) -> ServedTeacher:  # noqa: ANN001
    return ServedTeacher(
        TeacherSettings(url=server.url, model=server.model, timeout_s=60, connect_timeout_s=2, retries=1, **settings),
        tokenizer,
        concurrency=4,
    )


def local_teacher(model, tok) -> torch_teacher.TorchTeacher:  # noqa: ANN001
    return torch_teacher.TorchTeacher(model, tok.eos_token_id, tok.pad_token_id)


def _pass(runner, tok, folder: Path, records=RECORDS, batch_size: int = 4, on_shard=None):  # noqa: ANN001, ANN202
    return teacher_cache.teacher_pass(
        records,
        runner,
        tok,
        folder,
        template="{prompt}",
        max_new_tokens=NEW,
        top_k=K,
        key="k",
        batch_size=batch_size,
        on_shard=on_shard,
    )


@dataclass
class Passes:
    """The teacher pass over ``RECORDS`` by the local torch teacher and by the served one (computed once)."""

    local: list[teacher_cache.TeacherOutput]
    remote: list[teacher_cache.TeacherOutput]
    local_s: float
    remote_s: float
    runner: ServedTeacher


@pytest.fixture(scope="module")
def passes(teacher, smollm_server: LlamaTeacher, tmp_path_factory: pytest.TempPathFactory) -> Passes:  # noqa: ANN001
    tok, folder = teacher.tokenizer, tmp_path_factory.mktemp("passes")
    start = time.perf_counter()
    local = _pass(local_teacher(teacher.model, tok), tok, folder / "l", TRAIN, batch_size=len(TRAIN))
    local_s = time.perf_counter() - start
    runner = served(smollm_server, tok)
    assert runner.check_tokenizer().startswith("same tokens")
    start = time.perf_counter()
    remote = _pass(runner, tok, folder / "r", TRAIN, batch_size=len(TRAIN))
    return Passes(local, remote, local_s, time.perf_counter() - start, runner)


@dataclass
class Agreement:
    """How two sets of greedy answers (with their top-k rows) for the same prompts agree."""

    identical: int = 0  # answers equal token for token
    flip_gaps: list[tuple[float, float]] = field(default_factory=list)  # where answers part: top-1 − top-2 in each
    diffs: list[float] = field(default_factory=list)  # |Δ log p| over the first's top-k entries above e^-5, while equal
    leading_missing: int = 0  # positions where the first's top-3 (end-of-turn aside) is not in the second's top-k


def gap(output: teacher_cache.TeacherOutput, position: int) -> float:
    """How far the top token leads the second at an answer position (log-prob difference)."""
    return float(output.topk_logprobs[position, 0]) - float(output.topk_logprobs[position, 1])


def agreement(
    first: list[teacher_cache.TeacherOutput], second: list[teacher_cache.TeacherOutput], eos: int
) -> Agreement:
    result = Agreement()
    for a, b in zip(first, second):
        assert b.prompt_ids == a.prompt_ids
        same = 0
        while same < min(len(a.answer_ids), len(b.answer_ids)) and a.answer_ids[same] == b.answer_ids[same]:
            same += 1
        result.identical += same == len(a.answer_ids) == len(b.answer_ids)
        if same < min(len(a.answer_ids), len(b.answer_ids)):
            result.flip_gaps.append((gap(a, same), gap(b, same)))
        for i in range(same):
            if b.answer_ids[i] == eos:
                continue  # the stop position is a one-hot target (servers return no log-probs for it)
            row = dict(zip(b.topk_indices[i].tolist(), b.topk_logprobs[i].astype(float)))
            for token, value in zip(a.topk_indices[i].tolist(), a.topk_logprobs[i].astype(float)):
                if value > -5 and token in row:
                    result.diffs.append(abs(value - row[token]))
            # end-of-turn aside: llama-cpp-python's server names it by its empty text, which maps onto no one token
            result.leading_missing += len(set(a.topk_indices[i, :3].tolist()) - set(row) - {eos}) > 0
    return result


@pytest.mark.timeout(300)
def test_served_teacher_pass_matches_the_local_pass(teacher, passes: Passes) -> None:  # noqa: ANN001
    tok, local, remote = teacher.tokenizer, passes.local, passes.remote
    assert passes.runner.word_level == len(TRAIN) and passes.runner.sequence_level == 0
    print(
        f"teacher pass: local {sum(len(o.answer_ids) for o in local) / passes.local_s:.1f} tok/s, "
        f"served {sum(len(o.answer_ids) for o in remote) / passes.remote_s:.1f} tok/s"
    )
    for a, b in zip(local, remote):
        assert b.topk_indices.dtype == a.topk_indices.dtype == np.uint16 and b.topk_logprobs.dtype == np.float16
        assert b.topk_logprobs.shape == (len(b.answer_ids), K) and b.tail.shape == (len(b.answer_ids),)
        mass = np.exp(b.topk_logprobs.astype(np.float64)).sum(-1) + np.exp(b.tail.astype(np.float64))
        assert np.allclose(mass, 1.0, atol=5e-3)  # top-k + tail = 1, as the local pass writes
    same = agreement(local, remote, tok.eos_token_id)
    assert same.identical >= len(TRAIN) // 2
    assert all(local_gap < TIE for local_gap, _ in same.flip_gaps), same  # answers part only at the teacher's near-ties
    assert same.leading_missing == 0  # the same leading tokens wherever the answers agree
    assert same.diffs and np.mean(same.diffs) < MEAN_TOL and max(same.diffs) < MAX_TOL, same


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the test: on this 2-core machine, with one busy process beside it, two threads (the
    default) made the student test 6× slower than one (130 s against 21 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def student_log_probs(model, tok, outputs: list[teacher_cache.TeacherOutput]):  # noqa: ANN001, ANN201
    """Log-softmax over the whole vocabulary at every answer position of ``outputs``, the answers forced."""
    import torch

    runs = local_teacher(model, tok).run([o.prompt_ids for o in outputs], [o.answer_ids for o in outputs], NEW)
    return torch.log_softmax(torch.from_numpy(np.concatenate([logits for _, logits in runs])).double(), -1)


def divergence(p, q) -> tuple[float, float]:  # noqa: ANN001
    """(mean KL(p ‖ q) per position, mean |Δ log p| over p's top-k entries above e^-5) of two log-softmax tables."""
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    top = p.topk(K, -1)
    kept = top.values > -5
    return kl, float((top.values - q.gather(-1, top.indices)).abs()[kept].mean())


@pytest.mark.timeout(300)
def test_a_student_trained_from_the_served_pass_matches_one_trained_from_the_local_pass(
    teacher, passes: Passes, tmp_path: Path, one_torch_thread: None
) -> None:  # noqa: ANN001
    """The teacher pruned to 28 layers (layers 14 and 15 dropped), trained 4 AdamW steps (lr 1e-4, batch 4) on each
    pass over the same 8 prompts, answers 8 held-out prompts greedily (~21 s here on one torch thread).

    Measured here (the passes: mean |Δ log p| 0.078, answers part at near-ties in 2 of the 8 prompts): 4/8 held-out
    answers identical (the untrained student shares 0/8 with either); the other 4 part where one student is near-tied
    (top-1 − top-2 gaps, local / served student: 0.15/0.94, 0.51/0.09, 0.33/0.44, 0.12/0.73). Where the answers agree
    the students' top-k log-probs differ by 0.24 nats on average, 3× the passes' own: training amplifies the
    quantisation error (the students learn from different text where the passes' answers part, and AdamW's first
    steps follow the gradients' signs). On the local student's answers, KL(local ‖ served student) = 0.062 (mean
    |Δ log p| 0.34) while training moved the students 0.44 and 0.40 from the untrained one (7×; |Δ| 0.82, 0.75).
    """
    import shutil

    from distill_tools import batches
    from distill_tools import student as students
    from distill_tools.recipe import LossSection, TrainSection, choose_layers
    from distill_tools.train import train

    tok = teacher.tokenizer
    keep = choose_layers("0-13,16-29", teacher.model.config.num_hidden_layers)
    cfg = TrainSection(max_steps=4, batch_size=4, warmup_steps=1, lr=1e-4, checkpoint_every=100)
    models, held = {}, {}
    for name, outputs in (("untrained", None), ("local", passes.local), ("served", passes.remote)):
        model = students.prune(teacher.model, keep)
        if outputs is not None:
            folder = tmp_path / name
            train(
                model, batches.examples(outputs, 64), cfg, LossSection(), pad_id=tok.pad_token_id, seed=0, folder=folder
            )
            shutil.rmtree(folder)  # its final checkpoint (~1.3 GB) is not needed here
        models[name] = model.eval()
        held[name] = _pass(local_teacher(model, tok), tok, tmp_path / name, HELDOUT, batch_size=len(HELDOUT))
    same = agreement(held["local"], held["served"], tok.eos_token_id)
    untrained = [agreement(held[name], held["untrained"], tok.eos_token_id).identical for name in ("local", "served")]
    passes_same = agreement(passes.local, passes.remote, tok.eos_token_id)
    log_p = {name: student_log_probs(model, tok, held["local"]) for name, model in models.items()}
    apart = divergence(log_p["local"], log_p["served"])
    moved = [divergence(log_p[name], log_p["untrained"]) for name in ("local", "served")]
    print(
        f"held-out answers identical {same.identical}/{len(HELDOUT)} (with the untrained student {untrained}), "
        f"parting at gaps "
        f"{[(round(a, 2), round(b, 2)) for a, b in same.flip_gaps]}; mean |Δ log p| students "
        f"{np.mean(same.diffs):.3f} vs passes {np.mean(passes_same.diffs):.3f}; (KL, mean |Δ log p|) between the "
        f"students {apart[0]:.3f}, {apart[1]:.3f}; from the untrained one {[f'{k:.3f}, {d:.3f}' for k, d in moved]}"
    )
    assert same.identical >= 3 and all(min(gaps) < TIE for gaps in same.flip_gaps), same  # only at a near-tie
    assert max(untrained) < same.identical, untrained  # the students agree because they learnt the same
    assert np.mean(same.diffs) < 5 * np.mean(passes_same.diffs)  # within a small multiple of the quantisation error
    assert all(kl > 4 * apart[0] for kl, _ in moved)  # training moved each student far more than they differ


@pytest.mark.timeout(240)
def test_a_server_with_another_tokenizer_is_refused_before_the_teacher_pass(
    gemma_path: Path, smollm_path: Path, assistant_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.cli.main import main

    server = LlamaTeacher(gemma_path, timeout_s=90)
    try:
        path = tmp_path / "served.toml"
        path.write_text(
            f'name = "served-student"\noutput_dir = "work"\n[teacher]\nurl = "{server.url}"\n'
            f'model = "{server.model}"\n[student]\nmodel = "{smollm_path}"\n[data]\nlimit = 4\n'
        )
        assert main(["distill", "run", str(path)]) == 1
    finally:
        server.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not share the student's tokenizer" in err and "Traceback" not in err
    assert not (tmp_path / "work" / "teacher-cache").exists()  # refused before any teacher pass


@pytest.mark.timeout(300)
def test_a_served_teacher_that_dies_mid_pass_resumes_from_the_last_shard(
    teacher, smollm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("DISTILL_TEST_KEY", secret)
    tok, folder = teacher.tokenizer, tmp_path / "cache"
    server = LlamaTeacher(smollm_path, alias="smollm2", chat_format="chatml", timeout_s=90)
    try:
        runner = served(server, tok, api_key_env="DISTILL_TEST_KEY")
        with pytest.raises(DistillError, match="run again to resume") as info:
            _pass(runner, tok, folder, batch_size=2, on_shard=lambda shard: server.close())  # dies after shard 0
    finally:
        if server.process.poll() is None:
            server.close()
    assert "\n" not in str(info.value) and secret not in str(info.value)
    first = (folder / "shard-00000.safetensors").read_bytes()
    assert not (folder / "shard-00001.safetensors").exists() and runner.word_level == 2  # shard 1 never answered

    server = LlamaTeacher(smollm_path, alias="smollm2", chat_format="chatml", timeout_s=90)  # back, on another port
    try:
        again = served(server, tok, api_key_env="DISTILL_TEST_KEY")
        outputs = _pass(again, tok, folder, batch_size=2)
    finally:
        server.close()
    assert again.word_level == 2  # only the prompts of the missing shard were asked
    assert (folder / "shard-00000.safetensors").read_bytes() == first and len(outputs) == len(RECORDS)
    assert all(len(o.answer_ids) > 0 for o in outputs)
    for path in folder.iterdir():
        assert secret.encode() not in path.read_bytes()
    assert json.loads((folder / "meta.json").read_text())["records"] == len(RECORDS)


@pytest.mark.skipif(
    os.environ.get("ASSISTANT_SLOW_TESTS") != "1",
    reason="the whole pipeline with a served teacher (~90 s here); ASSISTANT_SLOW_TESTS=1 runs it",
)
@pytest.mark.timeout(600)
def test_a_recipe_with_a_served_teacher_makes_a_registered_student(
    smollm_server: LlamaTeacher,
    smollm_path: Path,
    assistant_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from assistant.cli.main import main

    secret = "sk-test-fedcba9876543210"
    monkeypatch.setenv("DISTILL_TEST_KEY", secret)
    path = tmp_path / "served.toml"
    path.write_text(
        f'name = "served-student"\noutput_dir = "work"\n[teacher]\nurl = "{smollm_server.url}"\n'
        f'model = "smollm2"\napi_key_env = "DISTILL_TEST_KEY"\n[student]\nmodel = "{smollm_path}"\n'
        "[data]\nlimit = 8\nheldout = 0\nmax_new_tokens = 16\nmax_length = 64\ntop_k = 16\nbatch_size = 4\n"
        "[train]\nmax_steps = 2\nbatch_size = 4\nwarmup_steps = 1\n[eval]\nbaseline = false\n"
    )
    assert main(["distill", "run", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert "tokenizer check: same tokens" in err and "answers with word-level targets" in summary["teacher_kd"]
    assert summary["verification"]["passed"] and summary["registered"] and summary["models"] == []
    for file in (tmp_path / "work").rglob("*"):
        assert not file.is_file() or secret.encode() not in file.read_bytes()
    assert secret not in out + err
