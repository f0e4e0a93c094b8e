"""Distillation past one process: training throughput under torchrun, and what more training tokens buy.

1. Throughput, 2 processes vs 1: the same student, cached teacher outputs, global batch and steps, run
   by ``torchrun --nproc_per_node 1`` (one process with a thread per core) and ``--nproc_per_node 2``
   (gloo, one thread each). On a 2-core CPU the two share the same cores, so the ratio measures the
   data-parallel overhead (gradient all-reduce, the duplicated model), not a speed-up; on N GPUs each
   process has a device of its own.
2. Retention vs training tokens (full mode only; runs a recipe once per token budget, minutes each on
   2 cores): the distilled student's task retention, KL and top-1 agreement vs the teacher, per budget,
   as a table and a plot. ``retention_curve("tiny", [...])`` runs it at toy size.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, bench_home, cli, ratio, row

BENCH = "scale"
BUDGETS = [25_000, 50_000, 100_000, 200_000, 400_000]  # training tokens (full mode, the default recipe)
WORKER = """
import json, sys
from pathlib import Path
from distill_tools import batches, distributed, student, teacher_cache, torch_model, train
from distill_tools.recipe import LossSection, TrainSection

place = distributed.start()
cache, teacher_path, layers, width, steps, out = sys.argv[1:7]
teacher = torch_model.load(teacher_path)
outputs = [o for p in sorted(Path(cache).glob("shard-*.safetensors")) for o in teacher_cache.read_shard(p)]
model = student.prune(teacher.model, student.choose_layers(layers, teacher.model.config.num_hidden_layers))
student.narrow_mlp_shape(model, int(width))
cfg = TrainSection(max_steps=int(steps), batch_size=8, warmup_steps=1, checkpoint_every=10_000)
state = train.train(model, batches.examples(outputs, 128), cfg, LossSection(), pad_id=teacher.tokenizer.pad_token_id,
                    seed=0, folder=Path(out))
timed = state.history[1:]  # the first step warms up
if place.main:
    print(json.dumps({"tok_s": sum(h["tokens"] for h in timed) / sum(h["seconds"] for h in timed),
                      "loss": [h["loss"] for h in state.history]}))
