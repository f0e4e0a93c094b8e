"""``distill run``: checks → teacher → teacher pass → student (pruned, calibrated on that pass) → training →
GGUF → registry → report.

Everything that can be checked is checked before anything is loaded (``checks``). Every stage is resumable
and keyed to the settings that produce it: the teacher pass is cached shard by shard, training resumes from
its last checkpoint only if the recipe did not change, and the finished GGUF is only written (and registered)
once verification passes. :func:`run` reads as its phases: each is a function, timed by one ``Clock`` and told
in one line. ``persona`` shares the last steps: :func:`export_student`, :func:`write_report`, :func:`write_summary`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from assistant.config import TeacherSettings
from assistant.models.registry import register_distilled
from assistant.storage.files import atomic_write_text
from distill_tools import DistillError, batches, distributed, evaluate, export, prompts, teacher_cache, torch_model
from distill_tools import student as students
from distill_tools import train as training
from distill_tools.batches import Example
from distill_tools.checks import Plan, preflight, recipe_id
from distill_tools.evaluate import ModelReport, figure
from distill_tools.export import Verification
from distill_tools.progress import Clock, Say, printer, quiet_libraries, silent
from distill_tools.recipe import ExportSection, Recipe, choose_layers
from distill_tools.served_teacher import ServedTeacher
from distill_tools.teacher_cache import TeacherOutput
from distill_tools.torch_model import Loaded
from distill_tools.torch_teacher import TorchTeacher
from distill_tools.train import TrainState

Teacher = TorchTeacher | ServedTeacher


def run(
    recipe: Recipe, on_step: Any = None, *, resume: str = "auto", replace: bool = False, say: Say | None = None
) -> dict[str, Any]:
    """The whole pipeline; returns a summary (paths, figures, timings). ``say`` receives one line per phase.

    Under torchrun every rank runs it up to the end of training (see ``distributed``); rank 0 alone goes on
    (export, registry, evaluation, report) and the other ranks return ``{"rank": …}``."""
    place = distributed.start()
    say = (say or printer()) if place.main else silent
    if place.parallel:
        backend = "NCCL on CUDA" if distributed.device().type == "cuda" else "gloo on CPU"
        say(f"torchrun: {place.size} processes ({backend})")
    clock = Clock()
    plan = preflight(recipe, replace, say)
    work = recipe.work_dir()
    work.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    train_records, heldout = prompts.split(plan.records, recipe.data.heldout, recipe.seed)

    with clock.phase("load"):
        teacher = load_local(recipe)  # with a served teacher: the student to start from
    runner = teacher_runner(recipe, teacher)
    say(teacher_line(recipe, teacher, runner, clock))

    with clock.phase("teacher_pass"):
        key = teacher_key(recipe, teacher_id(recipe), train_records)
        outputs = teacher_outputs(recipe, runner, teacher.tokenizer, train_records, key)
        examples = batches.examples(outputs, recipe.data.max_length)
    say(f"teacher pass: {teacher_pass_line(recipe, outputs)}, {clock.took('teacher_pass')}")
    if isinstance(runner, ServedTeacher):
        say(f"teacher pass: {runner.kd_line()}")

    with clock.phase("student"):
        student, layers = make_student(recipe, teacher, examples[: recipe.student.calibration])
        baseline = export_baseline(recipe, student, teacher) if place.main else None
    say(f"student: {student_line(recipe, student, teacher)}, {clock.took('student')}")

    with clock.phase("train"):
        state = train(recipe, student, teacher, examples, key, on_step, resume, say)
    if not place.main:
        return {"rank": place.rank, "steps": state.step}
    if state.history:
        say(f"train: {train_line(state)}, {clock.took('train')}")

    with clock.phase("export"):
        metadata = student_metadata(recipe)
        verification = export_student(
            student, teacher, plan.target, recipe.name, recipe.export.quant, recipe.export, metadata, say
        )
    say(f"export: {export_line(recipe, plan.target, verification)}, {clock.took('export')}")
    if recipe.register:
        register_distilled(recipe.name, plan.target)
        say(f"registered: {recipe.name} (assistant models use {recipe.name})")

    summary = student_summary(recipe, plan, layers, student, teacher, runner, examples, outputs, state, verification)
    write_summary(work, {**summary, "timings_s": clock.timings()})  # kept should the evaluation be stopped
    reports: list[ModelReport] = []
    if recipe.teacher.url:
        say(
            "evaluate: skipped (the teacher is served, not here; where you have its GGUF, compare with "
            f"`assistant distill eval --teacher TEACHER.gguf --student {recipe.name}`)"
        )
    else:
        with clock.phase("eval"):
            reports = evaluate_student(recipe, teacher, plan, heldout, baseline, say)
    summary["timings_s"] = clock.timings(total=True)
    summary["report"] = write_report(work / "report", reports, state.history, summary) if reports else {}
    summary["models"] = [{k: v for k, v in asdict(r).items() if k != "answers"} for r in reports]
    write_summary(work, summary)
    return summary


# -- the phases
def load_local(recipe: Recipe) -> Loaded:
    """The model loaded here: the teacher, or with a served teacher the student to start from (its tokenizer
    is the teacher's). Under torchrun rank 0 loads first: it converts a GGUF once (transformers writes weights
    from rank 0 only) and the other ranks read its copy."""
    place = distributed.world()
    if place.parallel and not place.main:
        distributed.barrier()
    loaded = torch_model.load(
        recipe.student.model if recipe.teacher.url else recipe.teacher.model, recipe.teacher.allow_download
    )
    if place.parallel and place.main:
        distributed.barrier()
    return loaded


def teacher_runner(recipe: Recipe, loaded: Loaded) -> Teacher:
    """What answers the teacher pass: the recipe's served teacher (``teacher.url``, reading the student's
    tokenizer), else the loaded teacher in torch."""
    tok = loaded.tokenizer
    if not recipe.teacher.url:
        return TorchTeacher(loaded.model, tok.eos_token_id, tok.pad_token_id)
    t = recipe.teacher
    settings = TeacherSettings(url=t.url, model=t.model, api_key_env=t.api_key_env, timeout_s=t.timeout_s)
    return ServedTeacher(settings, tok, t.concurrency)


def teacher_outputs(
    recipe: Recipe, runner: Teacher, tokenizer: Any, records: list[dict[str, str]], key: str
) -> list[TeacherOutput]:
    """The cached teacher pass over ``records``. Under torchrun each rank makes every N-th shard, then every
    rank reads them all."""
    run_pass = partial(
        teacher_cache.teacher_pass,
        records,
        runner,
        tokenizer,
        recipe.work_dir() / "teacher-cache",
        template=recipe.data.template,
        max_new_tokens=recipe.data.max_new_tokens,
        top_k=recipe.data.top_k,
        key=key,
        batch_size=recipe.data.batch_size,
        temperature=recipe.loss.temperature,
    )
    place = distributed.world()
    if place.parallel:
        if place.main:  # the cache's key checked (a stale cache cleared) once, before any rank writes
            run_pass(mine=lambda shard: False)
        distributed.barrier()
        run_pass(mine=lambda shard: shard % place.size == place.rank)
        if isinstance(runner, ServedTeacher):  # a served teacher counts its answers: report every rank's
            counts = ("word_level", "sequence_level", "padded_positions")
            totals = distributed.all_reduce_sum([float(getattr(runner, name)) for name in counts])
            for name, total in zip(counts, totals):
                setattr(runner, name, int(total))
        else:
            distributed.barrier()
    return run_pass()


def make_student(recipe: Recipe, teacher: Loaded, calibration: list[Example] | None) -> tuple[Any, list[int] | None]:
    """(student model, kept layer indices or None): another model, or the teacher pruned in depth and width.

    Narrowing the MLPs chooses channels on ``calibration`` examples; without them only the shape is
    made (for loading a checkpoint into)."""
    if recipe.teacher.url:  # ``teacher`` is the student to start from (see load_local)
        teacher.model.train()
        return teacher.model, None
    if recipe.student.model:
        other = torch_model.load(recipe.student.model, recipe.teacher.allow_download)
        students.check_tokenizers(teacher.tokenizer, other.tokenizer, recipe.student.model)
        other.model.train()
        return other.model, None
    keep = choose_layers(recipe.student.layers, teacher.model.config.num_hidden_layers)
    model = students.prune(teacher.model, keep)
    if recipe.student.mlp_width:
        if calibration is None:
            students.narrow_mlp_shape(model, recipe.student.mlp_width)
            return model, keep
        pad, size = teacher.tokenizer.pad_token_id, recipe.train.batch_size
        chunks = [batches.collate(calibration[i : i + size], pad) for i in range(0, len(calibration), size)]
        students.narrow_mlp(model, recipe.student.mlp_width, chunks)
    return model, keep


def export_baseline(recipe: Recipe, student: Any, teacher: Loaded) -> Path | None:
    """The student before any training, as a GGUF to evaluate beside the distilled one (``eval.baseline``)."""
    if not recipe.eval.baseline:
        return None
    baseline = recipe.work_dir() / "pruned-student.gguf"
    export.export(
        student,
        teacher.tokenizer,
        baseline,
        quant=recipe.export.quant,
        name=f"{recipe.name}-pruned",
        teacher_gguf=teacher.gguf_path,
        check=False,
    )
    return baseline


def train(
    recipe: Recipe,
    student: Any,
    teacher: Loaded,
    examples: list[Example],
    key: str,
    on_step: Any,
    resume: str,
    say: Say,
) -> TrainState:
    """The student trained on the teacher pass's ``examples``, resumed from a checkpoint made with the same
    settings (``key``: the teacher pass's)."""
    return training.train(
        student,
        examples,
        recipe.train,
        recipe.loss,
        pad_id=teacher.tokenizer.pad_token_id,
        seed=recipe.seed,
        folder=recipe.work_dir() / "checkpoints",
        on_step=on_step,
        settings=run_settings(recipe, key),
        resume=resume,
        say=say,
    )


def export_student(
    student: Any,
    teacher: Loaded,
    target: Path,
    name: str,
    quant: str,
    limits: ExportSection,
    metadata: dict[str, str] | None = None,
    say: Say | None = None,
    keep: dict[str, Any] | None = None,
) -> Verification | None:
    """The verified GGUF of ``student`` at ``target``: the teacher's tokenizer, refused past ``limits``
    (see ``export.export``; ``keep``: the base GGUF's unchanged tensors, copied as they are)."""
    return export.export(
        student,
        teacher.tokenizer,
        target,
        quant=quant,
        name=name,
        teacher_gguf=teacher.gguf_path,
        max_kl=limits.max_kl,
        min_top1=limits.min_top1,
        metadata=metadata,
        say=say,
        keep=keep,
    )


def evaluate_student(
    recipe: Recipe, teacher: Loaded, plan: Plan, heldout: list[dict[str, str]], baseline: Path | None, say: Say
) -> list[ModelReport]:
    """The teacher, the distilled student (and the pruned one) in llama.cpp: tasks and held-out prompts."""
    work = recipe.work_dir()
    teacher_gguf = teacher.gguf_path
    if teacher_gguf is None:
        teacher_gguf = work / "teacher.gguf"
        export.export(
            teacher.model, teacher.tokenizer, teacher_gguf, quant=recipe.export.quant, name="teacher", check=False
        )
    models = {"distilled": plan.target}
    if baseline is not None and baseline.exists():
        models = {"pruned (no distillation)": baseline, **models}
    say(
        f"evaluate: teacher and {len(models)} student(s) in llama.cpp on {len(plan.tasks)} tasks "
        f"and {len(heldout)} held-out prompts"
    )
    reports = evaluate.evaluate(
        teacher_gguf,
        models,
        plan.tasks,
        [r["prompt"] for r in heldout],
        recipe.eval.max_new_tokens,
        recipe.data.top_k,
    )
    for r in reports:
        say(
            f"evaluate: {r.label}: task score {figure(r.task_score, '.1%')}, KL {figure(r.mean_kl, '.3f')}, "
            f"top-1 {figure(r.top1_agreement, '.1%')}, perplexity {figure(r.perplexity, '.2f')}, "
            f"mass outside the teacher's top-{recipe.data.top_k} {figure(r.outside_topk, '.1%')}"
        )
    return reports


def write_report(
    folder: Path, reports: list[ModelReport], history: list[dict[str, float]], summary: dict[str, Any]
) -> dict[str, str]:
    """report.json, report.md and report.png (the plot) in ``folder``; their paths."""
    return {k: str(v) for k, v in evaluate.write_report(folder, reports, history, summary).items()}


def write_summary(work: Path, summary: dict[str, Any]) -> None:
    """The run's summary as ``summary.json`` in its work folder."""
    atomic_write_text(work / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))


