"""Answers grounded in your documents (issue 28): a ~1,000-token handbook forced into retrieval vs put in whole.

The handbook persona of ``bench/personas/lumen-handbook`` (its system prompt, the handbook, 30 hand-written
questions nobody's generator saw) asked through the product's own path, a :class:`Session` on SmolLM2-135M:

- **whole** (the baseline): the persona as it runs prompted today, the handbook in its prompt, a 2,048-token window;
- **retrieval**: the same system prompt with the handbook as the persona's documents and a 1,024-token window,
  too small for it whole, so each question gets the passages that match it (``chat.grounding``).

Each question in a new conversation, greedy; an answer is right when it holds one of the accepted answers as a
whole word (``distill_tools.evaluate.correct``, as the persona evaluation scores). Reported: each arm's share
right with its Wilson 95 % interval, retrieval / whole with a paired-bootstrap 95 % interval, and the prompt
tokens each arm sends. Quick mode (the CI smoke run) asks the first 3 questions.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench.common import bench_home, cli, row, threads

BENCH = "grounding"
PERSONA = Path(__file__).resolve().parent / "personas" / "lumen-handbook"
WHOLE_CTX, RETRIEVAL_CTX = 2048, 1024
MAX_TOKENS = 48


def questions() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (PERSONA / "heldout.jsonl").read_text().splitlines() if line.strip()]


def ask_all(
    persona: Any,
    n_ctx: int,
    tasks: list[dict[str, Any]],
    model: Path | None = None,
    documents: list[Path] | None = None,
) -> list[dict[str, Any]]:
    """Each question in a new conversation with ``persona`` (or none) on a fresh engine of ``n_ctx`` tokens of
    ``model`` (default: the embedded SmolLM2), grounded in ``documents`` if given."""
    from assistant.chat.session import Session
    from assistant.config import load
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.storage.store import Store
    from distill_tools.evaluate import correct

    config = load()
    config.generation.temperature = 0.0
    config.generation.system = ""  # a distilled student answers with no system prompt
    engine = Engine(model or embedded_model_path(), n_ctx=n_ctx, threads=threads())
    store = Store(Path(config_home()) / f"bench-{n_ctx}.db")
    session = Session(store, engine, config, persona=persona, documents=documents or [])
    results = []
    try:
        for task in tasks:
            session.new()
            answer = "".join(d.text for d in session.send(task["question"], max_tokens=MAX_TOKENS))
            turn = session.last
            results.append(
                {
                    "question": task["question"],
                    "answer": answer,
                    "right": correct(answer, task["answers"]),
                    "mode": turn.grounding.mode,
                    "sources": [s.label() for s in turn.grounding.sources],
                    "prompt_tokens": turn.stats.prompt_tokens,
                    "ttft_s": turn.stats.ttft_s,
                }
            )
    finally:
        engine.close()
        store.close()
    return results


def config_home() -> str:
    return os.environ["ASSISTANT_HOME"]  # bench_home's throwaway folder


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.chat.persona import ContextFile, Persona
    from distill_tools.general_eval import paired_ratio_interval, wilson

    tasks = questions()[:3] if quick else questions()
    system = (PERSONA / "system.md").read_text().strip()
    handbook = PERSONA / "handbook.md"
    whole = Persona(name="wick", system=system, contexts=[ContextFile("handbook.md", handbook.read_text())])
    grounded = Persona(name="wick", system=system, docs=[str(handbook)])
    with bench_home():
        base = ask_all(whole, WHOLE_CTX, tasks)
        retrieved = ask_all(grounded, RETRIEVAL_CTX, tasks)
    n = len(tasks)
    right_base, right_retrieved = [r["right"] for r in base], [r["right"] for r in retrieved]
    k_base, k_retrieved = sum(right_base), sum(right_retrieved)
    lo_b, hi_b = wilson(k_base, n)
    lo_r, hi_r = wilson(k_retrieved, n)
    ratio, lo, hi = paired_ratio_interval(right_retrieved, right_base)
    modes = sorted({r["mode"] for r in retrieved})
    tokens_base = statistics.mean(r["prompt_tokens"] for r in base)
    tokens_retrieved = statistics.mean(r["prompt_tokens"] for r in retrieved)
    passages = statistics.mean(len(r["sources"]) for r in retrieved)
    rows = [
        row(
            BENCH,
            f"handbook questions right: prompted + retrieval ({RETRIEVAL_CTX}-token window) vs the whole handbook "
            f"in the prompt ({WHOLE_CTX})",
            round(k_retrieved / n, 3),
            "share",
            baseline=round(k_base / n, 3),
            ratio=round(ratio, 3),
            target=">= 1.0x",
            met=k_retrieved >= k_base,
            notes=f"{k_retrieved}/{n} [{lo_r:.2f}-{hi_r:.2f}] vs {k_base}/{n} [{lo_b:.2f}-{hi_b:.2f}] (Wilson 95 %); "
            f"ratio 95 % paired bootstrap [{lo:.2f}-{hi:.2f}]; retrieval mode(s) {', '.join(modes)}, "
            f"{passages:.1f} passages a question; SmolLM2-135M greedy, {MAX_TOKENS} tokens",
            n=n,
            answers={"whole": base, "retrieval": retrieved},
        ),
        row(
            BENCH,
            "prompt tokens a question: retrieval vs whole handbook",
            round(tokens_retrieved, 1),
            "tokens",
            baseline=round(tokens_base, 1),
            ratio=round(tokens_retrieved / tokens_base, 3),
            notes="mean over the questions (the engine's own count)",
        ),
    ]
    if student := os.environ.get("BENCH_GROUNDING_STUDENT"):  # a student `distill persona` made of these documents
        with bench_home():
            closed = ask_all(None, RETRIEVAL_CTX, tasks, Path(student))
            open_book = ask_all(None, RETRIEVAL_CTX, tasks, Path(student), [handbook])
        rows += [
            student_row(name, arm, right_retrieved)
            for name, arm in (("closed-book", closed), ("+ retrieval", open_book))
        ]
    return rows


def student_row(name: str, arm: list[dict[str, Any]], baseline: list[bool]) -> dict[str, Any]:
    """The distilled student (``name``: closed-book or + retrieval) vs prompted + retrieval, paired."""
    from distill_tools.general_eval import paired_ratio_interval, wilson

    right = [r["right"] for r in arm]
    n, k, k_base = len(right), sum(right), sum(baseline)
    lo_w, hi_w = wilson(k, n)
    ratio, lo, hi = paired_ratio_interval(right, baseline)
    return row(
        BENCH,
        f"handbook questions right: distilled student {name} vs prompted + retrieval",
        round(k / n, 3),
        "share",
        baseline=round(k_base / n, 3),
        ratio=round(ratio, 3),
        target=">= 1.0x" if name == "+ retrieval" else None,
        notes=f"{k}/{n} [{lo_w:.2f}-{hi_w:.2f}] vs {k_base}/{n}; ratio 95 % paired bootstrap [{lo:.2f}-{hi:.2f}]",
        n=n,
        answers=arm,
    )


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_grounding"))
