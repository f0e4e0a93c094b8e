"""The real pipeline on the real SmolLM2 teacher: tiny end to end, resume, export failures, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_tools import (
    RECIPES_DIR,
    DistillError,
    batches,
    checks,
    export,
    pipeline,
    prompts,
    recipe,
    student,
    teacher_cache,
    torch_teacher,
    train,
)
from distill_tools.recipe import LossSection, TrainSection

TINY = (RECIPES_DIR / "tiny.toml").read_text()


def tiny_recipe(folder: Path, **changes: str) -> Path:
    """The bundled tiny recipe, smaller still (2 steps, 2 tasks, 1 held-out prompt), with ``changes`` (TOML lines)."""
    text = TINY
    for old, new in {
        "max_steps = 4": "max_steps = 2",
        "limit = 6": "limit = 2",
        "heldout = 2": "heldout = 1",
        "max_new_tokens = 8": "max_new_tokens = 4",
        **changes,
    }.items():
        assert old in text
        text = text.replace(old, new)
    path = folder / "tiny.toml"
    path.write_text(text)
    return path


def registered(name: str) -> dict:
    from assistant.config import database_path
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    return Registry(Store(database_path())).get(name)


@pytest.mark.timeout(900)
def test_tiny_recipe_lifecycle(assistant_home: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """run → recipe edited → run again, Ctrl-C in evaluation → export: each leaves the right model registered.

    First run, on a non-terminal stdout: one line per phase, no bars, no llama.cpp log; leftovers of a killed
    export are removed; the student is registered with its sha256 and names its teacher and recipe; the report
    holds the export check and timings. Second run with a changed lr: the stale checkpoint is not resumed.
    """
    from assistant.cli.main import main
    from assistant.models.engine import Engine
    from assistant.models.gguf_info import read_info, sha256_file

    models = assistant_home / "models"
    models.mkdir()
    leftovers = [export._temp(models / "smollm2-tiny-student.gguf") for _ in range(2)]
    path = tiny_recipe(tmp_path)
    capfd.readouterr()
    assert main(["distill", "run", str(path)]) == 0
    out, err = capfd.readouterr()
    for phase in ("teacher:", "teacher pass:", "student:", "train:", "export:", "registered:", "evaluate:", "report:"):
        assert any(line.startswith(phase) for line in out.splitlines()), (phase, out)
    assert "cleanup: removed 2 leftover file(s)" in out
    assert "\r" not in out + err, err[-2000:]
    for marker in ("llama_", "ggml_", "print_info", "load_tensors", "type = "):  # llama.cpp's log
        assert marker not in out + err, err[-2000:]
    assert "68 bytes/token" in out  # top-16: 16 float16 log-probs + 16 uint16 ids + the float32 tail
    assert not any(p.exists() for p in leftovers) and not list(models.glob(".*partial"))
    gguf = models / "smollm2-tiny-student.gguf"
    row = registered("smollm2-tiny-student")
    assert row["origin"] == "distilled" and row["architecture"] == "llama" and row["sha256"] == sha256_file(gguf)
    info = read_info(gguf)
    assert info.teacher == "smollm2-135m" and info.recipe == str(path)
    assert main(["models", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capfd.readouterr().out)}
    assert listed["smollm2-tiny-student"]["teacher"] == "smollm2-135m"
    assert listed["smollm2-tiny-student"]["recipe"] == str(path)
    work = assistant_home / "distill" / "smollm2-tiny-student"
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["verification"]["passed"]
    assert summary["teacher_cache_bytes_per_token"] == 68.0 and 0 < summary["student_tail_mass"] < 1
    report = (work / "report" / "report.md").read_text()
    assert "**Export check**" in report and "| teacher pass |" in report and "| train |" in report
    assert (work / "report" / "report.png").read_bytes()[:4] == b"\x89PNG"
    engine = Engine(gguf, n_ctx=512)
    try:
        assert engine.complete([{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0.0).strip()
    finally:
        engine.close()
    first_sha = row["sha256"]

    # the recipe edited in place (a new lr): trains again from the start; Ctrl-C during evaluation
    path.write_text(path.read_text().replace("lr = 3e-4", "lr = 1e-3"))
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("evaluate:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(recipe.load(path), say=say)
    assert "checkpoint: the recipe changed since the checkpoint (train.lr): starting fresh" in lines
    assert any(line.startswith("train: 2 steps") for line in lines)
    row = registered("smollm2-tiny-student")  # registered as soon as the export was verified
    assert row["sha256"] == sha256_file(gguf) != first_sha

    # a re-export (as F16) updates the registry entry
    capfd.readouterr()
    assert main(["distill", "export", str(path), "--quant", "F16"]) == 0
    assert "registered as 'smollm2-tiny-student'" in capfd.readouterr().out
    row = registered("smollm2-tiny-student")
    assert row["quantization"] == "F16" and row["sha256"] == sha256_file(gguf)


def test_a_model_the_recipe_did_not_make_is_never_overwritten(
    assistant_home: Path, smollm_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Checked before any work: a user's imported model of the same name, or a packaged model's name."""
    from assistant.cli.main import main
    from assistant.models.gguf_info import sha256_file

    assert main(["models", "import", str(smollm_path), "--name", "smollm2-tiny-student"]) == 0
    assert main(["models", "use", "smollm2-tiny-student"]) == 0
    target = assistant_home / "models" / "smollm2-tiny-student.gguf"
    before = sha256_file(target)
    capfd.readouterr()
    assert main(["distill", "run", "tiny"]) == 1
    out, err = capfd.readouterr()
    assert err.count("\n") == 1 and "already registered (imported" in err and "--replace" in err
    assert out == "" and not (assistant_home / "distill").exists()  # nothing was started
    assert sha256_file(target) == before and registered("smollm2-tiny-student")["origin"] == "imported"
    assert main(["distill", "export", "tiny"]) == 1
    assert "was not made by this recipe" in capfd.readouterr().err
    assert checks.preflight(recipe.load("tiny"), replace=True).target == target  # --replace: the user's choice
    with pytest.raises(DistillError, match="a packaged model's name"):
        packaged = {'name = "smollm2-tiny-student"': 'name = "smollm2-135m"'}
        checks.preflight(recipe.load(tiny_recipe(assistant_home, **packaged)))