# -- what a phase says, and the summary
def teacher_line(recipe: Recipe, loaded: Loaded, runner: Teacher, clock: Clock) -> str:
    if isinstance(runner, ServedTeacher):
        where = f"{recipe.teacher.model or 'the model'} served at {recipe.teacher.url}"
        return f"teacher: {where}; tokenizer check: {runner.check_tokenizer()}"
    millions = students.parameter_count(loaded.model) / 1e6
    return f"teacher: {recipe.teacher.model} ({millions:.1f} M parameters) loaded in {clock.took('load')}"


def teacher_pass_line(recipe: Recipe, outputs: list[TeacherOutput]) -> str:
    tokens, per_token, tail = teacher_cache.figures(outputs)
    k = recipe.data.top_k
    return (
        f"{len(outputs)} prompts, {tokens} answer tokens, top-{k} cached at {per_token:.0f} bytes/token, "
        f"teacher mass outside its top-{k} {tail:.1%}"
    )


def student_line(recipe: Recipe, student: Any, teacher: Loaded) -> str:
    count = students.parameter_count(student)
    share = "" if recipe.teacher.url else f" ({count / students.parameter_count(teacher.model):.0%} of the teacher)"
    return (
        f"{student.config.num_hidden_layers} layers, MLP width {student.config.intermediate_size}, "
        f"{count / 1e6:.1f} M parameters{share}"
    )


