"""``distill run``: checks → teacher → teacher pass → student (pruned, calibrated on that pass) → training →
GGUF → registry → report.

Everything that can be checked is checked before anything is loaded: every recipe key, the prompt
and task files, the output name (a model this recipe did not make is never overwritten without
``replace``), the student's shape against the teacher's file header and the export type.
Every stage is resumable and keyed to the settings that produce it: the teacher pass is cached
shard by shard, training resumes from its last checkpoint only if the recipe did not change, and
the finished GGUF is only written (and registered) once verification passes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distill_tools import DistillError
from distill_tools.progress import Say, printer
from distill_tools.recipe import Recipe

if TYPE_CHECKING:
    from assistant.storage.store import ModelEntry


@dataclass
class Plan:
    """What the checks before any work found: the prompts, the tasks and the output file."""

    records: list[dict[str, str]]
    tasks: list[dict[str, Any]]
    target: Path


def recipe_id(recipe: Recipe) -> str:
    """How a student names the recipe it came from (in its GGUF metadata)."""
    return str(recipe.path) if recipe.path else recipe.name


def preflight(recipe: Recipe, replace: bool = False, say: Say | None = None) -> Plan:
    """Every check that needs no model loaded; removes a killed export's leftovers."""
    from assistant.config import models_dir
    from distill_tools import distributed, evaluate, export, prompts

    records = prompts.load_records(recipe.data.prompts, recipe.data.limit)
    tasks = evaluate.load_tasks(recipe.eval.tasks)[: recipe.eval.limit or None]
    target = models_dir() / f"{recipe.name}.gguf"
    check_output(recipe, target, replace)
    check_shape(recipe)
    leftovers = (
        [
            p
            for t in (target, recipe.work_dir() / "pruned-student.gguf", recipe.work_dir() / "teacher.gguf")
            for p in export.clean_leftovers(t)
        ]
        if distributed.world().main
        else []
    )
    if leftovers and say:
        say(f"cleanup: removed {len(leftovers)} leftover file(s) of an interrupted export")
    return Plan(records, tasks, target)


