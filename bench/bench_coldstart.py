"""Cold start: ``assistant ask "hi"`` as a whole process, the chat UI's start to ready, imports.

- ``assistant ask --max-tokens 16 "hi"`` in a fresh process (fresh ASSISTANT_HOME): wall time
  from spawn to the first answer byte on its stdout (read unbuffered from the pipe) and to
  exit; against a minimal raw llama-cpp-python script doing the same (load, stream, print).
- The chat UI (``assistant.tui.app.ChatApp``) under Textual's headless pilot in a fresh
  process: spawn to first screen mounted, and to the model loaded (ready to answer); against
  a bare Textual app with one input.
- ``python -X importtime``: the chat path's import time and, from the real ``ask`` process,
  whether anything heavy (torch, transformers, …) is imported.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import PYTHON, ROOT, bench_home, cli, ratio, row, spread, summary, threads

BENCH = "coldstart"
HEAVY = ("torch", "transformers", "accelerate", "scipy", "pandas", "sklearn", "matplotlib", "tensorflow", "jax")
NOTABLE = ("textual", "huggingface_hub", "httpx", "jinja2", "numpy", "llama_cpp", "sqlite_utils", "gguf", "tqdm")
CHAT_PATH = "import assistant.cli.main, assistant.chat.session, assistant.models.engine"

RAW_SCRIPT = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=4096, n_threads=int(sys.argv[2]), n_threads_batch=int(sys.argv[2]),
                      verbose=False)
for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=16,
                                        temperature=0.0, stream=True):
    sys.stdout.write(chunk["choices"][0]["delta"].get("content") or "")
    sys.stdout.flush()
"""

UI_SCRIPT = """
import asyncio, os, sys
bare = sys.argv[1] == "bare"
OUT = os.dup(1)  # Textual captures sys.stdout, and llama.cpp's quiet load points fd 1 at /dev/null for a while

def mark(text):
    os.write(OUT, text.encode() + b"\\n")

async def main():
    if bare:
        from textual.app import App
        from textual.widgets import Input

        class Bare(App):
            def compose(self):
                yield Input()

        async with Bare().run_test(headless=True, size=(100, 30)) as pilot:
            mark("MOUNTED")
            await pilot.pause()
            mark("READY")
        return
    from assistant.config import database_path, load
    from assistant.storage.store import Store
    from assistant.tui.app import ChatApp

    app = ChatApp(load(), Store(database_path()))
    async with app.run_test(headless=True, size=(100, 30)) as pilot:
        mark("MOUNTED")
        for _ in range(24000):
            if app.engine is not None:
                break
            await asyncio.sleep(0.005)
        else:
            raise SystemExit("the model did not load within 120 s")
        await pilot.pause()
        mark("READY")
        app.engine.close()

asyncio.run(main())
"""


