"""``distill run``: teacher → teacher pass → student (pruned, calibrated on that pass) → training → GGUF → report → registry.

Every stage is resumable: the teacher pass is cached shard by shard, training resumes from its
last checkpoint, and the finished GGUF is only written once verification passes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_tools import DistillError
from distill_tools.recipe import Recipe


@dataclass
class Built:
    teacher: Any  # teacher.Loaded
    student: Any  # torch model
    layers: list[int] | None


def build(recipe: Recipe) -> Built:
    """Load the teacher and make the student's shape (no calibration: for loading a checkpoint into)."""
    from distill_tools import teacher as teachers

    teacher = teachers.load(recipe.teacher.model, recipe.teacher.allow_download)
    return Built(teacher, *make_student(recipe, teacher, None))


def make_student(recipe: Recipe, teacher: Any, calibration: list[Any] | None) -> tuple[Any, list[int] | None]:
    """(student model, kept layer indices or None): another model, or the teacher pruned in depth and width.

    Narrowing the MLPs chooses channels on ``calibration`` examples; without them only the shape is
    made (for loading a checkpoint into)."""
    from distill_tools import data
    from distill_tools import student as students
    from distill_tools import teacher as teachers

    if recipe.student.model:
        other = teachers.load(recipe.student.model, recipe.teacher.allow_download)
        students.check_tokenizers(teacher.tokenizer, other.tokenizer, recipe.student.model)
        other.model.train()
        return other.model, None
    keep = students.choose_layers(recipe.student.layers, teacher.model.config.num_hidden_layers)
    model = students.prune(teacher.model, keep)
    if recipe.student.mlp_width:
        if calibration is None:
            students.narrow_mlp_shape(model, recipe.student.mlp_width)
            return model, keep
        pad = teacher.tokenizer.pad_token_id
        size = recipe.train.batch_size
        batches = [data.collate(calibration[i:i + size], pad) for i in range(0, len(calibration), size)]
        students.narrow_mlp(model, recipe.student.mlp_width, batches)
    return model, keep


def teacher_outputs(recipe: Recipe, teacher: Any, records: list[dict[str, str]]) -> list[Any]:
    """The cached teacher pass over ``records``."""
    from distill_tools import data

    settings = {"template": recipe.data.template, "max_new_tokens": recipe.data.max_new_tokens, "top_k": recipe.data.top_k,
                "batch_size": recipe.data.batch_size}
    key = data.cache_key(str(teacher.gguf_path or teacher.source), records, settings)
    tok = teacher.tokenizer
    runner = data.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    return data.teacher_pass(records, runner, tok, recipe.work_dir() / "teacher-cache", template=recipe.data.template,
                             max_new_tokens=recipe.data.max_new_tokens, top_k=recipe.data.top_k, key=key,
                             batch_size=recipe.data.batch_size)