def train_speed(state: TrainState) -> tuple[int, float]:
    """(tokens trained on, seconds it took) over the whole run, resumed parts included."""
    return sum(int(h["tokens"]) for h in state.history), sum(h["seconds"] for h in state.history)


def train_line(state: TrainState) -> str:
    tokens, seconds = train_speed(state)
    per_s = tokens / seconds if seconds else 0
    return f"{state.step} steps, {training.step_figures(state.history[-1])}, {per_s:.0f} tok/s"


def export_line(recipe: Recipe, target: Path, verification: Verification | None) -> str:
    check = verification.line() if verification else "not checked"
    return f"{target} ({recipe.export.quant}, {target.stat().st_size / 1e6:.1f} MB), {check}"


def student_summary(
    recipe: Recipe,
    plan: Plan,
    layers: list[int] | None,
    student: Any,
    teacher: Loaded,
    runner: Teacher,
    examples: list[Example],
    outputs: list[TeacherOutput],
    state: TrainState,
    verification: Verification | None,
) -> dict[str, Any]:
    """The summary of the exported student: where it is, where it came from, the pass's and training's figures."""
    _, per_token, teacher_tail = teacher_cache.figures(outputs)
    tokens, seconds = train_speed(state)
    per_epoch = max(1, math.ceil(len(examples) / (recipe.train.batch_size * recipe.train.grad_accum)))
    last_epoch = state.history[-per_epoch:]
    student_tail = sum(h.get("tail", 0.0) for h in last_epoch) / max(1, len(last_epoch))
    served = runner if isinstance(runner, ServedTeacher) else None
    return {
        "name": recipe.name,
        "gguf": str(plan.target),
        "quant": recipe.export.quant,
        "registered": recipe.register,
        "teacher": recipe.teacher.model,
        "recipe": recipe_id(recipe),
        "student_layers": layers,
        "student_parameters": students.parameter_count(student),
        "teacher_parameters": None if served else students.parameter_count(teacher.model),
        "teacher_kd": served.kd_line() if served else "word-level (local teacher)",
        "train_sequences": len(examples),
        "steps": state.step,
        "train_tokens": tokens,
        "train_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "teacher_cache_bytes_per_token": round(per_token, 1),
        "teacher_tail_mass": round(teacher_tail, 4),
        "student_tail_mass": round(student_tail, 4) if state.history else None,
        "verification": export.verification_dict(verification),
    }


