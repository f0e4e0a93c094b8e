"""Store costs: persisting a streamed answer, and full-text search over 100k messages.

1. Persistence: the same greedy answer generated through ``Session`` (user message stored
   first, the answer written every 250 ms and at the end) and through the bare engine with no
   store, interleaved. The store calls inside the session run are timed one by one, so their
   share of the generation time is measured directly rather than as the (noisy) difference
   of two runs; the end-to-end difference is reported beside it. Also: the cost if every
   delta were written (flush interval 0), which is what the 250 ms batching avoids.
2. Search: 100k messages of real English text (windows of the standard library's own source
   and docstrings) in a real SQLite store with its FTS5 index; ``Store.search`` latency for
   common, mid-frequency, rare, two-word and absent terms, against a ``LIKE '%term%'`` scan.
"""

from __future__ import annotations

import random
import re
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import bench_home, cli, percentile, ratio, row, spread, summary

BENCH = "store"
PROMPT = "Explain how a hash table works and give a short example in Python."
STORE_METHODS = ("add_message", "update_message", "messages", "conversation", "new_conversation")


class StoreTimer:
    """Times every call the session makes into one real Store instance."""

    def __init__(self, store: Any) -> None:
        self.calls: list[tuple[str, float]] = []
        for name in STORE_METHODS:
            setattr(store, name, self._wrap(name, getattr(store, name)))

    def _wrap(self, name: str, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.calls.append((name, time.perf_counter() - start))

        return timed

    def reset(self) -> None:
        self.calls = []

    @property
    def total(self) -> float:
        return sum(seconds for _, seconds in self.calls)

    @property
    def streaming(self) -> float:
        """The answer's writes while it streams: every update_message but the final one."""
        updates = [seconds for name, seconds in self.calls if name == "update_message"]
        return sum(updates[:-1])


def persistence_rows(quick: bool) -> list[dict[str, Any]]:
    from assistant.chat.session import Session
    from assistant.config import database_path, load
    from assistant.models.engine import Engine
    from assistant.models.registry import embedded_model_path
    from assistant.storage.store import Store

    reps, max_tokens = (1, 48) if quick else (5, 400)
    config = load()
    store = Store(database_path())
    timer = StoreTimer(store)
    engine = Engine(embedded_model_path(), n_ctx=config.model.n_ctx, threads=config.model.threads)
    shares: dict[float, list[float]] = {0.25: [], 0.0: []}
    whole_turn: list[float] = []
    flush_ms: list[float] = []
    walls: dict[str, list[float]] = {"session": [], "bare": []}
    tokens: list[int] = []
    runs = 0

    def session_run(flush: float, tokens_wanted: int = max_tokens) -> None:
        session = Session(store, engine, config)
        session.flush_interval = flush
        timer.reset()
        start = time.perf_counter()
        for _ in session.send(PROMPT, max_tokens=tokens_wanted, temperature=0.0):
            pass
        wall = time.perf_counter() - start
        shares[flush].append(100 * timer.streaming / engine.stats.total_s)
        if flush:
            whole_turn.append(100 * timer.total / engine.stats.total_s)
            flush_ms.extend(1000 * sec for name, sec in timer.calls if name == "update_message")
            walls["session"].append(wall)
            tokens.append(engine.stats.completion_tokens)

    def bare_run() -> None:
        nonlocal runs
        runs += 1
        start = time.perf_counter()
        for _ in engine.stream(
            [{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.0, conversation=f"bare-{runs}"
        ):
            pass
        walls["bare"].append(time.perf_counter() - start)

    session_run(0.25, 8)  # warm-up (page cache, first allocations)
    shares[0.25].clear(), whole_turn.clear(), flush_ms.clear(), walls["session"].clear(), tokens.clear()
    for i in tqdm(range(reps), desc="store: persistence", unit="round", file=sys.stderr):
        order = [lambda: session_run(0.25), bare_run, lambda: session_run(0.0)]
        for fn in order if i % 2 == 0 else reversed(order):
            fn()
    threads = engine.model.threads
    engine.close()
    store.close()
    share, per_token, turn = summary(shares[0.25]), summary(shares[0.0]), summary(whole_turn)
    session_wall, bare_wall = summary(walls["session"]), summary(walls["bare"])
    return [
        row(
            BENCH,
            "persistence cost of a streamed answer (250 ms flush)",
            share["median"],
            "%",
            target="< 2 %",
            notes=f"time in the answer's writes while streaming / generation time; "
            f"{spread(shares[0.25], ' %')}; one write (UPDATE + FTS triggers + commit) {spread(flush_ms, ' ms')}; "
            f"answers of {min(tokens)}-{max(tokens)} tokens, SmolLM2-135M, {threads} threads",
            **share,
        ),
        row(
            BENCH,
            "persistence cost if every delta were written",
            per_token["median"],
            "%",
            notes=f"flush interval 0; {spread(shares[0.0], ' %')}",
            **per_token,
        ),
        row(
            BENCH,
            "all store work of a turn / generation time",
            turn["median"],
            "%",
            notes=f"user message, answer placeholder, history read, flushes, final write; {spread(whole_turn, ' %')}",
            **turn,
        ),
        row(
            BENCH,
            "answer wall time: Session vs bare engine",
            session_wall["median"],
            "s",
            baseline=bare_wall["median"],
            ratio=ratio(session_wall["median"], bare_wall["median"]),
            notes=f"end to end, interleaved (noisy); session {spread(walls['session'], ' s')}; "
            f"bare {spread(walls['bare'], ' s')}",
            **session_wall,
        ),
    ]


# -- search
def corpus_words() -> list[str]:
    """Real English text: the words of the standard library's larger modules, in order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    names = [
        "argparse.py",
        "inspect.py",
        "typing.py",
        "subprocess.py",
        "threading.py",
        "dataclasses.py",
        "pathlib.py",
        "tarfile.py",
        "zipfile/__init__.py",
        "logging/__init__.py",
        "email/message.py",
        "unittest/case.py",
        "asyncio/base_events.py",
        "http/client.py",
        "textwrap.py",
        "shutil.py",
    ]
    words: list[str] = []
    for name in names:
        path = lib / name
        if path.exists():
            words += re.findall(r"[A-Za-z]{2,}", path.read_text(encoding="utf-8", errors="replace"))
    return words


def build_store(path: Path, n_messages: int, words: list[str]) -> tuple[Any, float]:
    """A real Store holding ``n_messages`` messages in 1 000-message-per-batch inserts."""
    from assistant.storage.store import Store, now

    rng = random.Random(0)
    store = Store(path)
    start = time.perf_counter()
    per_conversation = 100
    n_conversations = n_messages // per_conversation
    stamp = now()
    store.db["conversations"].insert_all(
        (
            {
                "id": i + 1,
                "title": f"conversation {i + 1}",
                "model": "bench",
                "system": "",
                "created": stamp,
                "updated": stamp,
            }
            for i in range(n_conversations)
        ),
        batch_size=1000,
    )

    def messages() -> Any:
        for i in range(n_messages):
            size = rng.randint(8, 80)
            at = rng.randrange(len(words) - size)
            yield {
                "conversation_id": i // per_conversation + 1,
                "role": ("user", "assistant")[i % 2],
                "content": " ".join(words[at : at + size]),
                "model": "bench",
                "escalated": 0,
                "route": "",
                "complete": 1,
                "finish_reason": "stop",
                "created": stamp,
            }

    with store.db.conn:
        store.db["messages"].insert_all(
            tqdm(
                messages(), total=n_messages, desc="store: 100k messages", unit="msg", file=sys.stderr, mininterval=1.0
            ),
            batch_size=1000,
        )
    return store, time.perf_counter() - start


def search_rows(quick: bool) -> list[dict[str, Any]]:
    from assistant.config import data_dir

    n_messages, rounds = 100_000, (3 if quick else 15)
    words = corpus_words()
    store, build_s = build_store(data_dir() / "search.db", n_messages, words)
    counts = Counter(w.lower() for w in words)
    ranked = [w for w, _ in counts.most_common()]
    queries = {
        "very common word": ranked[2],
        "common word": ranked[50],
        "mid-frequency word": ranked[400],
        "rare word": ranked[min(3000, len(ranked) - 1)],
        "two words": f"{ranked[60]} {ranked[300]}",
        "absent word": "xylophonequark",
    }
    fts: dict[str, list[float]] = {k: [] for k in queries}
    like: dict[str, list[float]] = {k: [] for k in queries}
    hits: dict[str, int] = {}
    store.search("warm")  # open the index pages once
    for i in tqdm(range(rounds), desc="store: search", unit="round", file=sys.stderr):
        for label, query in queries.items():
            pair = [
                ("fts", lambda q=query: store.search(q, limit=50)),
                ("like", lambda q=query: like_search(store, q, 50)),
            ]
            for kind, fn in pair if i % 2 == 0 else reversed(pair):
                start = time.perf_counter()
                found = fn()
                (fts if kind == "fts" else like)[label].append(1000 * (time.perf_counter() - start))
                if kind == "fts":
                    hits[label] = len(found)
    matches = {
        label: store.db.execute(
            "select count(*) from messages_fts where messages_fts match ?", [" ".join(f'"{t}"' for t in q.split())]
        ).fetchone()[0]
        for label, q in queries.items()
    }
    store.close()
    all_fts = [x for v in fts.values() for x in v]
    all_like = [x for v in like.values() for x in v]
    overall, base = summary(all_fts), summary(all_like)
    rows = [
        row(
            BENCH,
            "FTS search over 100k messages (median)",
            overall["median"],
            "ms",
            baseline=base["median"],
            ratio=ratio(overall["median"], base["median"]),
            target="< 50 ms",
            notes=f"Store.search (FTS5, bm25 rank, limit 50) vs LIKE scan; {spread(all_fts, ' ms')}; "
            f"{len(queries)} query kinds x {rounds} rounds",
            **overall,
        ),
        row(
            BENCH,
            "FTS search over 100k messages (p95)",
            percentile(all_fts, 95),
            "ms",
            baseline=percentile(all_like, 95),
            ratio=ratio(percentile(all_fts, 95), percentile(all_like, 95)),
            target="< 50 ms",
            notes=f"slowest kind: {max(fts, key=lambda k: summary(fts[k])['median'])}",
        ),
    ]
    for label, query in queries.items():
        s = summary(fts[label])
        rows.append(
            row(
                BENCH,
                f"search: {label}",
                s["median"],
                "ms",
                baseline=summary(like[label])["median"],
                ratio=ratio(s["median"], summary(like[label])["median"]),
                notes=f"{query!r}: {matches[label]} matching messages; {spread(fts[label], ' ms')}",
                **s,
            )
        )
    rows.append(
        row(
            BENCH,
            "building the 100k-message store",
            build_s,
            "s",
            notes=f"insert_all in batches of 1000 with the FTS triggers on; {n_messages / build_s:.0f} msg/s",
        )
    )
    return rows


def like_search(store: Any, query: str, limit: int) -> list[dict[str, Any]]:
    """The baseline: what search would cost without the FTS index."""
    terms = query.split()
    where = " and ".join("content like ?" for _ in terms)
    sql = f"select * from messages where {where} order by id desc limit ?"
    return list(store.db.query(sql, [f"%{t}%" for t in terms] + [limit]))


def run(quick: bool) -> list[dict[str, Any]]:
    with bench_home():
        return persistence_rows(quick) + search_rows(quick)


if __name__ == "__main__":
    sys.exit(cli(run, "bench_store"))