@pytest.fixture(scope="module")
def examples(teacher):  # noqa: ANN001, ANN201
    tok = teacher.tokenizer
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    questions = ("What is 2 + 2?", "Name a fruit.", "Say hi.", "What is Python?", "Count to three.")
    records = [{"prompt": p} for p in questions]
    records.append({"prompt": "Capital of France?", "answer": "Paris."})  # a given answer (e.g. from history)
    ids = [prompts.prompt_ids(tok, r["prompt"]) for r in records]
    forced = [prompts.forced_answer(tok, r, 10) for r in records]
    outputs = [
        teacher_cache.TeacherOutput(p, answer, *teacher_cache.topk(logits, 8))
        for p, (answer, logits) in zip(ids, runner.run(ids, forced, 10))
    ]
    assert tok.decode(outputs[-1].answer_ids[:2]).startswith("Paris")
    assert all(len(o.answer_ids) == len(o.topk_logprobs) == len(o.tail) > 0 for o in outputs)
    return batches.examples(outputs, max_length=56)


def test_batched_teacher_matches_one_prompt_at_a_time(teacher) -> None:  # noqa: ANN001
    """Left-padded batch generation gives the answers and logits of unpadded single-prompt runs."""
    tok = teacher.tokenizer
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    ids = [prompts.prompt_ids(tok, p) for p in ("Hi.", "What is the capital of France? Answer in one word.")]
    batched = runner.run(ids, [None, None], 6)
    for prompt, (answer, logits) in zip(ids, batched):
        single, single_logits = runner.run([prompt], [None], 6)[0]
        assert answer == single
        assert np.abs(logits - single_logits).max() < 1e-3


