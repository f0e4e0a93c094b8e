"""Prompt-lookup drafting: decode tokens/s of the engine vs raw llama-cpp-python, same GGUF, greedy.

Prompts: rewriting a ~1.5k-token source file attached to the message, answering from a ~1.2k-token document
in the prompt, and open chat. For each, interleaved runs of:

- the engine with its defaults (drafting on: ``assistant.models.draft``);
- the engine with drafting off (what drafting itself gains);
- raw llama-cpp-python, ``create_chat_completion(stream=True)`` (the ceiling so far);
- llama-cpp-python's own ``LlamaPromptLookupDecoding`` (``draft_model=``, 10 tokens, which forces logits for
  every position).

Decode tokens/s = (tokens - 1) / (last token time - first token time), timed from outside; the prompt is
cached after the warm-up, so prompt evaluation is left out. The greedy answers of the engine with and
without drafting are compared: they must be identical.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.common import ROOT, cli, interleave, ratio, row, spread, summary
from bench.common import threads as bench_threads

BENCH = "lookup"
N_CTX = 2560
SOURCES = ("assistant/models/kv_states.py", "assistant/models/stop_scan.py", "assistant/models/stats.py")


def prompts(quick: bool = False) -> dict[str, str]:
    """The three kinds of prompt; ``quick`` (the suite's smoke run): the file rewrite and open chat only."""
    source = "\n\n".join((ROOT / path).read_text() for path in SOURCES)
    document = (ROOT / "README.md").read_text()[:5000]
    chosen = {
        "rewrite a file": f"Fix any typos in this file and output the whole corrected file.\n\n```python\n{source}```",
        "answer from a document": f"{document}\n\nUsing only the document above, quote its sentences about how to "
        "install and run the assistant.",
        "open chat": "Write a detailed, step-by-step guide to baking sourdough bread at home, with tips for beginners.",
    }
    return {k: v for k, v in chosen.items() if not quick or k != "answer from a document"}


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def stamped(stream: Iterable[Any], has_text: Callable[[Any], bool]) -> list[float]:
    return [time.perf_counter() for item in stream if has_text(item)]


def answer_stamped(engine: Any, messages: list[dict[str, str]], **kwargs: Any) -> tuple[list[float], str]:
    """One answer from ``engine`` (``kwargs``: those of ``Engine.stream``): each token's arrival time, and the text."""
    stamps, text = [], []
    for delta in engine.stream(messages, **kwargs):
        stamps.append(time.perf_counter())
        text.append(delta.text)
    return stamps, "".join(text)


def run(quick: bool) -> list[dict[str, Any]]:
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path

    reps, max_tokens = (1, 48) if quick else (2, 160)
    path, threads = embedded_model_path(), bench_threads()
    fast, plain = (
        Engine(path, n_ctx=N_CTX, threads=threads),
        Engine(path, n_ctx=N_CTX, threads=threads, speculate=False),
    )
    raw_kwargs: dict[str, Any] = {
        "model_path": str(path),
        "n_ctx": N_CTX,
        "n_threads": threads,
        "n_threads_batch": threads,
    }
    raw = llama_cpp.Llama(**raw_kwargs, verbose=False)
    lookup = (
        None
        if quick
        else llama_cpp.Llama(  # logits_all given too: its own forcing misses the scores array
            **raw_kwargs, draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10), logits_all=True, verbose=False
        )
    )  # past 512 tokens; left out of the quick run (its prompt evaluation with every position's logits is slow)
    rows = []
    try:
        for name, prompt in prompts(quick).items():
            messages = [{"role": "user", "content": prompt}]
            answers: dict[str, list[str]] = {"drafting": [], "plain": []}
            acceptance: list[float] = []
            lengths: list[float] = []

            def engine_run(engine: Engine, key: str) -> float:
                stamps, text = answer_stamped(
                    engine, messages, max_tokens=max_tokens, temperature=0.0, conversation=name
                )
                answers[key].append(text)
                if engine.stats.drafts:
                    acceptance.append(engine.stats.acceptance or 0.0)
                    lengths.append(engine.stats.draft_length or 0.0)
                return rate(stamps)

            def llama_run(llm: Any) -> float:
                chunks = llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0, stream=True)
                return rate(stamped(chunks, lambda c: bool(c["choices"][0]["delta"].get("content"))))

            runs = {
                "drafting": lambda: engine_run(fast, "drafting"),
                "plain": lambda: engine_run(plain, "plain"),
                "raw": lambda: llama_run(raw),
            }
            if lookup is not None:
                runs["lookup"] = lambda: llama_run(lookup)
            for fn in runs.values():  # warm-up: the prompt gets cached
                fn()
            answers = {"drafting": [], "plain": []}
            acceptance.clear()
            lengths.clear()
            print(f"lookup: {name} …", file=sys.stderr, flush=True)
            rates = interleave(runs, reps)
            ours, theirs = summary(rates["drafting"]), summary(rates["raw"])
            plain_rate = summary(rates["plain"])["median"]
            theirs_lookup = (
                f"{(r := summary(rates['lookup'])['median']):.1f} tok/s ({r / theirs['median']:.2f}x raw)"
                if "lookup" in rates
                else "not run (quick)"
            )
            gain = ratio(ours["median"], theirs["median"]) or 0.0
            same = answers["drafting"] == answers["plain"]
            floor = 0.97 if name == "open chat" else 1.5
            accepted = f"{summary(acceptance)['median']:.0%}" if acceptance else "none drafted"
            length = f"{summary(lengths)['median']:.1f}" if lengths else "-"
            rows.append(
                row(
                    BENCH,
                    f"decode tokens/s, {name}: engine (drafting) vs raw llama-cpp-python",
                    ours["median"],
                    "tok/s",
                    baseline=theirs["median"],
                    ratio=gain,
                    target=f">= {floor}x",
                    met=same and gain >= floor,
                    notes=f"SmolLM2-135M, greedy, up to {max_tokens} tokens, engine decode on "
                    f"{fast.model.decode_threads} thread(s), llama-cpp-python on {threads}; acceptance {accepted}, "
                    f"mean draft {length} tokens; answers with and without drafting identical: {same}; "
                    f"engine without drafting {plain_rate:.1f} tok/s (drafting {ours['median'] / plain_rate:.2f}x); "
                    f"LlamaPromptLookupDecoding {theirs_lookup}; "
                    f"drafting {spread(rates['drafting'], '')}; raw {spread(rates['raw'], '')}",
                    **ours,
                )
            )
        rows.append(sampled_row(fast, plain, prompts(quick)["rewrite a file"], reps, max_tokens))
        if not quick:
            rows.append(short_chats_row(fast, plain, max_tokens))
    finally:
        fast.close()
        plain.close()
        raw.close()
        if lookup is not None:
            lookup.close()
    return rows


