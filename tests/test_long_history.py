"""Long histories and over-long messages (issue 26, rows 2 and 4): fitting is fast, cancellable and exact.

Row 2: 1,500 resent user/assistant pairs (~250 KB) are fitted into the window in a few renders of about
one window's worth of messages, keep exactly the turns the former one-at-a-time fit kept, stop at a cancel,
and a signal stops `assistant serve` within seconds. Row 4: a message that does not fit the window even
alone is refused with the numbers (a 400 ``context_length_exceeded`` from the server, one line from
``assistant ask``), never cut. Engine rows on the real SmolLM2 engine, server rows on a real
`assistant serve` on loopback, greedy throughout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.models.engine import Engine
from assistant.models.llama_model import Model
from assistant.models.prompt import fit, render
from assistant.models.stats import Stats
from bench.serve_process import ServeProcess

MODEL = "smollm2-135m"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = {"role": "user", "content": "Final question: what is the capital of France?"}
FILLER = "lorem ipsum dolor sit amet " * 4000  # 20,000 words, ~27k tokens: no window here holds it
SMALL = {"ASSISTANT_N_CTX": "1024"}
TOO_LONG = FILLER + "\n\nNow the question: what is the capital of France?"


def pairs(n: int) -> list[dict[str, str]]:
    """``n`` user/assistant pairs of ~80 characters each: 1,500 of them are ~250 KB of JSON."""
    messages = []
    for i in range(n):
        messages.append({"role": "user", "content": f"Question {i}: what should we do with item {i} today?"})
        messages.append({"role": "assistant", "content": f"Answer {i}: keep item {i} on the shelf for now."})
    return messages


def one_at_a_time(model: Model, messages: list[dict[str, str]], budget: int, continue_final: bool) -> tuple[str, int]:
    """The former fit (before issue 26): drop the oldest turn (system kept), render and count again, until it fits."""
    messages = list(messages)
    keep = 2 if continue_final else 1
    dropped = 0
    while True:
        text = render(model, messages, continue_final)
        if len(model.tokenize(text, first=True)) <= budget:
            return text, dropped
        system = 1 if messages[0]["role"] == "system" else 0
        assert len(messages) - system > keep, "the test history's question must fit alone"
        del messages[system]
        dropped += 1


def mixed_history(seed: int, turns: int) -> list[dict[str, str]]:
    """Turns of varied kinds (prose, code, CJK, numbers, whitespace, empty, one long paste), seeded."""
    rng = random.Random(seed)
    kinds = [
        lambda: " ".join(rng.choice(["cat", "tree", "river", "stone", "lamp"]) for _ in range(rng.randint(1, 60))),
        lambda: "def f(x):\n    return [i * i for i in range(x)]\n" * rng.randint(1, 6),
        lambda: "日本語の文章です。" * rng.randint(1, 20),
        lambda: " ".join(str(rng.randint(0, 10**9)) for _ in range(rng.randint(1, 30))),
        lambda: " " * rng.randint(1, 300) + "spaces",
        lambda: "",
        lambda: "a long paste " * rng.randint(100, 300),
    ]
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": rng.choice(kinds)()} for i in range(turns)]


class Tokenized:
    """Wraps a model's tokenize: counts the characters it is given; ``each`` runs at each call; past ``cap``
    characters it fails the test (the former fit tokenized the whole history once per message dropped)."""

    def __init__(self, model: Model, cap: int, each: Callable[[], object] = lambda: None) -> None:
        self.tokenize, self.cap, self.each, self.chars = model.tokenize, cap, each, 0

    def __call__(self, text: str, first: bool) -> list[int]:
        self.chars += len(text)
        self.each()
        if self.chars > self.cap:
            raise AssertionError(f"tokenized {self.chars:,} characters, more than {self.cap:,}")
        return self.tokenize(text, first)


# -- row 2, the engine
@pytest.mark.parametrize(
    ("seed", "turns", "reserve", "system", "continue_final"),
    [(1, 41, 1600, True, False), (2, 60, 1200, False, False), (3, 33, 1800, True, True), (4, 80, 500, True, False)],
)
def test_the_fit_keeps_what_the_one_at_a_time_fit_kept(
    engine: Engine, seed: int, turns: int, reserve: int, system: bool, continue_final: bool
) -> None:
    """Same prompt, same number left out, as the former algorithm, on moderate histories of every kind of text."""
    history = ([SYSTEM] if system else []) + mixed_history(seed, turns) + [QUESTION]
    if continue_final:
        history.append({"role": "assistant", "content": "The capital of"})
    stats = Stats(n_ctx=engine.n_ctx)
    text = fit(engine.model, history, reserve, stats, continue_final)
    expected, dropped = one_at_a_time(engine.model, history, engine.n_ctx - reserve, continue_final)
    assert dropped > 0, "the history must be too long for the window"
    assert (text, stats.dropped_messages) == (expected, dropped)
    assert stats.notes == [f"{dropped} oldest message(s) left out to fit the {engine.n_ctx}-token context"]


def test_1500_pairs_fit_in_a_few_window_sized_renders(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Well under a second, not many minutes; the turns kept are the most that fit (one more would not), and the
    note counts the rest."""
    history = [SYSTEM, *pairs(1500), QUESTION]
    tokenized = Tokenized(engine.model, cap=len(render(engine.model, history, False)) // 2)
    monkeypatch.setattr(engine.model, "tokenize", tokenized)
    stats, budget = Stats(n_ctx=engine.n_ctx), engine.n_ctx - 8
    started = time.perf_counter()
    text = fit(engine.model, history, 8, stats)
    elapsed = time.perf_counter() - started
    monkeypatch.undo()
    kept = len(history) - 1 - stats.dropped_messages
    assert elapsed < 5 and text == render(engine.model, [SYSTEM, *history[-kept:]], False)
    assert stats.notes == [f"{stats.dropped_messages} oldest message(s) left out to fit the 2048-token context"]
    assert len(engine.model.tokenize(text, first=True)) <= budget
    one_more = render(engine.model, [SYSTEM, *history[-kept - 1 :]], False)
    assert len(engine.model.tokenize(one_more, first=True)) > budget
    assert tokenized.chars < 10 * len(text)


def test_fitting_stops_at_a_cancel(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel while the history is being fitted ends the turn at once: nothing evaluated, nothing generated."""
    history = [SYSTEM, *pairs(400), QUESTION]
    tokenized = Tokenized(engine.model, cap=len(render(engine.model, history, False)), each=engine.cancel)
    monkeypatch.setattr(engine.model, "tokenize", tokenized)
    answer = engine.complete(history, max_tokens=8, conversation="cancelled-fit")
    monkeypatch.undo()
    assert answer == "" and engine.stats.finish_reason == "cancelled"
    assert engine.stats.evaluated_tokens == 0 and tokenized.chars < 2000


def test_a_callers_cancel_set_before_the_turn_starts_is_not_lost(engine: Engine) -> None:
    """``Engine.cancel`` is cleared as a turn starts; the caller's own flag, set before, still cancels it."""
    stop = threading.Event()
    stop.set()
    answer = engine.complete([QUESTION], max_tokens=8, conversation="pre-cancelled", cancel=stop)
    assert answer == "" and engine.stats.finish_reason == "cancelled"


# -- rows 2 and 4, the server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A 1,024-token window: evaluating the prompt (one thread, on a busy test machine) is then a few seconds."""
    with ServeProcess(tmp_path_factory.mktemp("long-home"), "--model", MODEL, env=SMALL, timeout=180) as process:
        yield process


def chat(server: ServeProcess, messages: list[dict[str, str]], timeout: float, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=timeout)


def stored_conversations(server: ServeProcess) -> list[list[tuple[str, str]]]:
    from assistant.storage.store import Store

    store = Store(server.home / "assistant.db")
    return [[(m.role, m.content) for m in store.messages(c["id"])] for c in store.conversations()]


@pytest.mark.timeout(300)
def test_1500_resent_pairs_are_answered_within_30_s(server: ServeProcess) -> None:
    """The answer comes in seconds; all 3,000 messages are stored; resending them with the answer continues
    the same stored conversation, as fast."""
    history = [*pairs(1500), QUESTION]
    body = json.dumps({"model": MODEL, "messages": history, "max_tokens": 8})
    assert 200_000 < len(body) < 2**20
    started = time.monotonic()
    reply = chat(server, history, timeout=30)
    first = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    answer = reply.json()["choices"][0]["message"]["content"]
    assert answer.strip() and reply.json()["usage"]["prompt_tokens"] <= 1024 - 8
    followup = [*history, {"role": "assistant", "content": answer}, {"role": "user", "content": "And of Spain?"}]
    started = time.monotonic()
    again = chat(server, followup, timeout=30)
    second = time.monotonic() - started
    assert again.status_code == 200, again.text
    long_ones = [c for c in stored_conversations(server) if len(c) > 3000]
    assert len(long_ones) == 1 and long_ones[0][:3002] == [(m["role"], m["content"]) for m in followup[:-1]]
    print(f"1,500 pairs: {first:.1f} s; the same conversation continued: {second:.1f} s")


def test_an_over_long_message_is_a_400_with_the_numbers(server: ServeProcess) -> None:
    """Never cut to fit (which lost the question at its end): refused, whole or streamed, and nothing is stored."""
    before = stored_conversations(server)
    reply = chat(server, [{"role": "user", "content": TOO_LONG}], timeout=120)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    tokens = int(error["message"].split(" tokens")[0].split()[-1].replace(",", ""))
    assert tokens > 20_000 and "1,016" in error["message"] and "1,024-token" in error["message"]
    streamed = chat(server, [{"role": "user", "content": TOO_LONG}], timeout=120, stream=True)
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert events[-1]["error"]["code"] == "context_length_exceeded"
    assert not any(e.get("choices") and e["choices"][0]["delta"].get("content") for e in events)
    assert stored_conversations(server) == before


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("sig", "delay"), [(signal.SIGTERM, 0.3), (signal.SIGTERM, 2.5), (signal.SIGINT, 1.5)])
def test_a_signal_during_a_long_history_request_stops_the_server_within_3_s(
    tmp_path: Path, sig: signal.Signals, delay: float
) -> None:
    """Whether it lands while the history is stored, fitted or evaluated: the client is told, the process exits."""
    server = ServeProcess(tmp_path / "home", "--model", MODEL, env=SMALL, timeout=180)
    replies: list[httpx.Response | Exception] = []

    def ask() -> None:
        try:
            replies.append(chat(server, [*pairs(1500), QUESTION], timeout=60))
        except httpx.HTTPError as exc:
            replies.append(exc)

    asker = threading.Thread(target=ask, daemon=True)
    try:
        asker.start()
        server.wait_health(lambda h: h["started"] >= 1, "the request to start")
        time.sleep(delay)
        server.process.send_signal(sig)
        signalled = time.monotonic()
        code = server.wait(timeout=20)
        took = time.monotonic() - signalled
    finally:
        server.stop()
    asker.join(timeout=30)
    print(f"{sig.name} {delay} s into the request: exited {took:.2f} s later")
    assert took < 3, f"exited {took:.1f} s after the signal"
    assert code == (0 if sig == signal.SIGINT else -sig)  # uvicorn raises SIGTERM again once it has shut down
    assert not any("Traceback" in line for line in server.stderr), server.output()
    reply = replies[0]
    assert isinstance(reply, httpx.Response) and reply.status_code == 503, reply
    assert reply.json()["error"]["code"] == "shutting_down"


# -- row 4, the command line
def test_ask_refuses_an_over_long_prompt_in_one_line(assistant_home: Path) -> None:
    env = os.environ | {"ASSISTANT_HOME": str(assistant_home), "ASSISTANT_N_CTX": "2048", "ASSISTANT_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "ask", "--max-tokens", "4", "-"],
        input=TOO_LONG,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and result.stdout.strip() == "", result
    assert len(lines) == 1 and lines[0].startswith("assistant: error: the message is "), result.stderr
    assert "2,044" in lines[0] and "2,048-token" in lines[0]
