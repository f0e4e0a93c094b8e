"""Structured output: decode speed with a JSON-Schema grammar (``ask --schema``) vs free decoding, same model.

Both go through ``Engine.stream`` with the same GGUF, prompt, greedy sampling and token limit,
interleaved; the constrained runs use ``assistant.models.schema.grammar_for`` (llama.cpp's grammar
sampler). Decode tokens/s = (tokens - 1) / (last token time - first token time), prompt left out.

The grammar's own cost is measured with prompt-lookup drafting off on both sides: constrained answers do not
draft (see ``engine.draft_state``), and the free answer to this prompt copies the schema text the prompt shows,
which drafting speeds up 1.5x. The second row is the product as it runs (free answers draft).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.common import cli, interleave, ratio, row, spread, summary
from bench.common import threads as bench_threads

BENCH = "schema"
PROMPT = "List the steps to bake sourdough bread at home, one short step per item."
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "steps": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "steps"],
}


def decode_rate(engine: Any, max_tokens: int, grammar: Any) -> tuple[float, int]:
    """(decode tokens/s, tokens) of one answer."""
    from assistant.models.schema import instruction

    prompt = f"{PROMPT}\n\n{instruction(SCHEMA)}"
    stamps = [
        time.perf_counter()
        for _ in engine.stream(
            [{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0, grammar=grammar
        )
    ]
    if len(stamps) < 2:
        return 0.0, len(stamps)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps)


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.models.schema import grammar_for

    reps, max_tokens = (2, 64) if quick else (5, 256)
    threads = bench_threads()
    plain = Engine(embedded_model_path(), n_ctx=2048, threads=threads, speculate=False)
    drafting = Engine(embedded_model_path(), n_ctx=2048, threads=threads)
    grammar = grammar_for(SCHEMA)
    try:
        for engine in (plain, drafting):  # warm-up
            decode_rate(engine, 8, None), decode_rate(engine, 8, grammar)
        results = interleave(
            {
                "free": lambda: decode_rate(plain, max_tokens, None),
                "schema": lambda: decode_rate(plain, max_tokens, grammar),
                "free, drafting": lambda: decode_rate(drafting, max_tokens, None),
            },
            reps,
        )
    finally:
        plain.close()
        drafting.close()
    rates = {name: [r[0] for r in runs] for name, runs in results.items()}
    tokens = {name: [r[1] for r in runs] for name, runs in results.items()}
    constrained, free, product = summary(rates["schema"]), summary(rates["free"]), summary(rates["free, drafting"])
    common = f"SmolLM2-135M Q4_1, {threads} threads, greedy, up to {max_tokens} tokens"
    return [
        row(
            BENCH,
            "decode tokens/s: JSON-Schema grammar vs free (drafting off in both)",
            constrained["median"],
            "tok/s",
            baseline=free["median"],
            ratio=ratio(constrained["median"], free["median"]),
            target=">= 0.9x",
            notes=f"{common} (schema {min(tokens['schema'])}-{max(tokens['schema'])}, free "
            f"{min(tokens['free'])}-{max(tokens['free'])}); schema {spread(rates['schema'], '')}; free "
            f"{spread(rates['free'], '')}",
            **constrained,
        ),
        row(
            BENCH,
            "decode tokens/s: JSON-Schema grammar vs free as the product runs (free answers draft)",
            constrained["median"],
            "tok/s",
            baseline=product["median"],
            ratio=ratio(constrained["median"], product["median"]),
            notes=f"{common}; the free answer copies the prompt's schema text (drafting); free "
            f"{spread(rates['free, drafting'], '')}",
        ),
    ]


if __name__ == "__main__":
    sys.exit(cli(run, "bench_schema"))