distributed.stop()
"""


def _teacher_cache(folder: Path, prompts: int, max_new: int) -> Path:
    from assistant.registry import embedded_model_path
    from distill_tools import prompts as prompt_files
    from distill_tools import teacher_cache, torch_model, torch_teacher

    teacher = torch_model.load(str(embedded_model_path()))
    tok = teacher.tokenizer
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    records = prompt_files.load_records(["bundled:prompts"], limit=prompts)
    teacher_cache.teacher_pass(
        records,
        runner,
        tok,
        folder,
        template="{prompt}",
        max_new_tokens=max_new,
        top_k=32,
        key="bench",
        batch_size=prompts,
    )
    return folder


def _run(nproc: int, threads: int, cache: Path, shape: tuple[str, int], steps: int, out: Path) -> dict[str, Any]:
    from assistant.registry import embedded_model_path

    script = out.parent / "worker.py"
    script.write_text(WORKER)
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        PYTHON,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        str(script),
        str(cache),
        str(embedded_model_path()),
        shape[0],
        str(shape[1]),
        str(steps),
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun --nproc_per_node {nproc} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput_rows(quick: bool) -> list[dict[str, Any]]:
    from assistant.engine import physical_cores

    shape, prompts, max_new, steps = (("0,10,20,29", 256), 8, 16, 4) if quick else (("all", 480), 32, 48, 8)
    cores = physical_cores()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        cache = _teacher_cache(Path(tmp) / "cache", prompts, max_new)
        one = _run(1, cores, cache, shape, steps, Path(tmp) / "one")
        two = _run(2, max(1, cores // 2), cache, shape, steps, Path(tmp) / "two")
        single = _run(1, 1, cache, shape, steps, Path(tmp) / "single")
    same = all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(one["loss"], two["loss"]))
    student = "tiny recipe's student (4 layers, 256-channel MLPs)" if quick else "default recipe's student"
    notes = (
        f"{student}, global batch 8, {steps} steps (the first not timed), {prompts} teacher-answered prompts, "
        f"{cores} physical cores: 1 process × {cores} threads {one['tok_s']:.0f} tok/s, 2 gloo processes × "
        f"{max(1, cores // 2)} thread(s) {two['tok_s']:.0f} tok/s, 1 process × 1 thread {single['tok_s']:.0f} "
        "tok/s. The processes share the same cores, so this is no speed-up from more hardware: it shows the "
        "data-parallel overhead (gradient all-reduce, a model copy per process) against torch's own threading "
        f"of small matrices; on N GPUs each process has a device of its own. Same loss curve: "
        f"{'yes' if same else 'NO'}"
    )
    best = max(one["tok_s"], single["tok_s"])  # the baseline: one process at its best thread count here
    return [
        row(
            BENCH,
            "training throughput, 2 processes vs 1 (torchrun)",
            two["tok_s"],
            "tok/s",
            baseline=best,
            ratio=ratio(two["tok_s"], best),
            notes=notes + "; baseline: the faster 1-process figure",
        )
    ]


def retention_curve(recipe_name: str, budgets: list[int], folder: Path | None = None) -> dict[str, Any]:
    """Run ``recipe_name`` once per training-token budget (the same teacher cache, a fresh schedule each);
    returns {"tokens", "retention", "kl", "top1", "task_score"} lists, one entry per budget."""
    from distill_tools import pipeline, recipe

    base = recipe.load(recipe_name)
    work = folder or base.work_dir().parent / f"{base.name}-curve"
    curve: dict[str, list[Any]] = {
        "budget": [],
        "tokens": [],
        "steps": [],
        "retention": [],
        "kl": [],
        "top1": [],
        "task_score": [],
    }
    per_step = base.train.batch_size * base.train.grad_accum * base.data.max_length * 0.6  # a first guess
    for budget in budgets:
        config = recipe.load(recipe_name)
        config.name, config.register, config.output_dir = f"{base.name}-{budget // 1000}k", False, str(work)
        config.train.max_steps = max(1, round(budget / per_step))
        config.train.checkpoint_every = max(config.train.checkpoint_every, config.train.max_steps)
        summary = pipeline.run(config, resume="fresh", replace=True, say=lambda line: None)
        tokens = summary["train_tokens"]
        per_step = tokens / max(1, summary["steps"])  # measured: the next budgets are hit closely
        distilled = next(m for m in summary["models"] if m["label"] == "distilled")
        for key, value in (
            ("budget", budget),
            ("tokens", tokens),
            ("steps", summary["steps"]),
            ("retention", distilled["retention"]),
            ("kl", distilled["mean_kl"]),
            ("top1", distilled["top1_agreement"]),
            ("task_score", distilled["task_score"]),
        ):
            curve[key].append(value)
    return curve


def curve_rows(curve: dict[str, Any], recipe_name: str) -> list[dict[str, Any]]:
    pct = lambda v: None if v is None else round(100 * v, 1)  # noqa: E731
    table = "; ".join(
        f"{t / 1000:.0f}k tokens ({s} steps): retention {pct(r)} %, KL {k:.3f}, top-1 {pct(a)} %"
        for t, s, r, k, a in zip(curve["tokens"], curve["steps"], curve["retention"], curve["kl"], curve["top1"])
    )
    plot = {
        "x": [round(t / 1000, 1) for t in curve["tokens"]],
        "xlabel": "training tokens (thousands)",
        "ylabel": "%",
        "title": f"{recipe_name} recipe: what more training tokens buy",
        "series": {
            "task retention": [pct(r) or 0.0 for r in curve["retention"]],
            "top-1 agreement with the teacher": [pct(a) or 0.0 for a in curve["top1"]],
        },
    }
    return [
        row(
            BENCH,
            f"{recipe_name} recipe retention vs training tokens",
            pct(curve["retention"][-1]),
            "%",
            notes=table,
            plot=plot,
        )
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    if quick:  # three torchrun launches and a teacher pass, or a recipe per budget: minutes, not a quick run
        return [
            row(
                BENCH,
                "training throughput, 2 processes vs 1 (torchrun)",
                None,
                "tok/s",
                notes="full mode only (three torchrun launches of the default recipe's student)",
            ),
            row(
                BENCH,
                "default recipe retention vs training tokens",
                None,
                "%",
                notes="full mode only (runs the default recipe once per budget: "
                + ", ".join(f"{b // 1000}k" for b in BUDGETS)
                + " tokens)",
            ),
        ]
    with bench_home():
        return throughput_rows(quick) + curve_rows(retention_curve("default", BUDGETS), "default")


if __name__ == "__main__":
    sys.exit(cli(run, "bench_scale"))
