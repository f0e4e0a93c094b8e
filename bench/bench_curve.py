"""What more training tokens buy: the default recipe's retention at several training-token budgets.

Full mode only (runs the recipe once per budget, minutes each on 2 cores): the distilled student's task
retention, KL and top-1 agreement vs the teacher, per budget, as a table and a plot. Every budget reuses
the same teacher cache (the recipe's prompts), so past the point where the student has learnt them the
extra tokens are more epochs over the same answers. ``retention_curve("tiny", [...])`` runs it at toy size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.common import bench_home, cli, row

BENCH = "curve"
BUDGETS = [25_000, 50_000, 100_000, 200_000, 400_000]  # training tokens (full mode, the default recipe)


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
    if quick:  # a recipe per budget: half an hour and more, not a quick run
        return [
            row(
                BENCH,
                "default recipe retention vs training tokens",
                None,
                "%",
                notes="full mode only (runs the default recipe once per budget: "
                + ", ".join(f"{b // 1000}k" for b in BUDGETS)
                + " tokens)",
            )
        ]
    with bench_home():
        return curve_rows(retention_curve("default", BUDGETS), "default")


if __name__ == "__main__":
    sys.exit(cli(run, "bench_curve"))