def _train(teacher, examples, folder: Path, on_step=None):  # noqa: ANN001, ANN202
    model = student.prune(teacher.model, [0, 29])
    cfg = TrainSection(max_steps=4, batch_size=2, warmup_steps=1, checkpoint_every=100, lr=1e-3)
    state = train.train(
        model,
        examples,
        cfg,
        LossSection(kind="jsd", alpha=0.3),
        pad_id=teacher.tokenizer.pad_token_id,
        seed=7,
        folder=folder,
        on_step=on_step,
    )
    return model, state


def test_resume_after_ctrl_c_equals_uninterrupted_run(teacher, examples, tmp_path: Path) -> None:  # noqa: ANN001
    straight, straight_state = _train(teacher, examples, tmp_path / "a")

    def ctrl_c(state: train.TrainState) -> None:
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: the loop saves and stops at the step boundary

    with pytest.raises(train.TrainingInterrupted, match="interrupted at step 2/4"):
        _train(teacher, examples, tmp_path / "b", on_step=ctrl_c)
    resumed, resumed_state = _train(teacher, examples, tmp_path / "b")
    assert resumed_state.step == 4 and len(resumed_state.history) == 4
    assert [h["loss"] for h in resumed_state.history] == [h["loss"] for h in straight_state.history]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight_state.history[-1]["kd"] < straight_state.history[0]["kd"]


