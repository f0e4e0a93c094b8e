"""`assistant serve` vs the in-process engine and session: what serving over HTTP costs.

A real server process (``assistant serve --port 0 --model smollm2-135m``, same GGUF, context and
thread count) is driven over loopback with httpx, parsing the server-sent events as a client does;
the baselines run in this process. Runs are interleaved; everything is greedy.

- decode tok/s: a long answer streamed through the server vs ``Engine.stream`` in process,
  (tokens - 1) / (last token time - first token time), timed from outside for both;
- added TTFT: request sent -> first streamed text through the server, minus ``Session.send`` ->
  first delta in process, for the same one-question chats (a new chat each time);
- turn-10 / turn-1 TTFT for a client that resends the whole growing conversation every turn
  (the server must find the stored chat and evaluate only the new message), and the prompt tokens
  it evaluated per turn (``timings.prompt_n``) against the prompt's size;
- tokens generated after a streaming client disconnects (it must stop at the next token).

Targets (issue 17): decode >= 0.95x; added TTFT <= 15 ms; turn-10/turn-1 <= 1.2x.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.bench_decode import PROMPT, decode_rate
from bench.bench_ttft import QUESTIONS, first_text_after
from bench.common import bench_home, cli, interleave, ratio, row, spread, summary
from bench.common import threads as bench_threads
from bench.serve_process import ServeProcess

BENCH = "server"
MODEL = "smollm2-135m"
# greedy answers that run past 150 tokens (a sampled story, or "Story 2: tell a very long story.", can end after
# 8 tokens: on its own before the client goes away, so the server logs no cancellation)
CITIES = ("Rome", "Paris", "London", "Cairo", "Tokyo")


def sse_texts(client: Any, url: str, body: dict[str, Any], usage: dict[str, Any] | None = None) -> Iterator[str]:
    """The content pieces of a streamed chat completion, as they arrive; ``usage`` receives the usage and the
    server's own ``timings``."""
    options = {"stream_options": {"include_usage": True}} if usage is not None else {}
    with client.stream("POST", f"{url}/chat/completions", json={**body, "stream": True, **options}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event["choices"] and (text := event["choices"][0]["delta"].get("content")):
                yield text
            if usage is not None:
                usage.update({key: event[key] for key in ("usage", "timings") if event.get(key)})


def resending_client(client: Any, url: str, session: Any, chat: int, max_tokens: int) -> dict[str, list[Any]]:
    """Per turn of a 10-turn chat: TTFT through the server (its client resends the whole chat each turn) and
    through an in-process ``Session`` (same questions, interleaved), and the server's (prompt, evaluated) tokens."""
    messages: list[dict[str, str]] = []
    out: dict[str, list[Any]] = {"server": [], "session": [], "tokens": []}
    for turn, question in enumerate(QUESTIONS):
        question = f"Server chat {chat}. {question}" if turn == 0 else question
        messages.append({"role": "user", "content": question})
        body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        usage: dict[str, Any] = {}
        for side in ("server", "session") if turn % 2 == 0 else ("session", "server"):
            if side == "server":
                seconds, answer = first_text_after(sse_texts(client, url, body, usage), lambda t: t)
                messages.append({"role": "assistant", "content": answer})
            else:
                seconds, _ = first_text_after(
                    session.send(question, max_tokens=max_tokens, temperature=0.0), lambda d: d.text
                )
            out[side].append(seconds)
        out["tokens"].append((usage["usage"]["prompt_tokens"], usage["timings"]["prompt_n"]))
    return out


def tokens_after_disconnect(server: ServeProcess, client: Any, reps: int) -> tuple[list[int], list[float]]:
    """How many tokens each answer ran on after its streaming client went away (from the server's log), and
    how long until the engine was free (polling /health)."""
    counts, freed = [], []
    for rep in range(reps):
        finished, logged = server.health()["finished"], len(server.stderr)
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Write a long essay about the history of {CITIES[rep]}."}],
            "max_tokens": 1000,
            "temperature": 0,
        }
        for i, _ in enumerate(sse_texts(client, server.url, body)):
            if i == 10:
                break  # leaving the with-block closes the connection mid-stream
        closed = time.perf_counter()
        server.wait_health(lambda h: h["finished"] > finished, "the abandoned answer to stop")
        freed.append(time.perf_counter() - closed)
        line = server.wait_line("a client went away", since=logged)
        counts.append(int(re.search(r"stopped (\d+) token", line).group(1)))  # type: ignore[union-attr]
    return counts, freed


