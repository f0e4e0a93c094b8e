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

from distill_tools import DistillError, data, export, pipeline, recipe, student, train
from distill_tools.recipe import LossSection, TrainSection


def test_tiny_recipe_end_to_end(assistant_home: Path) -> None:
    """teacher pass → a few steps → export → load in llama.cpp → answer → registered."""
    from assistant.config import database_path, load
    from assistant.engine import Engine
    from assistant.registry import Registry
    from assistant.store import Store

    summary = pipeline.run(recipe.load("tiny"))
    gguf = Path(summary["gguf"])
    assert gguf.parent == assistant_home / "models" and gguf.exists()
    assert not list(gguf.parent.glob("*.partial"))
    assert summary["verification"]["passed"] and summary["steps"] == 4
    row = Registry(Store(database_path())).get("smollm2-tiny-student")
    assert row["origin"] == "distilled" and row["architecture"] == "llama" and len(row["sha256"]) == 64
    report = json.loads(Path(summary["report"]["json"]).read_text())
    assert [m["label"] for m in report["models"]] == ["teacher", "distilled"]
    assert Path(summary["report"]["plot"]).read_bytes()[:4] == b"\x89PNG"
    engine = Engine(gguf, n_ctx=512)
    try:
        answer = engine.complete([{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0.0)
    finally:
        engine.close()
    assert isinstance(answer, str) and answer.strip()


@pytest.fixture(scope="module")
def examples(teacher):  # noqa: ANN001, ANN201
    tok = teacher.tokenizer
    runner = data.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    records = [{"prompt": p} for p in ("What is 2 + 2?", "Name a fruit.", "Say hi.", "What is Python?", "Count to three.")]
    records.append({"prompt": "Capital of France?", "answer": "Paris."})  # a given answer (e.g. from history)
    prompts = [data.prompt_ids(tok, r["prompt"]) for r in records]
    forced = [data._forced_answer(tok, r, 10) for r in records]
    outputs = [data.TeacherOutput(p, answer, *data._topk(logits, 8))
               for p, (answer, logits) in zip(prompts, runner.run(prompts, forced, 10))]
    assert tok.decode(outputs[-1].answer_ids[:2]).startswith("Paris")
    assert all(len(o.answer_ids) == len(o.topk_values) > 0 for o in outputs)
    return data.examples(outputs, max_length=56)


def test_batched_teacher_matches_one_prompt_at_a_time(teacher) -> None:  # noqa: ANN001
    """Left-padded batch generation gives the answers and logits of unpadded single-prompt runs."""
    tok = teacher.tokenizer
    runner = data.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    prompts = [data.prompt_ids(tok, p) for p in ("Hi.", "What is the capital of France? Answer in one word.")]
    batched = runner.run(prompts, [None, None], 6)
    for prompt, (answer, logits) in zip(prompts, batched):
        single, single_logits = runner.run([prompt], [None], 6)[0]
        assert answer == single
        assert np.abs(logits - single_logits).max() < 1e-3


def _train(teacher, examples, folder: Path, on_step=None):  # noqa: ANN001, ANN202
    model = student.prune(teacher.model, [0, 29])
    cfg = TrainSection(max_steps=4, batch_size=2, warmup_steps=1, checkpoint_every=100, lr=1e-3)
    state = train.train(model, examples, cfg, LossSection(kind="jsd", alpha=0.3), pad_id=teacher.tokenizer.pad_token_id,
                        seed=7, folder=folder, on_step=on_step)
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
    export.export(model, tokenizer, Path({str(models / 'full.gguf')!r}), quant="Q8_0", teacher_gguf=Path({str(teacher.gguf_path)!r}))
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
    config = LlamaConfig(vocab_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
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
    ],
)
def test_bad_recipe_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DistillError, match=message) as info:
        recipe.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_teacher_and_bad_layers_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    path = tmp_path / "r.toml"
    path.write_text('[teacher]\nmodel = "/nowhere/teacher.gguf"\n')
    assert main(["distill", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nowhere/teacher.gguf: no such model file" in err
    assert main(["distill", "run", str(tmp_path / "missing.toml")]) == 1
    assert "no such recipe file" in capsys.readouterr().err
    with pytest.raises(DistillError, match="every:K"):
        student.choose_layers("every:zero", 30)
    assert student.choose_layers("all", 3) == [0, 1, 2]
    assert student.choose_layers("every:10", 30) == [0, 10, 20, 29]
    assert student.choose_layers("first-last:3", 30) == [0, 1, 29]


def test_narrowed_mlps_stay_closer_to_the_teacher_than_naive_channels(teacher, examples) -> None:  # noqa: ANN001
    """Importance-chosen, least-squares-refitted channels beat the first N channels on KL to the teacher."""
    batch = data.collate(examples, teacher.tokenizer.pad_token_id)
    mask = batch["mask"]

    def kl_to_teacher(model) -> float:  # noqa: ANN001
        with torch.no_grad():
            p = torch.log_softmax(teacher.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[mask], -1)
            q = torch.log_softmax(model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[mask], -1)
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

    prompts = {r["prompt"].strip().lower() for r in data.load_records(["bundled:prompts"])}
    tasks = {t["prompt"].strip().lower() for t in evaluate.load_tasks("bundled:tasks")}
    assert len(prompts) >= 400 and len(tasks) >= 30
    assert not prompts & tasks
