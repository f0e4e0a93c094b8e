"""Peak memory (RSS) of whole processes, read from the kernel's rusage when each one exits.

- ``assistant ask`` answering one question with the default model (n_ctx from the config,
  4096 by default) vs a raw llama-cpp-python script doing the same turn;
- the chat UI (headless pilot) loading the model and answering one typed question;
- a tiny distillation run (full mode only), if ``distill_tools`` ships a tiny/smoke recipe
  (``python -m distill_tools run RECIPE``); skipped with a note otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import PYTHON, ROOT, bench_home, cli, ratio, row, spread, summary, threads

BENCH = "memory"
QUESTION = "What are three good habits for writing maintainable code?"

RAW_SCRIPT = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[4]),
                      n_threads_batch=int(sys.argv[4]), verbose=False)
for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": sys.argv[3]}], max_tokens=64,
                                        temperature=0.0, stream=True):
    sys.stdout.write(chunk["choices"][0]["delta"].get("content") or "")
"""

UI_SCRIPT = """
import asyncio, sys
from assistant.config import database_path, load
from assistant.storage.store import Store
from assistant.tui.app import ChatApp

async def main():
    app = ChatApp(load(), Store(database_path()))
    async with app.run_test(headless=True, size=(100, 30)) as pilot:
        for _ in range(12000):
            if app.engine is not None:
                break
            await asyncio.sleep(0.01)
        else:
            raise SystemExit("the model did not load within 120 s")
        app.config.generation.max_tokens = 64
        app.prompt.focus()
        app.prompt.insert(sys.argv[1])
        await pilot.press("enter")
        for _ in range(12000):
            if app.turns_done:
                break
            await asyncio.sleep(0.01)
        else:
            raise SystemExit("no answer within 120 s")
        app.engine.close()

asyncio.run(main())
"""


def peak_rss_mib(command: list[str], env: dict[str, str], timeout: float = 300.0) -> float:
    """Run a process to completion; its peak resident set size in MiB (ru_maxrss, Linux KiB)."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:  # wait4 has no timeout: poll the child's exit (an event that stays) until the deadline
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(f"{Path(command[0]).name} … did not finish within {timeout:.0f} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} … exited with {proc.returncode}: {errors[-300:]}")
    return usage.ru_maxrss / 1024


def tiny_recipe() -> Path | None:
    """A tiny/smoke distillation recipe shipped with distill_tools, if there is one."""
    spec = importlib.util.find_spec("distill_tools")
    if spec is None or not spec.submodule_search_locations:
        return None
    recipes = Path(next(iter(spec.submodule_search_locations))) / "recipes"
    found = sorted(p for p in recipes.glob("*.toml") if any(k in p.stem for k in ("tiny", "smoke", "quick")))
    return found[0] if found else None


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.config import load
    from assistant.models.registry import embedded_model_path

    reps = 1 if quick else 3  # peak RSS barely varies
    rows: list[dict[str, Any]] = []
    with bench_home():
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        n_ctx = load().model.n_ctx
        model = str(embedded_model_path())
        assistant = str(Path(PYTHON).parent / "assistant")
        commands = {
            "ask": [assistant, "ask", "--max-tokens", "64", "--temperature", "0", QUESTION],
            "raw": [PYTHON, "-c", RAW_SCRIPT, model, str(n_ctx), QUESTION, str(threads())],
        }
        if importlib.util.find_spec("assistant.tui.app") is not None:
            commands["ui"] = [PYTHON, "-c", UI_SCRIPT, QUESTION]
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        failures: dict[str, str] = {}
        for i in tqdm(range(reps), desc="memory", unit="round", file=sys.stderr):
            for name, command in list(commands.items()) if i % 2 == 0 else reversed(commands.items()):
                try:
                    peaks[name].append(peak_rss_mib(command, env))
                except RuntimeError as exc:
                    failures[name] = str(exc)
        ask, raw = summary(peaks["ask"]), summary(peaks["raw"])
        rows.append(
            row(
                BENCH,
                "peak RSS: `assistant ask` one turn, default model",
                ask["median"],
                "MiB",
                baseline=raw["median"],
                ratio=ratio(ask["median"], raw["median"]),
                notes=f"SmolLM2-135M Q4_1, n_ctx {n_ctx}, 64 tokens; {spread(peaks['ask'], ' MiB')}; raw "
                f"llama-cpp-python script {spread(peaks['raw'], ' MiB')}",
                **ask,
            )
        )
        if "ui" not in commands:
            rows.append(
                row(
                    BENCH,
                    "peak RSS: chat UI, one turn",
                    None,
                    "MiB",
                    notes="skipped: assistant.tui.app is not built yet",
                )
            )
        elif "ui" in failures and not peaks["ui"]:
            rows.append(row(BENCH, "peak RSS: chat UI, one turn", None, "MiB", notes=failures["ui"][:300], met=False))
        else:
            ui = summary(peaks["ui"])
            rows.append(
                row(
                    BENCH,
                    "peak RSS: chat UI, one turn",
                    ui["median"],
                    "MiB",
                    baseline=raw["median"],
                    ratio=ratio(ui["median"], raw["median"]),
                    notes=f"Textual headless pilot, typed question, 64 tokens; {spread(peaks['ui'], ' MiB')}",
                    **ui,
                )
            )
        rows.append(
            distill_row(env)
            if not quick
            else row(BENCH, "peak RSS: tiny distillation run", None, "MiB", notes="full mode only (it trains a model)")
        )
    return rows


def distill_row(env: dict[str, str]) -> dict[str, Any]:
    recipe = tiny_recipe()
    if recipe is None:
        return row(
            BENCH,
            "peak RSS: tiny distillation run",
            None,
            "MiB",
            notes="skipped: distill_tools ships no tiny/smoke recipe (distill_tools/recipes/*tiny*.toml)",
        )
    try:
        peak = peak_rss_mib([PYTHON, "-m", "distill_tools", "run", str(recipe)], env)
    except RuntimeError as exc:
        return row(BENCH, "peak RSS: tiny distillation run", None, "MiB", notes=str(exc)[:300], met=False)
    return row(
        BENCH, "peak RSS: tiny distillation run", peak, "MiB", notes=f"python -m distill_tools run {recipe.name}"
    )


if __name__ == "__main__":
    sys.exit(cli(run, "bench_memory"))
