"""Every check a run makes before it loads a model: the prompt and task files, the output name (a model this
recipe did not make is never overwritten without ``replace``), the student's shape against the teacher's file
header and the export type against the student's shape. A killed export's leftovers are removed here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.config import models_dir
from assistant.models import registry
from assistant.models.gguf_header import HeaderError, parse
from distill_tools import DistillError, distributed, evaluate, export, prompts, torch_model
from distill_tools.progress import Say
from distill_tools.recipe import Recipe, choose_layers


@dataclass
class Plan:
    """What the checks found: the prompts, the tasks and the output file."""

    records: list[dict[str, str]]
    tasks: list[dict[str, Any]]
    target: Path


def recipe_id(recipe: Recipe) -> str:
    """How a student names the recipe it came from (in its GGUF metadata)."""
    return str(recipe.path) if recipe.path else recipe.name


def where(recipe: Recipe) -> str:
    """The recipe as an error message names it."""
    return recipe.path.name if recipe.path else "the recipe"


def preflight(recipe: Recipe, replace: bool = False, say: Say | None = None) -> Plan:
    """Every check that needs no model loaded; removes a killed export's leftovers."""
    records = prompts.load_records(recipe.data.prompts, recipe.data.limit)
    tasks = evaluate.load_tasks(recipe.eval.tasks)[: recipe.eval.limit or None]
    target = models_dir() / f"{recipe.name}.gguf"
    check_output(recipe, target, replace)
    check_shape(recipe)
    if distributed.world().main:
        work = recipe.work_dir()
        made = (target, work / "pruned-student.gguf", work / "teacher.gguf")
        leftovers = [p for t in made for p in export.clean_leftovers(t)]
        if leftovers and say:
            say(f"cleanup: removed {len(leftovers)} leftover file(s) of an interrupted export")
    return Plan(records, tasks, target)


def made_by(path: Path) -> str | None:
    """The recipe a GGUF says it came from (None for a file distillation did not make, or no readable file)."""
    try:
        value = parse(path).metadata.get("distill.recipe")
    except (HeaderError, OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def check_output(recipe: Recipe, target: Path, replace: bool) -> None:
    """Refuse a name that belongs to a packaged model, or to a model this recipe did not make (unless ``replace``)."""
    if registry.is_packaged(recipe.name):
        raise DistillError(f"{where(recipe)}: name = {recipe.name!r} is a packaged model's name; choose another name")
    with registry.opened() as models:
        entry = models.get(recipe.name)
    mine = recipe_id(recipe)
    clash = ""
    if entry is not None:
        path = Path(entry.path)
        if entry.origin != "distilled" or (path.exists() and made_by(path) != mine):
            clash = f"a model named {recipe.name!r} is already registered ({entry.origin}, {path})"
    if not clash and (target.exists() or target.is_symlink()) and made_by(target) != mine:
        clash = f"{target} already exists"
    if clash and not replace:
        raise DistillError(
            f"{clash} and was not made by this recipe: choose another name in {where(recipe)}, "
            "or pass --replace to overwrite it"
        )


def check_shape(recipe: Recipe) -> None:
    """The student's layers and MLP width against the teacher's header; the export type against the student's shape."""
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
            choose_layers(recipe.student.layers, shape.layers)
        except DistillError as exc:
            raise DistillError(f"{where(recipe)}: {exc}") from None
        width = recipe.student.mlp_width or shape.intermediate
        if recipe.student.mlp_width and not 0 < recipe.student.mlp_width < shape.intermediate:
            raise DistillError(
                f"{where(recipe)}: student.mlp_width = {recipe.student.mlp_width}: must lie between 1 and "
                f"{shape.intermediate - 1} (0 keeps all {shape.intermediate})"
            )
    if shape is not None:
        rows = export.row_lengths(shape.hidden, width, shape.heads, shape.head_dim)
        if problem := export.quant_problem(recipe.export.quant, rows):
            raise DistillError(f"{where(recipe)}: {problem}")
