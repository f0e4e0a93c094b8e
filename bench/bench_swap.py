"""Hot-swap between the packaged students, SmolLM2-135M <-> Gemma 3 270M.

- latency: from the swap request to the first token of the next answer from the new model,
  in a conversation with two earlier turns (re-rendered with the new model's template);
  side by side with the alternative, a restart: close the engine, open one on the new model,
  first token of the same turn;
- lost turns: a chat thread answers turn after turn while the main thread swaps back and
  forth; every turn must be answered and stored complete (target 0 lost);
- memory: RSS with the 135M model, the peak while both are loaded, after the swap to 270M,
  and after swapping back (the old model's memory must be released: ratio to before ~1).

Settings are the defaults (n_ctx 4096, threads = physical cores); ``ASSISTANT_THREADS=1``
measures with one thread, which a busy 2-core machine needs (llama.cpp's threads spin at
barriers, so two threads on two shared cores can be ~10x slower).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import bench_home, cli, ratio, row, spread, summary

BENCH = "swap"
HISTORY = [
    ("user", "I am planning a picnic on Saturday. What should I bring?"),
    ("assistant", "Bring sandwiches, fruit, water, a blanket and sunscreen."),
    ("user", "Good idea. And if it rains?"),
    ("assistant", "Pack an umbrella, or move the picnic under a shelter."),
]
QUESTION = "Thanks. What games could we play there?"
MAX_TOKENS = 4


def _session(store: Any, engine: Any, config: Any) -> Any:
    """A conversation with two earlier turns, as if answered before."""
    from assistant.chat.session import Session

    conversation = store.new_conversation(title="swap bench", model=engine.name)
    for role, content in HISTORY:
        store.add_message(conversation, role, content, model=engine.name if role == "assistant" else "")
    return Session(store, engine, config, conversation)


def _first_token(session: Any) -> float:
    """Start a turn, wait for its first token, finish it; returns the time of the first token."""
    stream = session.send(QUESTION, max_tokens=MAX_TOKENS)
    next(stream)
    at = time.perf_counter()
    for _ in stream:
        pass
    return at


def _swap_latency(engine: Any, store: Any, config: Any, target: Path, warm: bool) -> tuple[float, float]:
    """(swap request -> first token, swap done -> first token); ``warm`` hands the history to swap."""
    session = _session(store, engine, config)
    start = time.perf_counter()
    if warm:
        engine.swap(target, history=session.history(), conversation=session.conversation_id)
    else:
        engine.swap(target)
    swapped = time.perf_counter()
    first = _first_token(session)
    return first - start, first - swapped


def _restart_latency(holder: dict[str, Any], store: Any, config: Any, target: Path) -> float:
    from assistant.models.engine import Engine

    start = time.perf_counter()
    holder["engine"].close()
    holder["engine"] = Engine(target, n_ctx=config.model.n_ctx, threads=config.model.threads)
    return _first_token(_session(store, holder["engine"], config)) - start


def _lost_turns(engine: Any, store: Any, config: Any, paths: list[Path], swaps: int) -> dict[str, Any]:
    """Chat continuously in a thread while swapping ``swaps`` times; count turns not answered in full."""
    session = _session(store, engine, config)
    swapping_done = threading.Event()
    outcome = {"attempted": 0, "failed": 0, "empty": 0}

    def chat() -> None:
        while not swapping_done.is_set() or outcome["attempted"] < 2 * swaps:
            outcome["attempted"] += 1
            try:
                answer = "".join(d.text for d in session.send("Name one colour.", max_tokens=MAX_TOKENS))
            except Exception:  # noqa: BLE001 - any failure is a lost turn
                outcome["failed"] += 1
                continue
            if session.last.stats.finish_reason not in ("stop", "length"):
                outcome["failed"] += 1
            outcome["empty"] += not answer.strip()

    thread = threading.Thread(target=chat, daemon=True)
    thread.start()
    for i in range(swaps):
        time.sleep(0.05)  # let a turn start, so the swap has to wait for it
        engine.swap(paths[(i + 1) % 2], history=session.history(), conversation=session.conversation_id)
    swapping_done.set()
    thread.join(timeout=600)
    if thread.is_alive():
        raise TimeoutError("the chat thread did not finish its turns within 600 s of the last swap")
    messages = store.messages(session.conversation_id)[len(HISTORY) :]
    answers = [m for m in messages if m["role"] == "assistant"]
    complete = [m for m in answers if m["complete"] == 1 and m["finish_reason"] in ("stop", "length")]
    outcome["lost"] = outcome["attempted"] - len(complete)
    outcome["models"] = sorted({m["model"] for m in answers})
    return outcome


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _swap_with_peak(engine: Any, target: Path) -> int:
    """Swap while sampling RSS every 5 ms; returns the peak."""
    peak, stop = [_rss()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(_rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    engine.swap(target)
    stop.set()
    sampler.join(timeout=10)
    return max(peak)


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.config import database_path, load
    from assistant.models.engine import Engine
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    reps = 1 if quick else 5
    rows: list[dict[str, Any]] = []
    with bench_home():
        config = load()  # defaults, plus ASSISTANT_THREADS / ASSISTANT_N_CTX from the environment
        config.generation.temperature = 0.0
        store = Store(database_path())
        registry = Registry(store)
        small, big = registry.resolve("smollm2-135m"), registry.resolve("gemma3-270m")
        names = {small: "135M", big: "270M"}
        engine = Engine(small, n_ctx=config.model.n_ctx, threads=config.model.threads)
        _first_token(_session(store, engine, config))  # warm up: page cache, thread pool
        rss_before = _rss()
        rss_peak = _swap_with_peak(engine, big)
        _first_token(_session(store, engine, config))
        rss_big = _rss()
        engine.swap(small)
        _first_token(_session(store, engine, config))
        rss_after = _rss()

        swap_times: dict[Path, list[float]] = {small: [], big: []}
        next_warm: dict[Path, list[float]] = {small: [], big: []}
        next_cold: dict[Path, list[float]] = {small: [], big: []}
        restart_times: dict[Path, list[float]] = {small: [], big: []}
        holder = {"engine": Engine(small, n_ctx=config.model.n_ctx, threads=config.model.threads)}
        for _ in range(reps):  # interleaved so all variants see the same machine noise
            for target, source in ((big, small), (small, big)):
                if engine.path != source:
                    engine.swap(source)
                total, after = _swap_latency(engine, store, config, target, warm=True)
                swap_times[target].append(total)
                next_warm[target].append(after)
                restart_times[target].append(_restart_latency(holder, store, config, target))
                engine.swap(source)  # back, to swap to ``target`` again without the history
                next_cold[target].append(_swap_latency(engine, store, config, target, warm=False)[1])
        holder["engine"].close()
        threads, load_avg = engine.model.threads, "/".join(f"{x:.1f}" for x in os.getloadavg())

        for target, source in ((big, small), (small, big)):
            label = f"{names[source]} -> {names[target]}"
            s, r = summary(swap_times[target]), summary(restart_times[target])
            rows.append(
                row(
                    BENCH,
                    f"swap {label}: request to first token",
                    s["median"],
                    "s",
                    baseline=r["median"],
                    ratio=ratio(s["median"], r["median"]),
                    target="< 1 s",
                    notes=f"n_ctx {config.model.n_ctx}, {threads} thread(s), load average {load_avg}; "
                    f"swap (load + read the 2-turn history + answer) {spread(swap_times[target], ' s')}; "
                    f"baseline = close + reopen + first token, {spread(restart_times[target], ' s')}; "
                    "the old model answers during a swap's load, a restart leaves no model for that time",
                    min=s["min"],
                    median=s["median"],
                    max=s["max"],
                    n=s["n"],
                )
            )
            w, c = summary(next_warm[target]), summary(next_cold[target])
            rows.append(
                row(
                    BENCH,
                    f"after swap {label}: next turn's first token",
                    w["median"],
                    "s",
                    baseline=c["median"],
                    ratio=ratio(w["median"], c["median"]),
                    notes=f"history read during the swap {spread(next_warm[target], ' s')}; baseline = swap "
                    f"without history, the turn evaluates it all {spread(next_cold[target], ' s')}",
                    min=w["min"],
                    median=w["median"],
                    max=w["max"],
                    n=w["n"],
                )
            )
        lost = _lost_turns(engine, store, config, [small, big], swaps=4 if quick else 10)
        rows.append(
            row(
                BENCH,
                "turns lost while swapping 135M <-> 270M",
                lost["lost"],
                "turns",
                target="== 0",
                notes=f"{lost['attempted']} turns answered by {', '.join(lost['models'])} during "
                f"{4 if quick else 10} swaps; {lost['empty']} empty answer(s)",
            )
        )
        engine.close()
    mib = 2**20
    rows += [
        row(BENCH, "RSS with 135M loaded", rss_before / mib, "MiB"),
        row(
            BENCH,
            "RSS peak during swap 135M -> 270M",
            rss_peak / mib,
            "MiB",
            baseline=rss_before / mib,
            ratio=ratio(rss_peak, rss_before),
            notes="both models resident while the new one loads",
        ),
        row(
            BENCH,
            "RSS after swap to 270M",
            rss_big / mib,
            "MiB",
            baseline=rss_before / mib,
            ratio=ratio(rss_big, rss_before),
        ),
        row(
            BENCH,
            "RSS after swapping back to 135M",
            rss_after / mib,
            "MiB",
            baseline=rss_before / mib,
            ratio=ratio(rss_after, rss_before),
            target="<= 1.15x",
            notes="the 270M model's memory was released",
        ),
    ]
    return rows


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_swap"))