# -- the keys that tie a stage to what made it
def teacher_id(recipe: Recipe) -> str:
    """The teacher as the cache keys name it: its GGUF file, else the folder or hub id given."""
    if recipe.teacher.url:
        return f"served:{recipe.teacher.model}"  # not the URL: the same model behind another port keeps its cache
    kind, path = torch_model.resolve(recipe.teacher.model, recipe.teacher.allow_download)
    return str(path) if kind == "gguf" else recipe.teacher.model


def teacher_key(recipe: Recipe, teacher_id: str, records: list[dict[str, str]]) -> str:
    """The key of the cached teacher pass: the teacher, the prompts and every setting that shapes its outputs."""
    settings = {
        "template": recipe.data.template,
        "max_new_tokens": recipe.data.max_new_tokens,
        "top_k": recipe.data.top_k,
        "batch_size": recipe.data.batch_size,
        "temperature": recipe.loss.temperature,
        "format": 2,
    }
    return teacher_cache.cache_key(teacher_id, records, settings)


def run_settings(recipe: Recipe, teacher_key: str) -> dict[str, Any]:
    """Everything a training checkpoint depends on."""
    return {
        "teacher_pass": teacher_key,
        "student": asdict(recipe.student),
        "max_length": recipe.data.max_length,
        **training.training_settings(recipe.train, recipe.loss, recipe.seed),
    }