def test_export_round_trip_and_full_disk(teacher, tmp_path: Path, assistant_home: Path) -> None:  # noqa: ANN001
    """F32 export reproduces torch exactly in llama.cpp; a full disk leaves nothing in the models folder."""
    small = student.prune(teacher.model, [0, 1, 29])
    result = export.export(small, teacher.tokenizer, tmp_path / "s.gguf", quant="F32", teacher_gguf=teacher.gguf_path)
    assert result.passed and result.top1_agreement == 1.0 and result.mean_kl < 1e-3
    models = assistant_home / "models"
    script = f"""
import resource, signal, sys
from pathlib import Path
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from distill_tools import export
tokenizer = AutoTokenizer.from_pretrained({str(teacher.model.name_or_path)!r})
config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
model = LlamaForCausalLM(config)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # writes past 1 MB fail like a full disk
try:
    export.export(model, tokenizer, Path({str(models / "full.gguf")!r}), quant="Q8_0",
                  teacher_gguf=Path({str(teacher.gguf_path)!r}))
except export.ExportError as exc:
    print(exc)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=os.environ)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.startswith(f"cannot write {models / 'full.gguf'}: ")
    assert "\n" not in done.stdout.strip()
    assert list(models.iterdir()) == []


def test_tokenizer_mismatch_is_a_clear_error(teacher, tmp_path: Path) -> None:  # noqa: ANN001
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"[UNK]": 0, "hello": 1, "world": 2, "<|im_end|>": 3}
    backend = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "other"
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>").save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=4,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    path = tmp_path / "r.toml"
    path.write_text(f'[teacher]\nmodel = "{teacher.gguf_path}"\n[student]\nmodel = "{folder}"\n')
    with pytest.raises(DistillError, match="different tokenizer than the teacher"):
        pipeline.build(recipe.load(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[loss]\nkind = 'mse'\n", "loss.kind must be"),
        ("[train]\nlr = 'fast'\n", "train.lr: expected float"),
        ("[trian]\nlr = 1\n", "trian: unknown key"),
        ("name = '../x'\n", "invalid model name"),
        ("[export]\nquant = 'Q3'\n", "export.quant must be one of"),
        ("[data\n", "invalid TOML"),
        ("[train]\ncheckpoint_every = 0\n", "train.checkpoint_every must be at least 1"),
        ("[train]\nmax_steps = -3\n", "train.max_steps must be 0"),
        ("[train]\nwarmup_steps = -1\n", "train.warmup_steps must be 0 or more"),
        ("[data]\nlimit = -5\n", "data.limit must be 0"),
        ("[data]\nheldout = -1\n", "data.heldout must be 0"),
        ("[data]\nprompts = []\n", "data.prompts must list"),
        ("[export]\nmax_kl = -1\n", "export.max_kl must be 0 or more"),
        ("[export]\nmin_top1 = 1.5\n", "export.min_top1 must be between 0 and 1"),
        ("[eval]\nlimit = -1\n", "eval.limit must be 0"),
        ("[eval]\nmax_new_tokens = 0\n", "eval.max_new_tokens must be positive"),
        ("[student]\nlayers = 'every:0'\n", "student.layers = 'every:0': use all, every:K"),
        ("[student]\nlayers = '0,-2'\n", "student.layers = '0,-2'"),
        ("[teacher]\nurl = 'http://127.0.0.1:1/v1'\n", "weights are not here to prune: set student.model"),
        ("[teacher]\nurl = '127.0.0.1:1'\n[student]\nmodel = 'x'\n", "teacher.url must start with http"),
        ("[teacher]\nurl = 'http://h/v1'\n[student]\nmodel = 'x'\n[loss]\ntemperature = 2.0\n", "at temperature 1"),
        (
            "[teacher]\nurl = 'http://h/v1'\n[student]\nmodel = 'x'\n[loss]\nkind = 'reverse_kl'\n",
            "use forward_kl or jsd",
        ),
        ("[teacher]\nconcurrency = 0\n", "teacher.concurrency must be at least 1"),
    ],
)
def test_bad_recipe_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DistillError, match=message) as info:
        recipe.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_teacher_and_bad_layers_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli.main import main

    path = tmp_path / "r.toml"
    path.write_text('[teacher]\nmodel = "/nowhere/teacher.gguf"\n')
    assert main(["distill", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nowhere/teacher.gguf: no such model file" in err
    assert main(["distill", "run", str(tmp_path / "missing.toml")]) == 1
    assert "no such recipe file" in capsys.readouterr().err
    with pytest.raises(DistillError, match="every:K"):
        recipe.choose_layers("every:zero", 30)
    assert recipe.choose_layers("all", 3) == [0, 1, 2]
    assert recipe.choose_layers("every:10", 30) == [0, 10, 20, 29]
    assert recipe.choose_layers("first-last:3", 30) == [0, 1, 29]


def test_narrowed_mlps_stay_closer_to_the_teacher_than_naive_channels(teacher, examples) -> None:  # noqa: ANN001
    """Importance-chosen, least-squares-refitted channels beat the first N channels on KL to the teacher."""
    batch = batches.collate(examples, teacher.tokenizer.pad_token_id)
    mask = batch["mask"]

    def kl_to_teacher(model) -> float:  # noqa: ANN001
        with torch.no_grad():
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            p = torch.log_softmax(teacher.model(**inputs).logits[mask], -1)
            q = torch.log_softmax(model.eval()(**inputs).logits[mask], -1)
        return float((p.exp() * (p - q)).sum(-1).mean())

    chosen = student.prune(teacher.model, list(range(30)))
    student.narrow_mlp(chosen, 768, [batch])
    naive = student.prune(teacher.model, list(range(30)))
    student.narrow_mlp_shape(naive, 768)
    assert chosen.config.intermediate_size == 768 and chosen.model.layers[5].mlp.up_proj.weight.shape == (768, 576)
    assert student.parameter_count(chosen) == student.parameter_count(naive) < student.parameter_count(teacher.model)
    assert kl_to_teacher(chosen) < 0.5 * kl_to_teacher(naive)
    with pytest.raises(DistillError, match="mlp_width = 4000"):
        student.narrow_mlp(student.prune(teacher.model, [0, 29]), 4000, [batch])


def test_bundled_tasks_are_held_out_of_the_bundled_prompts() -> None:
    """The task set scores retention on questions the student never trained on."""
    from distill_tools import evaluate

    texts = {r["prompt"].strip().lower() for r in prompts.load_records(["bundled:prompts"])}
    tasks = {t["prompt"].strip().lower() for t in evaluate.load_tasks("bundled:tasks")}
    assert len(texts) >= 400 and len(tasks) >= 30
    assert not texts & tasks


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({'layers = "0,10,20,29"': 'layers = "0,10,40"'}, r"student.layers = '0,10,40': indices must lie in 0…29"),
        ({"mlp_width = 256": "mlp_width = 5000"}, "student.mlp_width = 5000: must lie between 1 and 1535"),
        (
            {'quant = "Q8_0"': 'quant = "Q4_K_M"'},
            "Q4_K_M needs weight rows in multiples of 256 values, but this student has hidden size 576, "
            "attention width 576 .*: use Q5_0, Q5_1, Q4_0, Q4_1 or Q8_0",
        ),
        (
            {'tasks = "bundled:tasks"': 'tasks = "/nowhere/tasks.jsonl"'},
            "/nowhere/tasks.jsonl: cannot read the task set",
        ),
    ],
)
def test_a_bad_student_shape_export_type_or_file_fails_before_any_model_loads(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    """Checked on the teacher's file header, in well under a second (the teacher pass used to run first)."""
    import time

    path = tiny_recipe(tmp_path, **changes)
    start = time.perf_counter()
    with pytest.raises(DistillError, match=message) as info:
        checks.preflight(recipe.load(path))
    assert time.perf_counter() - start < 5 and "\n" not in str(info.value)