def run(recipe: Recipe, on_step: Any = None) -> dict[str, Any]:
    """The whole pipeline; returns a summary (paths, figures, timings)."""
    from assistant.config import models_dir
    from distill_tools import data, evaluate, export, train
    from distill_tools import teacher as teachers
    from distill_tools.student import parameter_count

    times: dict[str, float] = {}
    clock = time.perf_counter()
    work = recipe.work_dir()
    work.mkdir(parents=True, exist_ok=True)
    records = data.load_records(recipe.data.prompts, recipe.data.limit)
    train_records, heldout = data.split(records, recipe.data.heldout, recipe.seed)
    teacher = teachers.load(recipe.teacher.model, recipe.teacher.allow_download)
    times["load_s"] = time.perf_counter() - clock

    mark = time.perf_counter()
    outputs = teacher_outputs(recipe, teacher, train_records)
    examples = data.examples(outputs, recipe.data.max_length)
    times["teacher_pass_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    student, layers = make_student(recipe, teacher, examples[: recipe.student.calibration])
    baseline = work / "pruned-student.gguf"
    if recipe.eval.baseline:  # the student before any training
        export.export(student, teacher.tokenizer, baseline, quant=recipe.export.quant,
                      name=f"{recipe.name}-pruned", teacher_gguf=teacher.gguf_path, check=False)
    times["student_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    state = train.train(student, examples, recipe.train, recipe.loss, pad_id=teacher.tokenizer.pad_token_id,
                        seed=recipe.seed, folder=work / "checkpoints", on_step=on_step)
    times["train_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    target = models_dir() / f"{recipe.name}.gguf"
    verification = export.export(
        student, teacher.tokenizer, target, quant=recipe.export.quant, name=recipe.name,
        teacher_gguf=teacher.gguf_path, max_kl=recipe.export.max_kl, min_top1=recipe.export.min_top1,
    )
    times["export_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    teacher_gguf = teacher.gguf_path
    if teacher_gguf is None:
        teacher_gguf = work / "teacher.gguf"
        export.export(teacher.model, teacher.tokenizer, teacher_gguf, quant=recipe.export.quant,
                      name="teacher", check=False)
    students = {"distilled": target}
    if recipe.eval.baseline and baseline.exists():
        students = {"pruned (no distillation)": baseline, **students}
    reports = evaluate.evaluate(teacher_gguf, students, evaluate.load_tasks(recipe.eval.tasks)[: recipe.eval.limit or None],
                                [r["prompt"] for r in heldout], recipe.eval.max_new_tokens)
    times["eval_s"] = time.perf_counter() - mark
    times["total_s"] = time.perf_counter() - clock

    tokens = sum(h["tokens"] for h in state.history)
    seconds = sum(h["seconds"] for h in state.history)
    summary = {
        "name": recipe.name,
        "gguf": str(target),
        "quant": recipe.export.quant,
        "student_layers": layers,
        "student_parameters": parameter_count(student),
        "teacher_parameters": parameter_count(teacher.model),
        "train_sequences": len(examples),
        "steps": state.step,
        "train_tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "verification": export.verification_dict(verification),
        "timings_s": {k: round(v, 1) for k, v in times.items()},
    }
    summary["report"] = {k: str(v) for k, v in evaluate.write_report(
        work / "report", reports, state.history, {**summary, "timings_s": summary["timings_s"]}).items()}
    summary["models"] = [{k: v for k, v in r.__dict__.items() if k != "answers"} for r in reports]
    if recipe.register:
        register(recipe.name, target)
    from assistant.files import atomic_write_text

    atomic_write_text(work / "summary.json", json.dumps(summary, indent=2))
    return summary


def register(name: str, path: Path) -> dict[str, Any]:
    """Add (or update) the student in the model registry as a distilled model."""
    from assistant.config import database_path
    from assistant.gguf_info import read_info, sha256_file
    from assistant.registry import Registry
    from assistant.store import Store

    store = Store(database_path())
    try:
        return Registry(store).add(name, path, "distilled", read_info(path), sha256_file(path))
    finally:
        store.close()


def export_checkpoint(recipe: Recipe, quant: str | None, out: Path | None) -> tuple[Path, Any]:
    """``distill export``: rebuild the student, load its latest checkpoint, write a verified GGUF."""
    from assistant.config import models_dir
    from distill_tools import export, train

    built = build(recipe)
    state = train.load_checkpoint(recipe.work_dir() / "checkpoints", built.student, None)
    if state is None:
        raise DistillError(f"no checkpoint in {recipe.work_dir() / 'checkpoints'}: run `distill run` first")
    target = out or models_dir() / f"{recipe.name}.gguf"
    result = export.export(built.student, built.teacher.tokenizer, target, quant=quant or recipe.export.quant,
                           name=recipe.name, teacher_gguf=built.teacher.gguf_path,
                           max_kl=recipe.export.max_kl, min_top1=recipe.export.min_top1)
    return target, result