def run(quick: bool) -> list[dict[str, Any]]:
    import httpx

    from assistant.chat.session import Session
    from assistant.config import database_path, load
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.storage.store import Store

    reps, decode_tokens, ttft_reps, answer_tokens = (2, 64, 5, 16) if quick else (5, 256, 15, 48)
    chats = 1 if quick else 3
    threads = bench_threads()
    with bench_home() as home:
        config = load()
        env = {"ASSISTANT_THREADS": str(threads), "ASSISTANT_N_CTX": str(config.model.n_ctx)}
        with (
            ServeProcess(Path(home) / "server", "--model", MODEL, env=env) as server,
            httpx.Client(timeout=300) as client,
        ):
            store = Store(database_path())
            engine = Engine(embedded_model_path(), n_ctx=config.model.n_ctx, threads=threads)
            messages = [{"role": "user", "content": PROMPT}]
            decode = interleave(
                {
                    "server": lambda: decode_rate(
                        sse_texts(
                            client,
                            server.url,
                            {"model": MODEL, "messages": messages, "max_tokens": decode_tokens, "temperature": 0},
                        ),
                        lambda t: True,
                    ),
                    "engine": lambda: decode_rate(
                        engine.stream(messages, max_tokens=decode_tokens, temperature=0.0), lambda d: True
                    ),
                },
                reps,
            )
            counter = iter(range(10**6))

            def chat_question() -> str:
                return f"Chat {next(counter)}. {QUESTIONS[0]}"

            def served_ttft() -> tuple[float, float]:
                """(TTFT seen by the client, TTFT of the Session inside the server) of one request."""
                meta: dict[str, Any] = {}
                seconds = first_text_after(
                    sse_texts(
                        client,
                        server.url,
                        {
                            "model": MODEL,
                            "messages": [{"role": "user", "content": chat_question()}],
                            "max_tokens": answer_tokens,
                            "temperature": 0,
                        },
                        meta,
                    ),
                    lambda t: t,
                )[0]
                return seconds, meta["timings"]["session_ttft_ms"] / 1000

            ttft = interleave(
                {
                    "server": served_ttft,
                    "session": lambda: first_text_after(
                        Session(store, engine, config).send(chat_question(), max_tokens=answer_tokens, temperature=0.0),
                        lambda d: d.text,
                    )[0],
                },
                ttft_reps,
            )
            progress = tqdm(total=chats, desc="server: resending chats", unit="chat", file=sys.stderr)
            chats_run = []
            for chat in range(chats):
                chats_run.append(
                    resending_client(client, server.url, Session(store, engine, config), chat + 1, answer_tokens)
                )
                progress.update()
            progress.close()
            overrun, freed = tokens_after_disconnect(server, client, 2 if quick else 5)
            engine.close()
            store.close()
    return rows(decode, ttft, chats_run, (overrun, freed), threads, decode_tokens, answer_tokens)