def student_metadata(recipe: Recipe) -> dict[str, str]:
    """What a student's GGUF says about where it came from."""
    return {"distill.teacher": recipe.teacher.model, "distill.recipe": recipe_id(recipe)}


# -- distill export
def build(recipe: Recipe) -> tuple[Loaded, Any, list[int] | None]:
    """(teacher, student, kept layers): the teacher loaded, the student's shape made (for loading a checkpoint into)."""
    teacher = load_local(recipe)
    return (teacher, *make_student(recipe, teacher, None))


def export_checkpoint(
    recipe: Recipe, quant: str | None, out: Path | None, *, replace: bool = False, say: Say | None = None
) -> tuple[Path, Verification | None, bool]:
    """``distill export``: rebuild the student, load its latest checkpoint, write a verified GGUF; registered when
    written to the recipe's own name. Returns (path, verification, registered)."""
    plan = preflight(recipe, replace, say) if out is None else None
    target = plan.target if plan else out
    assert target is not None
    folder = recipe.work_dir() / "checkpoints"
    if not (folder / "latest").exists():
        raise DistillError(f"no checkpoint in {folder}: run `distill run` first")
    records = plan.records if plan else prompts.load_records(recipe.data.prompts, recipe.data.limit)
    train_records, _ = prompts.split(records, recipe.data.heldout, recipe.seed)
    key = teacher_key(recipe, teacher_id(recipe), train_records)
    stored = json.loads(json.dumps(run_settings(recipe, key)))
    if changed := training.changed_settings(training.read_settings(folder), stored):
        raise DistillError(
            f"the checkpoint in {folder} was made with other settings ({', '.join(changed[:6])}): "
            "run `distill run` to train with this recipe"
        )
    teacher, student, _ = build(recipe)
    training.load_checkpoint(folder, student, None)
    quant = quant or recipe.export.quant
    if problem := export.quant_problem(quant, export.model_rows(student)):
        raise DistillError(problem)
    result = export_student(student, teacher, target, recipe.name, quant, recipe.export, student_metadata(recipe), say)
    registered = out is None and recipe.register
    if registered:
        register_distilled(recipe.name, target)
    return target, result, registered
