"""A distillation recipe: one TOML file describing teacher, student, data, loss, training, export, eval.

Every key has a default (see ``recipes/default.toml`` for the commented reference); an unknown
key, a wrong type or an out-of-range value is one clear error naming the file and the key, before
anything is loaded. (Checks that need the teacher's shape run next, on its file header: see
``pipeline.preflight``.)
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from assistant.config import data_dir
from distill_tools import RECIPES_DIR, DistillError

QUANTS = ("F32", "F16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q4_K_M")


@dataclass
class TeacherSection:
    model: str = "smollm2-135m"  # registry name, GGUF file, HF folder, hub id (online only); with url: the served name
    allow_download: bool = False  # hub ids only when this is true
    url: str = ""  # an OpenAI-compatible server (http://host:port/v1) answering as the teacher; empty = local teacher
    api_key_env: str = ""  # environment variable holding the server's API key (never written anywhere)
    concurrency: int = 4  # prompts in flight at once to a served teacher
    timeout_s: float = 120.0  # per request to a served teacher


@dataclass
class StudentSection:
    model: str = ""  # an HF folder/GGUF/hub id sharing the teacher's tokenizer; empty = derive from the teacher
    layers: str = "every:2"  # every:K | first-last:N | all | comma-separated indices
    mlp_width: int = 0  # MLP channels kept per layer (0 = all); chosen on the teacher pass's sequences
    calibration: int = 64  # teacher-pass sequences used to choose them


@dataclass
class DataSection:
    prompts: list[str] = field(default_factory=lambda: ["bundled:prompts"])  # JSONL/text files
    limit: int = 0  # use at most this many prompts (0 = all), taken from the listed files in turn
    heldout: int = 16  # prompts kept out of training, for perplexity/KL in the report (0 = none: not measured)
    max_new_tokens: int = 64  # teacher answer length
    max_length: int = 128  # prompt + answer tokens per training sequence
    top_k: int = 32  # teacher log-probs cached per position (plus the mass of all the others)
    template: str = "{prompt}"  # how the teacher sees a prompt; e.g. "{prompt}\nThink step by step."
    batch_size: int = 32  # prompts the teacher answers at once (one cached shard each)


@dataclass
class LossSection:
    kind: str = "forward_kl"  # forward_kl | reverse_kl | jsd
    temperature: float = 1.0
    alpha: float = 0.2  # weight of the cross-entropy on the teacher's answers
    beta: float = 0.5  # generalized JSD interpolation


@dataclass
class TrainSection:
    epochs: int = 1
    max_steps: int = 0  # 0 = epochs × batches
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    clip: float = 1.0
    checkpoint_every: int = 50
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = True  # embeddings (tied to the LM head) stay the teacher's
    threads: int = 0  # 0 = torch's default
    fsdp: bool = False  # under torchrun: shard weights, gradients and optimizer state over the ranks (FSDP2)


@dataclass
class ExportSection:
    quant: str = "Q8_0"  # F32 | F16 | Q8_0 | Q5_0 | Q4_0 | Q4_K_M (only where the shapes fit)
    max_kl: float = 0.1  # verification: mean KL(torch ‖ GGUF) above this fails the export
    min_top1: float = 0.6  # verification: top-1 agreement below this fails the export


@dataclass
class EvalSection:
    tasks: str = "bundled:tasks"
    max_new_tokens: int = 48
    limit: int = 0  # use at most this many tasks (0 = all)
    baseline: bool = True  # also evaluate the pruned student before distillation


@dataclass
class Recipe:
    name: str = "smollm2-distilled"  # the registry name of the result
    seed: int = 0
    output_dir: str = ""  # work folder (cache, checkpoints, report); empty = <data dir>/distill/<name>
    register: bool = True
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    export: ExportSection = field(default_factory=ExportSection)
    eval: EvalSection = field(default_factory=EvalSection)
    path: Path | None = None

    def work_dir(self) -> Path:
        if self.output_dir:
            base = self.path.parent if self.path else Path.cwd()
            return (base / self.output_dir).resolve()
        return data_dir() / "distill" / self.name


# -- student.layers: which of the teacher's layers the student keeps
def check_layer_spec(spec: str) -> str:
    """What is wrong with a ``student.layers`` value on its own ('' if nothing; the range needs the teacher)."""
    try:
        choose_layers(spec, 1 << 16)
    except DistillError:
        return f"student.layers = {spec!r}: use all, every:K, first-last:N or comma-separated layer indices (0 or more)"
    return ""


def _indices(part: str) -> range:
    """``"7"`` → 7; ``"10-19"`` → 10…19 (raises ValueError otherwise)."""
    first, _, last = part.strip().partition("-")
    start, end = int(first), int(last or first)
    if end < start:
        raise ValueError(part)
    return range(start, end + 1)


def choose_layers(spec: str, n_layers: int) -> list[int]:
    """Layer indices to keep. ``all`` keeps every layer; ``every:K`` keeps every K-th (always the first and the last);
    ``first-last:N`` keeps the first N-1 and the last; ``0,1,5,...`` (ranges like ``10-19`` too) keeps exactly those."""
    try:
        if spec == "all":
            return list(range(n_layers))
        if spec.startswith("every:"):
            k = int(spec.split(":", 1)[1])
            if k < 1:
                raise ValueError
            keep = sorted(set(range(0, n_layers, k)) | {n_layers - 1})
        elif spec.startswith("first-last:"):
            n = int(spec.split(":", 1)[1])
            if not 2 <= n <= n_layers:
                raise ValueError
            keep = list(range(n - 1)) + [n_layers - 1]
        else:
            keep = sorted({i for x in spec.split(",") if x.strip() for i in _indices(x)})
    except ValueError:
        raise DistillError(
            f"student.layers = {spec!r}: use every:K, first-last:N (2 ≤ N ≤ {n_layers}) or comma-separated indices"
        ) from None
    if not keep or keep[0] < 0 or keep[-1] >= n_layers:
        raise DistillError(f"student.layers = {spec!r}: indices must lie in 0…{n_layers - 1}")
    return keep


SECTIONS = {f.name for f in fields(Recipe) if f.default_factory is not MISSING}
TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list}


def _set(target: Any, key: str, value: Any, where: str) -> None:
    kinds = {f.name: TYPES[str(f.type)] for f in fields(target) if str(f.type) in TYPES}
    if key not in kinds:
        raise DistillError(f"{where}: unknown key (known: {', '.join(kinds)})")
    expected = kinds[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
    if expected is list:
        ok = ok and all(isinstance(v, str) for v in value)
    if not ok:
        raise DistillError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    setattr(target, key, value)


def _check(recipe: Recipe, source: str) -> None:
    # the registry, here and not at the top: this module is read when the command line is built (QUANTS)
    from assistant.models.registry import validate_name

    data, train, export = recipe.data, recipe.train, recipe.export
    problems = [
        (
            recipe.loss.kind not in ("forward_kl", "reverse_kl", "jsd"),
            "loss.kind must be forward_kl, reverse_kl or jsd",
        ),
        (recipe.loss.temperature <= 0, "loss.temperature must be positive"),
        (not 0 <= recipe.loss.alpha <= 1, "loss.alpha must be between 0 and 1"),
        (not 0 <= recipe.loss.beta <= 1, "loss.beta must be between 0 and 1 (0 = forward KL, 1 = reverse KL)"),
        (export.quant not in QUANTS, f"export.quant must be one of {', '.join(QUANTS)}"),
        (export.max_kl < 0, "export.max_kl must be 0 or more"),
        (not 0 <= export.min_top1 <= 1, "export.min_top1 must be between 0 and 1"),
        (not data.prompts, "data.prompts must list at least one prompt file"),
        (data.limit < 0, "data.limit must be 0 (all) or positive"),
        (data.heldout < 0, "data.heldout must be 0 (none) or positive"),
        (data.top_k < 1, "data.top_k must be at least 1"),
        (data.batch_size < 1, "data.batch_size must be at least 1"),
        (recipe.student.mlp_width < 0, "student.mlp_width must be 0 (keep all) or positive"),
        (recipe.student.calibration < 1, "student.calibration must be at least 1"),
        (data.max_new_tokens < 1, "data.max_new_tokens must be positive"),
        (data.max_length < 8, "data.max_length must be at least 8"),
        (train.batch_size < 1 or train.grad_accum < 1, "train.batch_size and grad_accum must be positive"),
        (train.lr <= 0, "train.lr must be positive"),
        (train.epochs < 1, "train.epochs must be at least 1"),
        (train.max_steps < 0, "train.max_steps must be 0 (epochs × batches) or positive"),
        (train.checkpoint_every < 1, "train.checkpoint_every must be at least 1"),
        (train.warmup_steps < 0, "train.warmup_steps must be 0 or more"),
        (train.weight_decay < 0, "train.weight_decay must be 0 or more"),
        (train.clip < 0, "train.clip must be 0 (off) or positive"),
        (train.threads < 0, "train.threads must be 0 (torch's default) or positive"),
        (recipe.eval.max_new_tokens < 1, "eval.max_new_tokens must be positive"),
        (recipe.eval.limit < 0, "eval.limit must be 0 (all) or positive"),
        ("{prompt}" not in data.template, "data.template must contain {prompt}"),
        (recipe.teacher.concurrency < 1, "teacher.concurrency must be at least 1"),
        (recipe.teacher.timeout_s <= 0, "teacher.timeout_s must be positive"),
        *_served_problems(recipe),
    ]
    for bad, message in problems:
        if bad:
            raise DistillError(f"{source}: {message}")
    if not recipe.student.model:
        problem = check_layer_spec(recipe.student.layers)
        if problem:
            raise DistillError(f"{source}: {problem}")
    try:
        validate_name(recipe.name)
    except Exception as exc:  # RegistryError: reword with the file name
        raise DistillError(f"{source}: name: {exc}") from None


def _served_problems(recipe: Recipe) -> list[tuple[bool, str]]:
    """What a served teacher (``teacher.url``) needs of the rest of the recipe."""
    url = recipe.teacher.url
    if not url:
        return []
    return [
        (not url.startswith(("http://", "https://")), "teacher.url must start with http:// or https://"),
        (
            not recipe.student.model,
            "a served teacher's weights are not here to prune: set student.model "
            "(a model sharing the teacher's tokenizer)",
        ),
        (recipe.loss.temperature != 1.0, "a served teacher's log-probs are at temperature 1: set loss.temperature = 1"),
        (
            recipe.loss.kind == "reverse_kl",
            "a served teacher gives top-k log-probs only: reverse KL needs them all; use forward_kl or jsd",
        ),
    ]


def load(path: Path | str) -> Recipe:
    """Read and validate a recipe; ``tiny`` and ``default`` name the bundled ones."""
    path = Path(path)
    if not path.exists() and (RECIPES_DIR / f"{path.name}.toml").exists():
        path = RECIPES_DIR / f"{path.name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DistillError(f"{path}: no such recipe file (bundled: tiny, default)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DistillError(f"{path}: cannot read the recipe: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DistillError(f"{path}: invalid TOML: {exc}") from None
    recipe = Recipe(path=path.resolve())
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise DistillError(f"{path}: [{key}] must be a table")
            for sub, item in value.items():
                _set(getattr(recipe, key), sub, item, f"{path}: {key}.{sub}")
        else:
            _set(recipe, key, value, f"{path}: {key}")
    _check(recipe, str(path))
    return recipe
