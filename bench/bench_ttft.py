"""Time to first token across a 10-turn conversation (KV prefix reuse).

Three conversations advance turn by turn, interleaved, on the same GGUF and thread count:

- Session: ``assistant``'s session (store + engine, which keeps the exact token sequence);
- naive: raw llama-cpp-python that re-evaluates the whole history every turn
  (``Llama.reset()`` before each ``create_chat_completion``), as a naive app does;
- raw reuse: raw llama-cpp-python with its own longest-common-prefix reuse (the ceiling).

TTFT is timed from outside (call to first streamed text), greedy, same questions.
Targets: Session's turn-10 TTFT <= 1.2x its turn-1 TTFT.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from bench.common import bench_home, cli, ratio, row, spread, summary
from bench.common import threads as bench_threads

BENCH = "ttft"
QUESTIONS = [
    "I'm planning a vegetable garden in a small backyard. What should I plant first?",
    "How much sunlight do tomatoes need each day?",
    "What about watering: how often, and is morning or evening better?",
    "Which pests should I watch for, and how can I deal with them without chemicals?",
    "Can I grow herbs like basil next to the tomatoes?",
    "How do I make compost from kitchen scraps?",
    "How long until the compost is ready to use?",
    "What vegetables grow well in partial shade?",
    "How do I protect the plants from an early frost?",
    "Summarise the plan for my garden in a few bullet points.",
]


def first_text_after(stream: Iterable[Any], has_text: Any) -> tuple[float, str]:
    """(seconds to the first piece of text, the whole text) of a stream, timed from the call."""
    start = time.perf_counter()
    first = 0.0
    pieces: list[str] = []
    for item in stream:
        text = has_text(item)
        if text and not first:
            first = time.perf_counter() - start
        pieces.append(text or "")
    return first, "".join(pieces)


def run(quick: bool) -> list[dict[str, Any]]:
    import llama_cpp

    from assistant.chat.session import Session
    from assistant.config import database_path, load
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.storage.store import Store

    reps, max_tokens = (1, 32) if quick else (3, 96)
    path = embedded_model_path()
    threads = bench_threads()
    turns = len(QUESTIONS)
    ttft: dict[str, list[list[float]]] = {"session": [], "naive": [], "raw reuse": []}
    prompt_tokens: dict[str, int] = {}
    with bench_home():
        config = load()
        store = Store(database_path())
        engine = Engine(path, n_ctx=config.model.n_ctx, threads=threads)
        llms = {
            name: llama_cpp.Llama(
                model_path=str(path),
                n_ctx=config.model.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                use_mmap=True,
                verbose=False,
            )
            for name in ("naive", "raw reuse")
        }
        content = lambda c: c["choices"][0]["delta"].get("content")  # noqa: E731
        progress = tqdm(total=reps * turns, desc="ttft: turns", unit="turn", file=sys.stderr)
        for rep in range(reps):
            session = Session(store, engine, config)
            histories: dict[str, list[dict[str, str]]] = {"naive": [], "raw reuse": []}
            for name in ttft:
                ttft[name].append([])
            for turn, question in enumerate(QUESTIONS):
                if turn == 0:  # a new chat opens with a new question (an identical one would be all cache hits)
                    question = f"Chat {rep + 1}. {question}"
                order = list(ttft) if (rep + turn) % 2 == 0 else list(reversed(ttft))
                for name in order:
                    if name == "session":
                        seconds, _ = first_text_after(
                            session.send(question, max_tokens=max_tokens, temperature=0.0), lambda d: d.text
                        )
                        prompt_tokens[name] = engine.stats.prompt_tokens
                    else:
                        llm, history = llms[name], histories[name]
                        history.append({"role": "user", "content": question})
                        if name == "naive":
                            llm.reset()
                        seconds, answer = first_text_after(
                            llm.create_chat_completion(
                                messages=history, max_tokens=max_tokens, temperature=0.0, stream=True
                            ),
                            content,
                        )
                        history.append({"role": "assistant", "content": answer})
                        prompt_tokens[name] = llm.n_tokens
                    ttft[name][-1].append(seconds)
                progress.update()
        progress.close()
        engine.close()
        for llm in llms.values():
            llm.close()
        store.close()
    per_turn = {name: [statistics.median(r[t] for r in runs) for t in range(turns)] for name, runs in ttft.items()}
    growth = {name: [r[-1] / r[0] for r in runs if r[0]] for name, runs in ttft.items()}
    first, last = per_turn["session"][0], per_turn["session"][-1]
    plot = {
        "title": "Time to first token per turn (median of runs)",
        "xlabel": "turn",
        "ylabel": "seconds",
        "x": list(range(1, turns + 1)),
        "series": {
            "Session (assistant)": per_turn["session"],
            "naive (reset each turn)": per_turn["naive"],
            "raw llama-cpp-python prefix reuse": per_turn["raw reuse"],
        },
    }
    setup = f"SmolLM2-135M, {threads} threads, greedy, {max_tokens}-token answers, {reps} conversation(s)"
    naive_last = per_turn["naive"][-1]
    reuse_last = per_turn["raw reuse"][-1]
    return [
        row(
            BENCH,
            "turn-10 TTFT vs turn-1 TTFT (Session)",
            last,
            "s",
            baseline=first,
            ratio=ratio(last, first),
            target="<= 1.2x",
            notes=f"{setup}; per-conversation turn10/turn1 {spread(growth['session'], 'x')}; "
            f"turn-10 prompt {prompt_tokens.get('session')} tokens",
            **summary([r[-1] for r in ttft["session"]]),
            plot=plot,
        ),
        row(
            BENCH,
            "turn-10 TTFT: Session vs naive re-evaluation",
            last,
            "s",
            baseline=naive_last,
            ratio=ratio(last, naive_last),
            notes=f"naive turn10/turn1 {spread(growth['naive'], 'x')}; naive turn-10 prompt "
            f"{prompt_tokens.get('naive')} tokens re-evaluated",
        ),
        row(
            BENCH,
            "turn-10 TTFT: Session vs raw prefix reuse",
            last,
            "s",
            baseline=reuse_last,
            ratio=ratio(last, reuse_last),
            notes=f"the ceiling: llama-cpp-python's own prefix match; raw turn10/turn1 "
            f"{spread(growth['raw reuse'], 'x')}",
        ),
        row(
            BENCH,
            "mean TTFT over 10 turns: Session vs naive",
            statistics.mean(per_turn["session"]),
            "s",
            baseline=statistics.mean(per_turn["naive"]),
            ratio=ratio(statistics.mean(per_turn["session"]), statistics.mean(per_turn["naive"])),
            notes="turn by turn (s): session "
            + " ".join(f"{x:.3f}" for x in per_turn["session"])
            + "; naive "
            + " ".join(f"{x:.3f}" for x in per_turn["naive"]),
        ),
    ]


if __name__ == "__main__":
    sys.exit(cli(run, "bench_ttft"))