def test_a_template_with_literal_braces_reaches_the_teacher(teacher, tmp_path: Path) -> None:  # noqa: ANN001
    tok = teacher.tokenizer
    template = 'Reply as JSON {"answer": ...}: {prompt}'
    assert prompts.render(template, "Capital of Italy?") == 'Reply as JSON {"answer": ...}: Capital of Italy?'
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    outputs = teacher_cache.teacher_pass(
        [{"prompt": "Capital of Italy?"}], runner, tok, tmp_path, template=template, max_new_tokens=2, top_k=4, key="k"
    )
    assert len(outputs) == 1 and len(outputs[0].answer_ids) == 2
    assert outputs[0].topk_indices.dtype == np.uint16 and np.exp(outputs[0].tail).max() < 1


def test_limit_keeps_a_users_file_listed_after_the_bundled_prompts(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("my first question\nmy second question\nmy third question\n")
    records = prompts.load_records(["bundled:prompts", str(mine)], limit=4)
    texts = [r["prompt"] for r in records]
    assert len(texts) == 4 and "my first question" in texts and "my second question" in texts
    everything = prompts.load_records(["bundled:prompts", str(mine)])
    assert texts[:2] == [r["prompt"] for r in everything[:2]]
    assert prompts.load_records(["bundled:prompts", str(mine)], limit=10_000) == everything


def test_llama_cpp_in_distillation_uses_assistant_threads(smollm_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from assistant.models.engine import physical_cores
    from distill_tools import evaluate, llama

    wanted = 1 if physical_cores() > 1 else min(2, os.cpu_count() or 1)  # not the default, within the cores
    monkeypatch.setenv("ASSISTANT_THREADS", str(wanted))
    assert llama.threads() == wanted
    runner = evaluate.Runner(smollm_path)
    try:
        assert runner.llm.n_threads == wanted and runner.llm.context_params.n_threads_batch == wanted
    finally:
        runner.close()


def test_the_evaluation_runner_evaluates_a_shared_context_once(smollm_path: Path) -> None:
    """A persona's held-out questions share its (long) context: the runner evaluates only what follows the part
    already in llama.cpp's context (10x faster on a 950-token handbook), and the logits of an answer it just
    generated are the ones it chose each token from."""
    import numpy as np

    from distill_tools import evaluate
    from distill_tools.persona_eval import _prompt

    system = "You are the archivist of a small museum. " * 40
    runner = evaluate.Runner(smollm_path, n_ctx=1024)
    fed: list[int] = []
    feed = runner.llm.eval
    runner.llm.eval = lambda tokens: (fed.append(len(tokens)), feed(tokens))[1]  # type: ignore[method-assign]
    try:
        first, second = (_prompt(runner, q, system) for q in ("When does it open?", "Who founded it?"))
        runner.generate(first, 8)
        shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
        assert shared > 400 and fed[0] == len(first)
        fed.clear()
        answer = runner.generate(second, 8)
        assert fed[0] == len(second) - shared  # the context is not evaluated again
        logits = runner.logits(second, answer)
        assert logits.shape[0] == len(answer) and list(np.argmax(logits, axis=1)) == answer
    finally:
        runner.close()


def test_quantised_export_is_quiet_and_refuses_shapes_it_does_not_fit(
    teacher, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:  # noqa: ANN001
    """Q5_0 through llama.cpp's quantiser: no llama.cpp log on the terminal; Q4_K_M on 576-wide rows: refused."""
    from assistant.models.gguf_info import read_info

    small = student.prune(teacher.model, [0, 29])
    tmp_path = tmp_path / "out"
    capfd.readouterr()
    result = export.export(
        small,
        teacher.tokenizer,
        tmp_path / "s.gguf",
        quant="Q5_0",
        teacher_gguf=teacher.gguf_path,
        max_kl=10.0,
        min_top1=0.0,
        metadata={"distill.teacher": "t", "distill.recipe": "r"},
    )
    out, err = capfd.readouterr()
    assert result is not None and result.positions > 0
    assert out == "" and err == "", err[-2000:]
    info = read_info(tmp_path / "s.gguf")
    assert info.quantization == "Q5_0" and (info.teacher, info.recipe) == ("t", "r")
    with pytest.raises(export.ExportError, match="Q4_K_M needs weight rows in multiples of 256"):
        export.export(small, teacher.tokenizer, tmp_path / "k.gguf", quant="Q4_K_M", teacher_gguf=teacher.gguf_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gguf"]


def test_the_report_shows_only_measured_figures_and_labels_them(smollm_path: Path, tmp_path: Path) -> None:
    """No held-out prompts (heldout = 0): KL, agreement and perplexity are "—", never 0.000; the plot labels its bars
    and shows KL and perplexity; the markdown holds the export check and the timings."""
    from distill_tools import evaluate

    tasks = evaluate.load_tasks("bundled:tasks")[:1]
    reports = evaluate.evaluate(smollm_path, {"same": smollm_path}, tasks, [], max_new_tokens=4)
    assert all(r.mean_kl is None and r.perplexity is None and r.top1_agreement is None for r in reports)
    assert reports[0].task_score is not None
    extra = {
        "quant": "Q8_0",
        "verification": {"top1_agreement": 0.9, "mean_kl": 0.01, "positions": 40, "passed": True},
        "timings_s": {"teacher_pass_s": 12.5, "train_s": 30.0},
    }
    text = evaluate.markdown(reports, extra)
    assert "| — | — | — | — |" in text and "0.000" not in text
    assert "**Export check** (Q8_0 GGUF in llama.cpp vs the torch student): passed, top-1 agreement 90.0%" in text
    assert "| teacher pass | 12.5 |" in text and "| train | 30.0 |" in text
    figure = evaluate.draw(reports, [{"loss": 2.0, "kd": 1.5, "ce": 3.0}, {"loss": 1.0, "kd": 0.7, "ce": 2.0}])
    titles = [axes.get_title() for axes in figure.axes]
    assert any("KL" in t and "perplexity" in t for t in titles)
    labels = [text.get_text() for axes in figure.axes for text in axes.texts]
    score = f"{reports[0].task_score:.0%}"
    assert score in labels and "n/a" in labels
    paths = evaluate.write_report(tmp_path, reports, [], extra)
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_bundled_recipes_are_valid() -> None:
    """Every recipe shipped (local teacher, pretrained student, served teacher, GPU box) loads and validates."""
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    assert {"tiny", "default", "sibling", "served", "large"} <= set(names)
    loaded = {name: recipe.load(name) for name in names}
    assert loaded["sibling"].student.model and not loaded["sibling"].teacher.url
    assert loaded["served"].teacher.url.startswith("http") and loaded["served"].student.model
