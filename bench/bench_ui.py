"""Chat UI responsiveness: keystroke-to-render latency while an answer streams, vs idle.

Drives the real app with Textual's pilot (headless) and the real SmolLM2-135M student. Each
keystroke is posted to the app like a terminal key; its latency is the time until the first
frame the compositor produces after the key landed in the message box. The baseline is the
same measurement with the app idle. A second row compares the student's decode speed inside
the UI with the engine alone (the UI's streaming overhead). Also saves screenshots of the
main screens to ``bench/results/ui/`` (SVG, plus PNG when ``rsvg-convert`` is installed).

    .venv/bin/python -m bench.bench_ui [--quick]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textual import events

from assistant.config import database_path, load
from assistant.models.engine import Engine
from assistant.models.registry import embedded_model_path
from assistant.storage.store import Store
from assistant.tui.app import ChatApp
from bench.common import wait_until

RESULTS = Path(__file__).resolve().parent / "results" / "ui"
QUESTION = "Write a long story about a dragon who learns to program in Python."
KEYS = "abcdefghijklmnopqrstuvwxyz"


def make_app(max_tokens: int) -> tuple[ChatApp, Engine]:
    """The real app on a fresh store and its own one-thread SmolLM2 engine, greedy."""
    config = load()
    config.generation.temperature, config.generation.max_tokens = 0.0, max_tokens
    engine = Engine(embedded_model_path(), n_ctx=2048, threads=1)
    return ChatApp(config, Store(database_path()), engine=engine), engine


def seed(store) -> None:  # noqa: ANN001
    """One stored conversation with a code block, for the screenshots."""
    cid = store.new_conversation(title="Reverse a list in Python")
    store.add_message(cid, "user", "How do I reverse a list in Python?")
    store.add_message(
        cid,
        "assistant",
        "Use slicing or `reversed`:\n\n```python\nitems = [1, 2, 3]\n"
        "print(items[::-1])\n```\n\nBoth keep the original list.",
        model="SmolLM2-135M-Instruct.Q4_1",
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=30,
        ttft_s=0.05,
        tokens_per_s=50.0,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _keystroke_latencies(app, count: int, streaming: bool) -> list[float]:  # noqa: ANN001
    """Latency (s) of ``count`` keystrokes into the message box; stops early if streaming ends.

    A frame's time is taken in ``App._display`` (Textual's private method that writes each frame: no public hook
    tells when a frame went out)."""
    expected = {"text": None}
    shown: list[float] = []  # times of frames produced once the key was in the box
    display = app._display

    def spy(screen, renderable):  # noqa: ANN001, ANN202
        if renderable is not None and app.prompt.text == expected["text"]:
            shown.append(time.perf_counter())
        return display(screen, renderable)

    app._display = spy
    latencies: list[float] = []
    try:
        for i in range(count):
            if streaming and not app.generating:
                break
            key = KEYS[i % len(KEYS)]
            shown.clear()
            expected["text"] = app.prompt.text + key
            started = time.perf_counter()
            app.post_message(events.Key(key, key))  # as the terminal driver posts a key
            # frame times are exact; ``every`` only sets how often we look
            await wait_until(lambda: bool(shown), "a keystroke to be rendered", timeout=5, every=0.002)
            latencies.append(shown[0] - started)
            await asyncio.sleep(0.03)  # a fast typist: ~30 keys per second
    finally:
        app._display = display
    return latencies


def _streamed(app: ChatApp) -> str:
    """The text of the answer being streamed so far ('' when none is)."""
    view = next((v for v in app.chat.views() if v.streaming), None)
    return view.source if view is not None else ""


def _answering(app: ChatApp, turns_before: int) -> bool:
    """True once the answer after ``turns_before`` finished turns has a token on screen, or has finished."""
    return app.turns_done > turns_before or bool(_streamed(app))


async def _send(pilot, app, text: str) -> int:  # noqa: ANN001
    """Type ``text`` into the box and send it; returns ``turns_done`` before this turn.

    Enter is posted as the terminal driver posts a key: ``pilot.press`` would wait for the app
    to go idle, which it only does once the whole answer has streamed."""
    await pilot.press(*text)
    await pilot.pause()
    before = app.turns_done
    app.post_message(events.Key("enter", "\r"))
    return before


async def _measure(quick: bool, max_tokens: int | None = None) -> dict[str, object]:
    """Keystroke latency idle and while an answer streams, and the UI's decode speed vs the engine's.

    Every wait is on a counter that only grows (``turns_done``) or a token that stays on screen, with a
    deadline; an answer that ends before a keystroke could land leaves the streaming list short (or
    empty) instead of hanging."""
    app, engine = make_app(max_tokens=max_tokens or (600 if quick else 1000))
    count, reps = (20, 3) if quick else (60, 5)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        idle = await _keystroke_latencies(app, count, streaming=False)
        app.prompt.clear()
        before = await _send(pilot, app, QUESTION)
        await wait_until(lambda: _answering(app, before), "the first token of the answer (or its end)")
        streaming: list[float] = []
        while len(streaming) < count and app.turns_done == before:
            got = await _keystroke_latencies(app, count - len(streaming), streaming=True)
            streaming += got
            if not got:
                break
        app.chat_screen.action_stop()
        await wait_until(lambda: app.turns_done > before, "the stopped answer to be finalised")
        # decode speed inside the UI vs the engine alone, same history and token count, interleaved
        app.config.generation.max_tokens = 64
        ui_speeds, engine_speeds = [], []
        for _ in range(reps):
            done = app.turns_done
            await app.chat_screen.action_regenerate()
            # not pilot.pause(): it forces extra screen updates
            await wait_until(lambda: app.turns_done > done, "a regenerated answer to finish", every=0.2)
            ui_speeds.append(app.session.last.stats.tokens_per_s)
            tokens = app.session.last.stats.completion_tokens
            engine.complete(app.session.history()[:-1], max_tokens=tokens, temperature=0.0)
            engine_speeds.append(engine.stats.tokens_per_s)
    engine.close()
    return {
        "idle": idle,
        "streaming": streaming,
        "ui_speeds": ui_speeds,
        "engine_speeds": engine_speeds,
        "threads": engine.threads,
    }


def _rows(m: dict[str, object]) -> list[dict[str, object]]:
    idle, streaming = m["idle"], m["streaming"]
    assert isinstance(idle, list) and isinstance(streaming, list)
    rows = []
    if not streaming:
        rows.append(
            {
                "benchmark": "ui_keystroke_latency",
                "metric": "p95 while streaming",
                "value": None,
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": "< 50 ms",
                "met": False,
                "notes": "the answer ended before a keystroke could land while it streamed: nothing measured",
            }
        )
    for name, q in (("p50", 0.5), ("p95", 0.95)) if streaming else ():
        value, base = _percentile(streaming, q) * 1000, _percentile(idle, q) * 1000
        rows.append(
            {
                "benchmark": "ui_keystroke_latency",
                "metric": f"{name} while streaming",
                "value": round(value, 2),
                "unit": "ms",
                "baseline": round(base, 2),
                "ratio": round(value / base, 2) if base else None,
                "target": "< 50 ms",
                "notes": (
                    f"baseline = same keystrokes with the app idle; n={len(streaming)} streaming / {len(idle)} idle; "
                    f"streaming min/median/max {min(streaming) * 1000:.1f}/{statistics.median(streaming) * 1000:.1f}/"
                    f"{max(streaming) * 1000:.1f} ms; headless pilot, 100x30, SmolLM2-135M, threads={m['threads']}"
                ),
            }
        )
    ui, eng = m["ui_speeds"], m["engine_speeds"]
    assert isinstance(ui, list) and isinstance(eng, list)
    ui_speed, engine_speed = statistics.median(ui), statistics.median(eng)
    rows.append(
        {
            "benchmark": "ui_stream_overhead",
            "metric": "decode tokens/s inside the UI",
            "value": round(ui_speed, 1),
            "unit": "tok/s",
            "baseline": round(engine_speed, 1),
            "ratio": round(ui_speed / engine_speed, 3) if engine_speed else None,
            "target": None,
            "notes": (
                f"baseline = engine alone on the same history and token count, interleaved, greedy; "
                f"UI min/median/max {min(ui):.1f}/{ui_speed:.1f}/{max(ui):.1f}, "
                f"engine {min(eng):.1f}/{engine_speed:.1f}/{max(eng):.1f} over {len(ui)} runs"
            ),
        }
    )
    return rows


async def _screenshots() -> list[Path]:
    """SVG (and PNG) captures of the main screens, from a seeded store and one live answer."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    app, engine = make_app(max_tokens=48)
    seed(app.store)
    saved: list[Path] = []

    def save(pilot, name: str) -> None:  # noqa: ANN001
        saved.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(RESULTS))))

    async with app.run_test(size=(80, 24)) as pilot:
        app.prompt.cursor_blink = False
        await pilot.pause()
        conversations = app.store.conversations()
        await app.open_conversation(conversations[-1]["id"])
        await pilot.pause()
        save(pilot, "chat_80x24")
        await app.open_conversation(None)
        before = await _send(pilot, app, "How do I read a file in Python? Show code.")
        await wait_until(
            lambda: app.turns_done > before or len(_streamed(app)) >= 40,
            "40 characters of the answer (or its end)",
            every=0.02,
        )
        save(pilot, "streaming_80x24")
        await wait_until(lambda: app.turns_done > before, "the answer to finish", every=0.05)
        await pilot.pause()
        save(pilot, "answered_80x24")
        for key, name in (("f1", "help"), ("ctrl+o", "model_picker"), ("ctrl+s", "settings"), ("f8", "delete_confirm")):
            await pilot.press(key)
            await pilot.pause()
            save(pilot, f"{name}_80x24")
            await pilot.press("escape")
            await pilot.pause()
        await pilot.press("ctrl+f", *"python")
        await pilot.pause()
        save(pilot, "search_80x24")
        await pilot.press("escape")
        app.theme = "textual-light"
        await pilot.pause()
        save(pilot, "chat_light_80x24")
        await pilot.resize_terminal(140, 40)
        app.theme = "textual-dark"
        await pilot.pause()
        save(pilot, "chat_wide_140x40")
    engine.close()
    if shutil.which("rsvg-convert"):
        for svg in list(saved):
            png = svg.with_suffix(".png")
            subprocess.run(["rsvg-convert", str(svg), "-o", str(png)], check=False, timeout=60)
    return saved


def run(quick: bool) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as home:
        os.environ["ASSISTANT_HOME"] = str(Path(home) / "measure")
        measured = asyncio.run(_measure(quick))
        if not quick:
            os.environ["ASSISTANT_HOME"] = str(Path(home) / "screens")
            asyncio.run(_screenshots())
    return _rows(measured)


def main() -> None:
    quick = "--quick" in sys.argv
    rows = run(quick)
    print(f"{'benchmark':<22} {'metric':<32} {'value':>9} {'baseline':>9} {'ratio':>7} unit")
    for r in rows:
        print(
            f"{r['benchmark']:<22} {r['metric']:<32} {r['value']:>9} {r['baseline']!s:>9} {r['ratio']!s:>7} {r['unit']}"
        )
        print(f"    {r['notes']}")
    if not quick:
        print(f"screenshots: {RESULTS}")


if __name__ == "__main__":
    main()