SHORT_CHATS = [  # everyday questions whose answers copy nothing from the prompt (a draft can only come from the answer)
    "Write a short poem about the sea.",
    "What is the capital of France? Answer in one sentence.",
    "List five fruits, one per line.",
    "Explain what a hash table is.",
    "Give me three tips for sleeping better.",
    "Who wrote Pride and Prejudice?",
    "Write a haiku about autumn.",
    "How do I reverse a list in Python?",
    "What causes rain?",
    "Tell me a fun fact about octopuses.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "What is 17 times 23?",
]


def short_chats_row(fast: Any, plain: Any, max_tokens: int) -> dict[str, Any]:
    """Open chat beyond one long answer: twelve everyday questions, the decode time of all their answers with
    drafting vs without (each engine's best of two), the answers compared. Failed drafts cost more than a token,
    so short answers that repeat little are where drafting could lose."""
    times = {fast: 0.0, plain: 0.0}
    same, drafted, accepted, tokens = True, 0, 0, 0
    for prompt in SHORT_CHATS:
        messages = [{"role": "user", "content": prompt}]
        texts = {}
        for engine in (fast, plain):
            best = float("inf")
            for _ in range(2):
                stamps, text = answer_stamped(
                    engine, messages, max_tokens=max_tokens, temperature=0.0, conversation="short"
                )
                best = min(best, stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0)
            times[engine] += best
            texts[engine] = text
            if engine is fast:
                drafted += engine.stats.drafted_tokens or 0
                accepted += engine.stats.accepted_tokens or 0
                tokens += len(stamps)
        same = same and texts[fast] == texts[plain]
    gain = times[plain] / times[fast] if times[fast] else 0.0
    return row(
        BENCH,
        f"decode time, {len(SHORT_CHATS)} short everyday questions: drafting vs without",
        times[fast],
        "s",
        baseline=times[plain],
        ratio=gain,
        target=">= 0.97x",
        met=same and gain >= 0.97,
        notes=f"SmolLM2-135M, greedy, up to {max_tokens} tokens each, {tokens} tokens in all; ratio = time without / "
        f"with; accepted {accepted} of {drafted} drafted tokens; answers identical: {same}",
    )


def sampled_row(fast: Any, plain: Any, prompt: str, reps: int, max_tokens: int) -> dict[str, Any]:
    """The chat's default temperature (0.7): drafting (turned on for sampled answers: off by default) vs the same
    engine without it, same seeds, answers compared (each drafted position is one draw of the seeded sampler, so
    they must be identical)."""
    fast.draft_sampled = True
    messages = [{"role": "user", "content": prompt}]
    answers: dict[str, list[str]] = {"drafting": [], "plain": []}
    acceptance: list[float] = []

    def sampled(engine: Any, key: str) -> float:
        seed = len(answers[key])  # the n-th run of each engine draws with the same seed
        stamps, text = answer_stamped(
            engine, messages, max_tokens=max_tokens, temperature=0.7, seed=seed, conversation="t"
        )
        answers[key].append(text)
        if engine is fast:
            acceptance.append(engine.stats.acceptance or 0.0)
        return rate(stamps)

    runs = {"drafting": lambda: sampled(fast, "drafting"), "plain": lambda: sampled(plain, "plain")}
    for fn in runs.values():  # warm-up: the prompt gets cached
        fn()
    for done in (*answers.values(), acceptance):
        done.clear()
    rates = interleave(runs, reps + 1)
    ours, theirs = summary(rates["drafting"]), summary(rates["plain"])
    same = answers["drafting"] == answers["plain"]
    gain = ratio(ours["median"], theirs["median"]) or 0.0
    return row(
        BENCH,
        "decode tokens/s, rewrite a file sampled at 0.7: engine drafting vs without",
        ours["median"],
        "tok/s",
        baseline=theirs["median"],
        ratio=gain,
        target="answers identical",
        met=same,
        notes=f"SmolLM2-135M, temperature 0.7, seeds 0-{reps}, up to {max_tokens} tokens; acceptance "
        f"{summary(acceptance)['median']:.0%}; same seeded answers with and without drafting: {same}",
        **ours,
    )


if __name__ == "__main__":
    sys.exit(cli(run, "bench_lookup"))