def made_by(path: Path) -> str | None:
    """The recipe a GGUF says it came from (None for a file distillation did not make, or no readable file)."""
    from assistant.models.gguf_header import HeaderError, parse

    try:
        value = parse(path).metadata.get("distill.recipe")
    except (HeaderError, OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def check_output(recipe: Recipe, target: Path, replace: bool) -> None:
    """Refuse a name that belongs to a packaged model, or to a model this recipe did not make (unless ``replace``)."""
    from assistant.config import database_path
    from assistant.models.registry import Registry, is_packaged
    from assistant.storage.store import Store

    where = recipe.path.name if recipe.path else "the recipe"
    if is_packaged(recipe.name):
        raise DistillError(f"{where}: name = {recipe.name!r} is a packaged model's name; choose another name")
    store = Store(database_path())
    try:
        entry = Registry(store).get(recipe.name)
    finally:
        store.close()
    mine = recipe_id(recipe)
    clash = ""
    if entry is not None:
        path = Path(entry["path"])
        if entry["origin"] != "distilled" or (path.exists() and made_by(path) != mine):
            clash = f"a model named {recipe.name!r} is already registered ({entry['origin']}, {path})"
    if not clash and (target.exists() or target.is_symlink()) and made_by(target) != mine:
        clash = f"{target} already exists"
    if clash and not replace:
        raise DistillError(
            f"{clash} and was not made by this recipe: choose another name in {where}, "
            "or pass --replace to overwrite it"
        )


def check_shape(recipe: Recipe) -> None:
    """The student's layers and MLP width against the teacher's header; the export type against the student's shape."""
    from distill_tools import export, student, torch_model

    where = recipe.path.name if recipe.path else "the recipe"
    if recipe.student.model:
        shape = torch_model.shape(recipe.student.model, recipe.teacher.allow_download)
        if not recipe.teacher.url:
            torch_model.resolve(recipe.teacher.model, recipe.teacher.allow_download)
        width = shape.intermediate if shape else 0
    else:
        shape = torch_model.shape(recipe.teacher.model, recipe.teacher.allow_download)
        if shape is None:
            return
        try:
            student.choose_layers(recipe.student.layers, shape.layers)
        except DistillError as exc:
            raise DistillError(f"{where}: {exc}") from None
        width = recipe.student.mlp_width or shape.intermediate
        if recipe.student.mlp_width and not 0 < recipe.student.mlp_width < shape.intermediate:
            raise DistillError(
                f"{where}: student.mlp_width = {recipe.student.mlp_width}: must lie between 1 and "
                f"{shape.intermediate - 1} (0 keeps all {shape.intermediate})"
            )
    if shape is not None:
        rows = export.row_lengths(shape.hidden, width, shape.heads, shape.head_dim)
        if problem := export.quant_problem(recipe.export.quant, rows):
            raise DistillError(f"{where}: {problem}")


def build(recipe: Recipe) -> tuple[Any, Any, list[int] | None]:
    """(teacher, student, kept layers): the teacher loaded, the student's shape made (for loading a checkpoint into)."""
    teacher = load_local(recipe)
    return (teacher, *make_student(recipe, teacher, None))


def load_local(recipe: Recipe) -> Any:
    """The model loaded here: the teacher, or with a served teacher the student to start from (its tokenizer
    is the teacher's). Under torchrun rank 0 loads first: it converts a GGUF once (transformers writes weights
    from rank 0 only) and the other ranks read its copy."""
    from distill_tools import distributed, torch_model

    place = distributed.world()
    if place.parallel and not place.main:
        distributed.barrier()
    loaded = torch_model.load(
        recipe.student.model if recipe.teacher.url else recipe.teacher.model, recipe.teacher.allow_download
    )
    if place.parallel and place.main:
        distributed.barrier()
    return loaded


def make_student(recipe: Recipe, teacher: Any, calibration: list[Any] | None) -> tuple[Any, list[int] | None]:
    """(student model, kept layer indices or None): another model, or the teacher pruned in depth and width.

    Narrowing the MLPs chooses channels on ``calibration`` examples; without them only the shape is
    made (for loading a checkpoint into)."""
    from distill_tools import batches, torch_model
    from distill_tools import student as students

    if recipe.teacher.url:  # ``teacher`` is the student to start from (see load_local)
        teacher.model.train()
        return teacher.model, None
    if recipe.student.model:
        other = torch_model.load(recipe.student.model, recipe.teacher.allow_download)
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
        calibration_batches = [
            batches.collate(calibration[i : i + size], pad) for i in range(0, len(calibration), size)
        ]
        students.narrow_mlp(model, recipe.student.mlp_width, calibration_batches)
    return model, keep


def teacher_id(recipe: Recipe) -> str:
    """The teacher as the cache keys name it: its GGUF file, else the folder or hub id given."""
    from distill_tools import torch_model

    if recipe.teacher.url:
        return f"served:{recipe.teacher.model}"  # not the URL: the same model behind another port keeps its cache
    kind, path = torch_model.resolve(recipe.teacher.model, recipe.teacher.allow_download)
    return str(path) if kind == "gguf" else recipe.teacher.model


def teacher_key(recipe: Recipe, teacher_id: str, records: list[dict[str, str]]) -> str:
    """The key of the cached teacher pass: the teacher, the prompts and every setting that shapes its outputs."""
    from distill_tools import teacher_cache

    settings = {
        "template": recipe.data.template,
        "max_new_tokens": recipe.data.max_new_tokens,
        "top_k": recipe.data.top_k,
        "batch_size": recipe.data.batch_size,
        "temperature": recipe.loss.temperature,
        "format": 2,
    }
    return teacher_cache.cache_key(teacher_id, records, settings)


def served_kd_line(runner: Any) -> str:
    """What a served teacher's pass (this run's part of it, over every rank) gave: word-level targets or
    sequence-level only."""
    done = runner.word_level + runner.sequence_level
    if not done:
        return "every shard came from the cache"
    line = (
        f"{runner.word_level}/{done} answers with word-level targets (top-k log-probs mapped onto the student's "
        f"vocabulary), {runner.sequence_level} sequence-level only"
    )
    if runner.word_level == 0:
        line += " (the server returns no log-probs that map one-to-one: sequence-level KD on the teacher's answers)"
    if runner.padded_positions:
        line += f"; {runner.padded_positions} positions had fewer than top_k mapped tokens (padded at zero probability)"
    return line


def run_settings(recipe: Recipe, teacher_key: str) -> dict[str, Any]:
    """Everything a training checkpoint depends on."""
    from distill_tools import train

    return {
        "teacher_pass": teacher_key,
        "student": asdict(recipe.student),
        "max_length": recipe.data.max_length,
        **train.training_settings(recipe.train, recipe.loss, recipe.seed),
    }


def served_teacher(recipe: Recipe, tokenizer: Any) -> Any:
    """The recipe's served teacher (``teacher.url``), reading the student's tokenizer."""
    from assistant.config import TeacherSettings
    from distill_tools.served_teacher import ServedTeacher

    t = recipe.teacher
    settings = TeacherSettings(url=t.url, model=t.model, api_key_env=t.api_key_env, timeout_s=t.timeout_s)
    return ServedTeacher(settings, tokenizer, t.concurrency)


def teacher_outputs(recipe: Recipe, runner: Any, tokenizer: Any, records: list[dict[str, str]], key: str) -> list[Any]:
    """The cached teacher pass over ``records`` by ``runner`` (a TorchTeacher or a ServedTeacher). Under torchrun
    each rank makes every N-th shard, then every rank reads them all."""
    from functools import partial

    from distill_tools import distributed, teacher_cache

    run = partial(
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
            run(mine=lambda shard: False)
        distributed.barrier()
        run(mine=lambda shard: shard % place.size == place.rank)
        counts = ("word_level", "sequence_level", "padded_positions")
        if recipe.teacher.url:  # a served teacher counts its answers: report every rank's
            totals = distributed.all_reduce_sum([float(getattr(runner, name)) for name in counts])
            for name, total in zip(counts, totals):
                setattr(runner, name, int(total))
        else:
            distributed.barrier()
    return run()


def export_student(recipe: Recipe, student: Any, teacher: Any, target: Path, quant: str, say: Any) -> Any:
    """The verified GGUF of ``student`` at ``target``, with the recipe's limits and metadata."""
    from distill_tools import export

    return export.export(
        student,
        teacher.tokenizer,
        target,
        quant=quant,
        name=recipe.name,
        teacher_gguf=teacher.gguf_path,
        max_kl=recipe.export.max_kl,
        min_top1=recipe.export.min_top1,
        metadata=student_metadata(recipe),
        say=say,
    )


def student_metadata(recipe: Recipe) -> dict[str, str]:
    """What a student's GGUF says about where it came from."""
    return {"distill.teacher": recipe.teacher.model, "distill.recipe": recipe_id(recipe)}


def run(
    recipe: Recipe, on_step: Any = None, *, resume: str = "auto", replace: bool = False, say: Say | None = None
) -> dict[str, Any]:
    """The whole pipeline; returns a summary (paths, figures, timings). ``say`` receives one line per phase.

    Under torchrun every rank runs it up to the end of training (see ``distributed``); rank 0 alone goes on
    (export, registry, evaluation, report) and the other ranks return ``{"rank": …}``."""
    from distill_tools import batches, distributed, evaluate, export, prompts, torch_teacher, train
    from distill_tools.progress import quiet_libraries
    from distill_tools.student import parameter_count

    place = distributed.start()
    say = (say or printer()) if place.main else (lambda line: None)
    if place.parallel:
        backend = "NCCL on CUDA" if distributed.device().type == "cuda" else "gloo on CPU"
        say(f"torchrun: {place.size} processes ({backend})")
    times: dict[str, float] = {}
    clock = time.perf_counter()
    plan = preflight(recipe, replace, say)
    work = recipe.work_dir()
    work.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    train_records, heldout = prompts.split(plan.records, recipe.data.heldout, recipe.seed)
    teacher = load_local(recipe)  # with a served teacher: the student to start from
    times["load_s"] = time.perf_counter() - clock
    tok = teacher.tokenizer
    if recipe.teacher.url:
        runner = served_teacher(recipe, tok)
        say(
            f"teacher: {recipe.teacher.model or 'the model'} served at {recipe.teacher.url}; "
            f"tokenizer check: {runner.check_tokenizer()}"
        )
    else:
        runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
        say(
            f"teacher: {recipe.teacher.model} ({parameter_count(teacher.model) / 1e6:.1f} M parameters) "
            f"loaded in {times['load_s']:.1f} s"
        )

    mark = time.perf_counter()
    key = teacher_key(recipe, teacher_id(recipe), train_records)
    outputs = teacher_outputs(recipe, runner, tok, train_records, key)
    examples = batches.examples(outputs, recipe.data.max_length)
    times["teacher_pass_s"] = time.perf_counter() - mark
    answer_tokens = sum(len(o.answer_ids) for o in outputs)
    bytes_per_token = sum(o.nbytes for o in outputs) / max(1, answer_tokens)
    teacher_tail = sum(float(np.exp(o.tail.astype(np.float64)).sum()) for o in outputs) / max(1, answer_tokens)
    say(
        f"teacher pass: {len(outputs)} prompts, {answer_tokens} answer tokens, top-{recipe.data.top_k} cached at "
        f"{bytes_per_token:.0f} bytes/token, teacher mass outside its top-{recipe.data.top_k} {teacher_tail:.1%}, "
        f"{times['teacher_pass_s']:.1f} s"
    )
    if recipe.teacher.url:
        say(f"teacher pass: {served_kd_line(runner)}")

    mark = time.perf_counter()
    student, layers = make_student(recipe, teacher, examples[: recipe.student.calibration])
    baseline = work / "pruned-student.gguf"
    if recipe.eval.baseline and place.main:  # the student before any training
        export.export(
            student,
            teacher.tokenizer,
            baseline,
            quant=recipe.export.quant,
            name=f"{recipe.name}-pruned",
            teacher_gguf=teacher.gguf_path,
            check=False,
        )
    times["student_s"] = time.perf_counter() - mark
    say(
        f"student: {student.config.num_hidden_layers} layers, MLP width {student.config.intermediate_size}, "
        f"{parameter_count(student) / 1e6:.1f} M parameters"
        + (
            ""
            if recipe.teacher.url
            else f" ({parameter_count(student) / parameter_count(teacher.model):.0%} of the teacher)"
        )
        + f", {times['student_s']:.1f} s"
    )

    mark = time.perf_counter()
    state = train.train(
        student,
        examples,
        recipe.train,
        recipe.loss,
        pad_id=teacher.tokenizer.pad_token_id,
        seed=recipe.seed,
        folder=work / "checkpoints",
        on_step=on_step,
        settings=run_settings(recipe, key),
        resume=resume,
        say=say,
    )
    times["train_s"] = time.perf_counter() - mark
    if not place.main:
        return {"rank": place.rank, "steps": state.step}
    tokens = sum(h["tokens"] for h in state.history)
    seconds = sum(h["seconds"] for h in state.history)
    per_epoch = max(1, math.ceil(len(examples) / (recipe.train.batch_size * recipe.train.grad_accum)))
    last_epoch = state.history[-per_epoch:]
    student_tail = sum(h.get("tail", 0.0) for h in last_epoch) / max(1, len(last_epoch))
    if state.history:
        say(
            f"train: {state.step} steps, {train.step_figures(state.history[-1])}, "
            f"{tokens / seconds if seconds else 0:.0f} tok/s, {times['train_s']:.1f} s"
        )

    mark = time.perf_counter()
    verification = export_student(recipe, student, teacher, plan.target, recipe.export.quant, say)
    times["export_s"] = time.perf_counter() - mark
    say(
        f"export: {plan.target} ({recipe.export.quant}, {plan.target.stat().st_size / 1e6:.1f} MB), "
        f"{verification.line() if verification else 'not checked'}, {times['export_s']:.1f} s"
    )
    if recipe.register:
        register(recipe.name, plan.target)
        say(f"registered: {recipe.name} (assistant models use {recipe.name})")

    summary = {
        "name": recipe.name,
        "gguf": str(plan.target),
        "quant": recipe.export.quant,
        "registered": recipe.register,
        "teacher": recipe.teacher.model,
        "recipe": recipe_id(recipe),
        "student_layers": layers,
        "student_parameters": parameter_count(student),
        "teacher_parameters": None if recipe.teacher.url else parameter_count(teacher.model),
        "teacher_kd": served_kd_line(runner) if recipe.teacher.url else "word-level (local teacher)",
        "train_sequences": len(examples),
        "steps": state.step,
        "train_tokens": tokens,
        "train_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "teacher_cache_bytes_per_token": round(bytes_per_token, 1),
        "teacher_tail_mass": round(teacher_tail, 4),
        "student_tail_mass": round(student_tail, 4) if state.history else None,
        "verification": export.verification_dict(verification),
    }
    work_summary(work, {**summary, "timings_s": {k: round(v, 1) for k, v in times.items()}})
    if recipe.teacher.url:
        say(
            "evaluate: skipped (the teacher is served, not here; where you have its GGUF, compare with "
            f"`assistant distill eval --teacher TEACHER.gguf --student {recipe.name}`)"
        )
        times["total_s"] = time.perf_counter() - clock
        summary.update(timings_s={k: round(v, 1) for k, v in times.items()}, report={}, models=[])
        work_summary(work, summary)
        return summary

    mark = time.perf_counter()
    teacher_gguf = teacher.gguf_path
    if teacher_gguf is None:
        teacher_gguf = work / "teacher.gguf"
        export.export(
            teacher.model, teacher.tokenizer, teacher_gguf, quant=recipe.export.quant, name="teacher", check=False
        )
    students = {"distilled": plan.target}
    if recipe.eval.baseline and baseline.exists():
        students = {"pruned (no distillation)": baseline, **students}
    say(
        f"evaluate: teacher and {len(students)} student(s) in llama.cpp on {len(plan.tasks)} tasks "
        f"and {len(heldout)} held-out prompts"
    )
    reports = evaluate.evaluate(
        teacher_gguf,
        students,
        plan.tasks,
        [r["prompt"] for r in heldout],
        recipe.eval.max_new_tokens,
        recipe.data.top_k,
    )
    times["eval_s"] = time.perf_counter() - mark
    times["total_s"] = time.perf_counter() - clock
    for r in reports:
        say(
            f"evaluate: {r.label}: task score {evaluate.figure(r.task_score, '.1%')}, "
            f"KL {evaluate.figure(r.mean_kl, '.3f')}, top-1 {evaluate.figure(r.top1_agreement, '.1%')}, "
            f"perplexity {evaluate.figure(r.perplexity, '.2f')}, "
            f"mass outside the teacher's top-{recipe.data.top_k} {evaluate.figure(r.outside_topk, '.1%')}"
        )

    summary["timings_s"] = {k: round(v, 1) for k, v in times.items()}
    summary["report"] = {
        k: str(v) for k, v in evaluate.write_report(work / "report", reports, state.history, summary).items()
    }
    summary["models"] = [{k: v for k, v in r.__dict__.items() if k != "answers"} for r in reports]
    work_summary(work, summary)
    return summary


def work_summary(work: Path, summary: dict[str, Any]) -> None:
    from assistant.storage.files import atomic_write_text

    atomic_write_text(work / "summary.json", json.dumps(summary, indent=2))


def register(name: str, path: Path) -> ModelEntry:
    """Add (or update) the student in the model registry as a distilled model."""
    from assistant.config import database_path
    from assistant.models.gguf_info import read_info, sha256_file
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    store = Store(database_path())
    try:
        return Registry(store).add(name, path, "distilled", read_info(path), sha256_file(path))
    finally:
        store.close()


def export_checkpoint(
    recipe: Recipe, quant: str | None, out: Path | None, *, replace: bool = False, say: Say | None = None
) -> tuple[Path, Any, bool]:
    """``distill export``: rebuild the student, load its latest checkpoint, write a verified GGUF; registered when
    written to the recipe's own name. Returns (path, verification, registered)."""
    from distill_tools import export, prompts, train

    plan: Plan | None = None
    if out is None:
        plan = preflight(recipe, replace, say)
        target = plan.target
    else:
        target = out
    folder = recipe.work_dir() / "checkpoints"
    if not (folder / "latest").exists():
        raise DistillError(f"no checkpoint in {folder}: run `distill run` first")
    records = plan.records if plan else prompts.load_records(recipe.data.prompts, recipe.data.limit)
    train_records, _ = prompts.split(records, recipe.data.heldout, recipe.seed)
    key = teacher_key(recipe, teacher_id(recipe), train_records)
    changed = train.changed_settings(train.read_settings(folder), json.loads(json.dumps(run_settings(recipe, key))))
    if changed:
        raise DistillError(
            f"the checkpoint in {folder} was made with other settings ({', '.join(changed[:6])}): "
            "run `distill run` to train with this recipe"
        )
    teacher, student, _ = build(recipe)
    train.load_checkpoint(folder, student, None)
    quant = quant or recipe.export.quant
    if problem := export.quant_problem(quant, export.model_rows(student)):
        raise DistillError(problem)
    result = export_student(recipe, student, teacher, target, quant, say)
    registered = out is None and recipe.register
    if registered:
        register(recipe.name, target)
    return target, result, registered