def rows(
    decode: dict[str, list[Any]],
    ttft: dict[str, list[float]],
    chats: list[dict[str, list[Any]]],
    disconnects: tuple[list[int], list[float]],
    threads: int,
    decode_tokens: int,
    answer_tokens: int,
) -> list[dict[str, Any]]:
    overrun, freed = disconnects
    server_rate = [r[0] for r in decode["server"]]
    engine_rate = [r[0] for r in decode["engine"]]
    served, local = statistics.median(server_rate), statistics.median(engine_rate)
    setup = f"SmolLM2-135M, {threads} thread(s), greedy, server over loopback (httpx, SSE parsed)"
    added = [client - inside for client, inside in ttft["server"]]  # paired: the same request's two clocks
    across = [client - local for (client, _), local in zip(ttft["server"], ttft["session"])]
    server_ttft = statistics.median(client for client, _ in ttft["server"])
    session_ttft = statistics.median(ttft["session"])
    turns = [chat["server"] for chat in chats]
    per_turn = [statistics.median(run[t] for run in turns) for t in range(len(QUESTIONS))]
    in_process = [statistics.median(chat["session"][t] for chat in chats) for t in range(len(QUESTIONS))]
    growth = [run[-1] / run[0] for run in turns if run[0]]
    evaluated = chats[-1]["tokens"]
    return [
        row(
            BENCH,
            "decode tok/s through the server vs the in-process engine",
            served,
            "tok/s",
            baseline=local,
            ratio=ratio(served, local),
            target=">= 0.95x",
            notes=f"{setup}; {decode_tokens}-token answers (got {decode['server'][0][1]}); server "
            f"{spread(server_rate)}, engine {spread(engine_rate)}",
            **summary(server_rate),
        ),
        row(
            BENCH,
            "added TTFT through the server vs the in-process session",
            statistics.median(added) * 1000,
            "ms",
            target="<= 15 ms",
            notes=f"{setup}; a new one-question chat each run; added = client's TTFT minus the TTFT of the Session "
            f"serving that same request (server's timings.session_ttft_ms): {spread([a * 1000 for a in added], ' ms')};"
            f" cross-check against an in-process Session run alongside (same kind of chat, noisier): client TTFT "
            f"median {server_ttft * 1000:.1f} ms vs session {session_ttft * 1000:.1f} ms, per-pair difference "
            f"{spread([a * 1000 for a in across], ' ms')}",
            **summary([a * 1000 for a in added]),
        ),
        row(
            BENCH,
            "turn-10 TTFT vs turn-1 TTFT, client resending the conversation",
            per_turn[-1],
            "s",
            baseline=per_turn[0],
            ratio=ratio(per_turn[-1], per_turn[0]),
            target="<= 1.2x",
            notes=f"{setup}; {len(turns)} chat(s) of 10 turns, {answer_tokens}-token answers; per-chat turn10/turn1 "
            f"{spread(growth, 'x')}; prompt tokens evaluated / in the prompt, turn 1: {evaluated[0][1]}/"
            f"{evaluated[0][0]}, turn 10: {evaluated[-1][1]}/{evaluated[-1][0]}; in-process Session alongside: "
            f"turn10/turn1 {in_process[-1] / in_process[0]:.2f}x; turn by turn (s): server "
            + " ".join(f"{x:.3f}" for x in per_turn)
            + "; session "
            + " ".join(f"{x:.3f}" for x in in_process),
            plot={
                "title": "Time to first token per turn (median of chats)",
                "xlabel": "turn",
                "ylabel": "seconds",
                "x": list(range(1, len(per_turn) + 1)),
                "series": {"assistant serve (client resends the chat)": per_turn, "in-process Session": in_process},
            },
        ),
        row(
            BENCH,
            "prompt tokens evaluated at turn 10 of a resent conversation",
            evaluated[-1][1],
            "tokens",
            baseline=evaluated[-1][0],
            ratio=ratio(evaluated[-1][1], evaluated[-1][0]),
            notes=f"{setup}; the server's timings.prompt_n vs usage.prompt_tokens (the rest came from the KV cache); "
            "per turn (evaluated/prompt): "
            + " ".join(f"{done}/{prompt}" for prompt, done in evaluated)
            + "; only the new question, its template markers and the last answer's end are evaluated",
        ),
        row(
            BENCH,
            "tokens generated after a streaming client disconnects",
            max(overrun),
            "tokens",
            target="<= 1",
            notes=f"worst of {len(overrun)}: {overrun} (from the server's log; the stored answer is marked cancelled); "
            f"client closed -> engine free (polling /health every 5 ms) {spread([f * 1000 for f in freed], ' ms')}",
        ),
    ]


if __name__ == "__main__":
    sys.exit(cli(run, "bench_server"))
