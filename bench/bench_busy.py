"""Decode beside one CPU-busy process: the engine's default threads vs llama-cpp-python's, same GGUF.

Each setting runs in its own process (OpenMP reads its waiting policy once, when llama.cpp loads) and measures
greedy decode tokens/s alternately quiet and with one ``python -c 'while True: pass'`` beside it. Settings:

- product: ``Engine`` with its default threads (decode on one thread, prompts on all cores, OpenMP threads sleeping
  at barriers);
- baseline: raw llama-cpp-python with its defaults (``n_threads`` = physical cores for decode and prompts,
  OpenMP threads spinning at barriers), the engine's former defaults.

Ratios: busy / quiet for each (fair share on 2 cores: 0.5), and product / baseline quiet (what the defaults
cost on a quiet machine). The machine is whatever it is: the load average at start and end is in the notes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import PYTHON, ROOT, cli, ratio, row, spread, summary
from bench.common import threads as bench_threads

BENCH = "busy"
PROMPT = "Write a detailed, step-by-step guide to baking sourdough bread at home, with tips for beginners."
SPIN = "while True: pass"
ANSWER_S = (
    20.0  # an answer stops after this long (llama.cpp's spinning threads may decode at 1 tok/s beside a busy process)
)


def _child(setting: str, reps: int, tokens: int) -> dict[str, list[float]]:
    """In a child process: decode ``tokens`` tokens ``reps`` times quiet and beside a busy process."""
    messages = [{"role": "user", "content": PROMPT}]
    if setting == "baseline":
        import llama_cpp  # first: OpenMP loads with its own defaults

        from assistant.models.registry import embedded_model_path

        threads = bench_threads()
        raw: Any = llama_cpp.Llama(
            model_path=str(embedded_model_path()), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
        )

        def answer() -> float:
            stamps: list[float] = []
            chunks = raw.create_chat_completion(messages, max_tokens=tokens, temperature=0.0, stream=True)
            for chunk in chunks:
                if chunk["choices"][0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
                if stamps and stamps[-1] - stamps[0] > ANSWER_S:
                    chunks.close()
                    break
            return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    else:
        from assistant.models.engine import Engine
        from assistant.models.registry import embedded_model_path

        engine = Engine(embedded_model_path(), n_ctx=2048, threads=bench_threads(), speculate=False)

        def answer() -> float:
            stamps: list[float] = []
            for _ in engine.stream(messages, max_tokens=tokens, temperature=0.0, conversation="busy"):
                stamps.append(time.perf_counter())
                if stamps[-1] - stamps[0] > ANSWER_S:
                    break
            return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0

    answer()  # warm-up
    rates: dict[str, list[float]] = {"quiet": [], "busy": []}
    for _ in range(reps):
        rates["quiet"].append(answer())
        spinner = subprocess.Popen([PYTHON, "-c", SPIN])
        try:
            time.sleep(0.2)
            rates["busy"].append(answer())
        finally:
            spinner.kill()
            spinner.wait(timeout=30)
    return rates


def _measure(setting: str, reps: int, tokens: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    command = [PYTHON, "-m", "bench.bench_busy", "--child", setting, str(reps), str(tokens)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=True)
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> list[dict[str, Any]]:
    reps, tokens = (1, 48) if quick else (2, 128)
    load_start = os.getloadavg()[0]
    rounds: dict[str, dict[str, list[float]]] = {
        "product": {"quiet": [], "busy": []},
        "baseline": {"quiet": [], "busy": []},
    }
    for _ in range(2):  # two alternating rounds of each, so a change in the machine's load hits both
        for setting in rounds:
            for kind, values in _measure(setting, reps, tokens).items():
                rounds[setting][kind] += values
    load = f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    rows = []
    for setting, label in (("product", "engine defaults"), ("baseline", "llama-cpp-python defaults")):
        quiet, busy = summary(rounds[setting]["quiet"]), summary(rounds[setting]["busy"])
        rows.append(
            row(
                BENCH,
                f"decode tokens/s beside one busy process vs quiet: {label}",
                busy["median"],
                "tok/s",
                baseline=quiet["median"],
                ratio=ratio(busy["median"], quiet["median"]),
                target=">= 0.4x" if setting == "product" else None,
                notes=f"SmolLM2-135M, greedy, {tokens} tokens; quiet {spread(rounds[setting]['quiet'], '')}; "
                f"busy {spread(rounds[setting]['busy'], '')}; {load}",
                **busy,
            )
        )
    ours, theirs = summary(rounds["product"]["quiet"]), summary(rounds["baseline"]["quiet"])
    rows.append(
        row(
            BENCH,
            "decode tokens/s quiet: engine defaults vs llama-cpp-python defaults",
            ours["median"],
            "tok/s",
            baseline=theirs["median"],
            ratio=ratio(ours["median"], theirs["median"]),
            target=">= 0.9x",
            notes=f"same runs; {load}",
            **ours,
        )
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        sys.exit(0)
    sys.exit(cli(run, "bench_busy"))