def timed_process(
    command: list[str], env: dict[str, str], markers: tuple[str, ...] = (), timeout: float = 180.0
) -> dict[str, float]:
    """Spawn, read stdout unbuffered; seconds to the first non-blank byte, to each marker line, to exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    times: dict[str, float] = {}
    seen = b""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    selector.register(proc.stderr, selectors.EVENT_READ)
    errors = b""
    open_streams = 2
    deadline = start + timeout
    while open_streams:
        if time.perf_counter() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(f"{' '.join(command[:4])}… did not finish within {timeout:.0f} s")
        for key, _ in selector.select(timeout=1):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            if key.fileobj is proc.stderr:
                errors += chunk
                continue
            now = time.perf_counter() - start
            seen += chunk
            if "first" not in times and seen.strip():
                times["first"] = now
            for marker in markers:
                if marker not in times and marker.encode() in seen:
                    times[marker] = now
    code = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    times["total"] = time.perf_counter() - start
    missing = [m for m in markers if m not in times]
    if code != 0 or missing:
        tail = errors.decode(errors="replace")[-300:]
        raise RuntimeError(f"{' '.join(command[:4])}… exited with {code}, missing {missing}: {tail}")
    return times


def ask_rows(quick: bool, env: dict[str, str], model: Path) -> list[dict[str, Any]]:
    reps = 3 if quick else 9
    assistant = str(Path(PYTHON).parent / "assistant")
    product_cmd = [assistant, "ask", "--max-tokens", "16", "--temperature", "0", "hi"]
    raw_cmd = [PYTHON, "-c", RAW_SCRIPT, str(model), str(threads())]
    timed_process(product_cmd, env), timed_process(raw_cmd, env)  # warm the page cache
    runs: dict[str, list[dict[str, float]]] = {"product": [], "raw": []}
    for i in tqdm(range(reps), desc="coldstart: ask", unit="round", file=sys.stderr):
        pair = [("product", product_cmd), ("raw", raw_cmd)]
        for name, command in pair if i % 2 == 0 else reversed(pair):
            runs[name].append(timed_process(command, env))
    first = {name: [r["first"] for r in rs] for name, rs in runs.items()}
    total = {name: [r["total"] for r in rs] for name, rs in runs.items()}
    f, fb = summary(first["product"]), summary(first["raw"])
    t, tb = summary(total["product"]), summary(total["raw"])
    return [
        row(
            BENCH,
            '`assistant ask "hi"`: spawn to first token',
            f["median"],
            "s",
            baseline=fb["median"],
            ratio=ratio(f["median"], fb["median"]),
            target="< 1.5 s",
            notes=f"default model (SmolLM2-135M), {threads()} threads, fresh process, warm page cache; "
            f"{spread(first['product'], ' s')}; "
            f"raw llama-cpp-python script {spread(first['raw'], ' s')}",
            **f,
        ),
        row(
            BENCH,
            '`assistant ask "hi"`: spawn to exit (16 tokens)',
            t["median"],
            "s",
            baseline=tb["median"],
            ratio=ratio(t["median"], tb["median"]),
            notes=f"{spread(total['product'], ' s')}; raw {spread(total['raw'], ' s')}",
            **t,
        ),
    ]


def ui_rows(quick: bool, env: dict[str, str]) -> list[dict[str, Any]]:
    import importlib.util

    if importlib.util.find_spec("assistant.tui.app") is None:
        return [row(BENCH, "chat UI: start to ready", None, "s", notes="skipped: assistant.tui.app is not built yet")]
    reps = 2 if quick else 5
    runs: dict[str, list[dict[str, float]]] = {"ui": [], "bare": []}
    timed_process([PYTHON, "-c", UI_SCRIPT, "ui"], env, ("MOUNTED", "READY"))  # warm-up
    for i in tqdm(range(reps), desc="coldstart: UI", unit="round", file=sys.stderr):
        pair = [("ui", "ui"), ("bare", "bare")]
        for name, arg in pair if i % 2 == 0 else reversed(pair):
            runs[name].append(timed_process([PYTHON, "-c", UI_SCRIPT, arg], env, ("MOUNTED", "READY")))
    mounted = {name: [r["MOUNTED"] for r in rs] for name, rs in runs.items()}
    ready = {name: [r["READY"] for r in rs] for name, rs in runs.items()}
    m, r = summary(mounted["ui"]), summary(ready["ui"])
    bare = summary(ready["bare"])["median"]
    return [
        row(
            BENCH,
            "chat UI: spawn to first screen",
            m["median"],
            "s",
            baseline=bare,
            ratio=ratio(m["median"], bare),
            notes=f"ChatApp under Textual's headless pilot vs a bare one-Input Textual app; "
            f"{spread(mounted['ui'], ' s')}; bare {spread(ready['bare'], ' s')}",
            **m,
        ),
        row(
            BENCH,
            "chat UI: spawn to ready (model loaded)",
            r["median"],
            "s",
            baseline=bare,
            ratio=ratio(r["median"], bare),
            notes=f"{spread(ready['ui'], ' s')}",
            **r,
        ),
    ]


def parse_importtime(stderr: str) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, indented module name) per line of ``-X importtime`` output."""
    out = []
    for line in stderr.splitlines():
        if m := re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)$", line):
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def import_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    rounds = 5
    totals: list[float] = []
    top: list[tuple[int, int, str]] = []
    for _ in range(rounds):
        proc = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", CHAT_PATH],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        entries = parse_importtime(proc.stderr)
        roots = [e for e in entries if not e[2].startswith(" ")]
        totals.append(sum(e[1] for e in roots) / 1000)
        top = sorted(roots, key=lambda e: -e[1])[:6]
    ask = subprocess.run(
        [
            PYTHON,
            "-X",
            "importtime",
            "-m",
            "assistant",
            "ask",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "hi",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported = {e[2].strip() for e in parse_importtime(ask.stderr)}
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY and "." not in m)
    notable = sorted(m for m in imported if m in NOTABLE)
    s = summary(totals)
    return [
        row(
            BENCH,
            f"import time: `{CHAT_PATH}`",
            s["median"],
            "ms",
            notes=f"python -X importtime, {spread(totals, ' ms')}; largest: "
            + ", ".join(f"{name.strip()} {cum / 1000:.0f} ms" for _, cum, name in top),
            **s,
        ),
        row(
            BENCH,
            "heavy modules imported by `assistant ask` (torch, transformers, …)",
            len(heavy),
            "modules",
            target="== 0",
            notes=("imported: " + ", ".join(heavy) if heavy else "none of " + ", ".join(HEAVY))
            + f"; the ask process also imports: {', '.join(notable)}",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.models.registry import embedded_model_path

    with bench_home():
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        model = embedded_model_path()
        rows = ask_rows(quick, env, model)
        try:
            rows += ui_rows(quick, env)
        except Exception as exc:  # the UI is another helper's work in progress: report, don't abort
            rows.append(row(BENCH, "chat UI: start to ready", None, "s", notes=f"failed: {exc}"[:300], met=False))
        rows += import_rows(env)
    return rows


if __name__ == "__main__":
    sys.exit(cli(run, "bench_coldstart"))
