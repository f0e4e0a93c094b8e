"""The escalation router on the shipped labelled question set (assistant/data/router_questions.jsonl).

For every question, with the real student (SmolLM2-135M): its time to first token on a plain
answer (the baseline), its draft of ``draft_tokens`` tokens, and the router's decision. Reports:

- recall (long-tail factual questions escalated), the share of reasoning/code/chat sent,
  precision and the overall escalation rate, for the dev split (the one the rules were
  written against) and the held-out split (written after the rules were frozen); side by
  side with a confidence-only router (the usual approach: escalate when the draft's
  confidence is below the same threshold, whatever the question);
- the router's own computation in ms per question against the student's TTFT (the draft is
  not overhead: its tokens are the answer's first tokens when it stays on-device);
- honestly, the delay a draft adds before the first *visible* token of a factual-looking
  question answered on-device (the draft is held back until the decision).
"""

from __future__ import annotations

import json
import statistics
import time
from importlib import resources
from typing import Any

from tqdm import tqdm

from bench.common import cli, ratio, row, spread, summary, threads

BENCH = "router"
REPEATS = 20  # timing repetitions of the router's own computation per question


def _questions(quick: bool) -> list[dict[str, Any]]:
    text = resources.files("assistant").joinpath("data/router_questions.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    return rows[::4] if quick else rows


def _measure(engine, router, question: str, draft_tokens: int) -> dict[str, Any]:  # noqa: ANN001
    messages = [{"role": "user", "content": question}]
    started = time.perf_counter()
    ttft = 0.0
    deltas = []
    for delta in engine.stream(messages, max_tokens=draft_tokens, temperature=0.0):
        if not deltas:
            ttft = time.perf_counter() - started
        deltas.append(delta)
    draft_s = time.perf_counter() - started
    timings = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        drafted = router.needs_draft(question)
        route = router.decide(question, "auto", deltas if drafted else None)
        timings.append(time.perf_counter() - t0)
    return {
        "ttft_s": ttft,
        "draft_delay_s": draft_s - ttft,
        "router_s": statistics.median(timings),
        "drafted": drafted,
        "routed": route.escalate,
        "confidence": router.decide(question, "auto", deltas).confidence,
    }


def _scores(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Recall, share of others sent, precision and rate of the decisions in ``key`` against the labels."""
    factual = [r for r in rows if r["escalate"]]
    others = [r for r in rows if not r["escalate"]]
    sent = [r for r in rows if r[key]]
    true_positive = sum(r[key] for r in factual)
    return {
        "recall": true_positive / len(factual),
        "others_sent": sum(r[key] for r in others) / len(others),
        "precision": true_positive / len(sent) if sent else float("nan"),
        "rate": len(sent) / len(rows),
        "n_factual": len(factual),
        "n_others": len(others),
    }


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.chat.escalation.router import Router
    from assistant.config import EscalationSettings
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path

    settings = EscalationSettings()
    router = Router(settings)
    engine = Engine(embedded_model_path(), n_ctx=2048, threads=threads())
    questions = _questions(quick)
    try:
        engine.complete([{"role": "user", "content": "warm up"}], max_tokens=4, temperature=0.0)
        results = []
        for q in tqdm(questions, desc="router", unit="question"):
            measured = _measure(engine, router, q["question"], settings.draft_tokens)
            measured["baseline_routed"] = measured["confidence"] < settings.min_confidence
            results.append({**q, **measured})
    finally:
        engine.close()

    out: list[dict[str, Any]] = []
    config = (
        f"min_factual {settings.min_factual}, min_confidence {settings.min_confidence}, "
        f"draft {settings.draft_tokens} tokens, SmolLM2-135M on {threads()} thread(s)"
    )
    for split in ("dev", "heldout", "all"):
        rows = [r for r in results if split == "all" or r["split"] == split]
        ours, base = _scores(rows, "routed"), _scores(rows, "baseline_routed")
        sizes = f"{split}: {ours['n_factual']} factual / {ours['n_others']} others; {config}"
        out += [
            row(BENCH, f"{split}: long-tail factual escalated (recall)", ours["recall"], "", baseline=base["recall"],
                ratio=ratio(ours["recall"], base["recall"]), target=">= 0.8",
                notes=f"baseline = confidence-only router; {sizes}"),
            row(BENCH, f"{split}: reasoning/code/chat sent", ours["others_sent"], "", baseline=base["others_sent"],
                ratio=ratio(ours["others_sent"], base["others_sent"]), target="<= 0.2",
                notes="share of non-factual questions escalated; baseline = confidence-only router"),
            row(BENCH, f"{split}: precision of escalations", ours["precision"], "", baseline=base["precision"],
                ratio=ratio(ours["precision"], base["precision"]),
                notes="escalated questions that were long-tail factual"),
            row(BENCH, f"{split}: escalation rate", ours["rate"], "", baseline=base["rate"],
                ratio=ratio(ours["rate"], base["rate"])),
        ]  # fmt: skip

    router_ms = [r["router_s"] * 1000 for r in results]
    ttft_ms = [r["ttft_s"] * 1000 for r in results]
    med_router, med_ttft = statistics.median(router_ms), statistics.median(ttft_ms)
    out.append(
        row(BENCH, "router computation per question", med_router, "ms", baseline=med_ttft,
            ratio=ratio(med_router, med_ttft), target="< 0.05x",
            notes=f"classifier + confidence + decision (median of {REPEATS} runs each) vs the student's TTFT "
                  f"(baseline); router {spread(router_ms, ' ms')}; TTFT {spread(ttft_ms, ' ms')}",
            **summary(router_ms))
    )  # fmt: skip
    held = [r for r in results if r["drafted"] and not r["routed"]]
    drafted_share = sum(r["drafted"] for r in results) / len(results)
    if held:
        delay_ms = [r["draft_delay_s"] * 1000 for r in held]
        ttft_held = statistics.median(r["ttft_s"] * 1000 for r in held)
        out.append(
            row(BENCH, "first visible token delay (drafted, answered on-device)", statistics.median(delay_ms), "ms",
                baseline=ttft_held, ratio=ratio(statistics.median(delay_ms), ttft_held),
                notes=f"{len(held)} of {len(results)} questions; the {settings.draft_tokens}-token draft is held back "
                      f"until the decision, then streamed (not regenerated); {drafted_share:.0%} of questions are "
                      f"drafted at all, the rest stream at once; {spread(delay_ms, ' ms')}",
                **summary(delay_ms))
        )  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_router"))
