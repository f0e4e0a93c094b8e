"""Decode throughput: a full answer through ``Session`` vs raw llama-cpp-python, same GGUF.

Product: ``Session.send`` (what the UI and ``assistant ask`` use: real store, 250 ms flush,
per-token logprob/entropy). Ceiling: ``llama_cpp.Llama.create_chat_completion(stream=True)``
on the same file with the same context size and thread count. Same prompt, greedy, runs
interleaved; decode tokens/s = (tokens - 1) / (last token time - first token time), timed
identically from outside for both, so prompt evaluation is left out.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from bench.common import bench_home, cli, interleave, ratio, row, spread, summary
from bench.common import threads as bench_threads

BENCH = "decode"
PROMPT = "Write a detailed, step-by-step guide to baking sourdough bread at home, with tips for beginners."


def decode_rate(stream: Iterable[Any], has_text: Any) -> tuple[float, int, float]:
    """(decode tokens/s, tokens, seconds to first token) of a stream, timed from outside."""
    start = time.perf_counter()
    stamps = [time.perf_counter() for item in stream if has_text(item)]
    if len(stamps) < 2:
        return 0.0, len(stamps), (stamps[0] - start) if stamps else 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps), stamps[0] - start


def run(quick: bool) -> list[dict[str, Any]]:
    import llama_cpp

    from assistant.chat.session import Session
    from assistant.config import database_path, load
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.storage.store import Store

    reps, max_tokens = (2, 64) if quick else (7, 512)
    path = embedded_model_path()
    threads = bench_threads()
    with bench_home():
        config = load()
        store = Store(database_path())
        engine = Engine(path, n_ctx=config.model.n_ctx, threads=threads)
        raw = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=config.model.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            use_mmap=True,
            verbose=False,
        )
        messages = [{"role": "user", "content": PROMPT}]

        def product() -> tuple[float, int, float]:
            session = Session(store, engine, config)  # a new conversation each run
            return decode_rate(session.send(PROMPT, max_tokens=max_tokens, temperature=0.0), lambda d: True)

        def ceiling() -> tuple[float, int, float]:
            chunks = raw.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True)
            return decode_rate(chunks, lambda c: bool(c["choices"][0]["delta"].get("content")))

        product(), ceiling()  # warm-up
        progress = tqdm(total=2 * reps, desc="decode", unit="answer", file=sys.stderr)

        def tick(fn: Any) -> Any:
            def call() -> Any:
                result = fn()
                progress.update()
                return result

            return call

        results = interleave({"session": tick(product), "raw": tick(ceiling)}, reps)
        progress.close()
        engine.close()
        raw.close()
        store.close()
    rates = {name: [r[0] for r in runs] for name, runs in results.items()}
    tokens = {name: [r[1] for r in runs] for name, runs in results.items()}
    ours, theirs = summary(rates["session"]), summary(rates["raw"])
    per_round = [a / b for a, b in zip(rates["session"], rates["raw"]) if b]
    return [
        row(
            BENCH,
            "decode tokens/s: Session vs raw llama-cpp-python",
            ours["median"],
            "tok/s",
            baseline=theirs["median"],
            ratio=ratio(ours["median"], theirs["median"]),
            target=">= 0.97x",
            notes=f"SmolLM2-135M Q4_1, {threads} threads, greedy, up to {max_tokens} tokens "
            f"(session {min(tokens['session'])}-{max(tokens['session'])}, raw {min(tokens['raw'])}-"
            f"{max(tokens['raw'])}); session {spread(rates['session'], '')}; raw {spread(rates['raw'], '')}; "
            f"per-round ratio {spread(per_round, 'x')}",
            **ours,
            plot={
                "title": "Decode tokens/s per interleaved run",
                "xlabel": "run",
                "ylabel": "tokens/s",
                "series": {"Session (assistant)": rates["session"], "raw llama-cpp-python": rates["raw"]},
            },
        ),
        row(
            BENCH,
            "time to first token, 1st turn: Session vs raw",
            summary([r[2] for r in results["session"]])["median"],
            "s",
            baseline=summary([r[2] for r in results["raw"]])["median"],
            ratio=ratio(
                summary([r[2] for r in results["session"]])["median"], summary([r[2] for r in results["raw"]])["median"]
            ),
            notes=f"same runs; session {spread([r[2] for r in results['session']], ' s')}; "
            f"raw {spread([r[2] for r in results['raw']], ' s')}",
        ),
    ]


if __name__ == "__main__":
    sys.exit(cli(run, "bench_decode"))
