"""Your documents: retrieval quality on a corpus nobody here wrote, query latency at 100k passages, indexing speed.

1. Quality: Python's own language reference as it ships with the interpreter (``pydoc_data.topics``: 79 topics,
   ~465k characters), one file per topic, indexed by ``assistant.documents``; the questions in
   ``bench/retrieval_questions.jsonl`` (written for this bench, phrased as a user would) each name the topic that
   answers them. A question is answered when that topic, or a topic whose text contains that topic's text
   verbatim (``compound`` holds ``for``, ``specialnames`` holds ``customization`` …, found mechanically), is among
   the top 5 passages. Fusion, BM25 alone and vectors alone, with Wilson 95 % intervals and paired-bootstrap
   ratios.
2. Latency: the index grown to 100k passages (windows of ~200 words of the standard library's source, each with a
   real passage's vector jittered, in 1,000 synthetic files), ``search()`` p95 over the questions, end to end
   (query embedding included), wall and CPU time (the machine may be shared); BM25 and vectors alone beside it;
   the exact vector scan as search does it (single-threaded einsum) vs numpy's BLAS product, and sqlite-vec
   where this Python can load it.
3. Indexing: MB/s and passages/s of ``index_paths`` on the corpus, against embedding the same passages alone
   (the model's own cost). ``llm embed-multi`` (llm 0.36 is installed) has only OpenAI's embedding models here:
   every local plugin downloads its model at run time, which this machine cannot (nor may a private assistant).
"""

from __future__ import annotations

import json
import os
import re
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_home, cli, percentile, row

BENCH = "retrieval"
QUESTIONS = Path(__file__).resolve().parent / "retrieval_questions.jsonl"
TOP = 5


def write_corpus(folder: Path, names: list[str] | None = None) -> dict[str, set[str]]:
    """One ``.rst`` file per topic; each topic -> the topics that answer for it (itself and its containers)."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name in names or topics:
        (folder / f"{name}.rst").write_text(topics[name])
    accepted = {}
    for name, text in topics.items():
        body = text.split("\n", 3)[-1][:400]
        accepted[name] = {name} | {other for other, t in topics.items() if other != name and body in t}
    return accepted


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.config import database_path
    from assistant.documents import embedding
    from assistant.documents.chunking import chunks
    from assistant.documents.index import index_paths
    from assistant.documents.reader import Document, read
    from assistant.documents.search import search
    from assistant.storage.store import Store
    from distill_tools.general_eval import paired_ratio_interval, wilson

    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    with bench_home() as home:
        folder = home / "python-reference"
        from pydoc_data.topics import topics

        names = sorted(topics)
        if quick:  # the CI smoke run: 8 questions over their topics and a few others
            questions = questions[:8]
            wanted = {q["topic"] for q in questions}
            names = sorted(wanted | set(names[:6]))
        accepted = write_corpus(folder, names)
        store = Store(database_path())
        embedder = embedding.default()
        embedder.embed(["warm up"])

        # 3. indexing throughput, and the model's own cost on the same passages
        start = time.perf_counter()
        report = index_paths(store, [folder], embedder=embedder)
        index_s = time.perf_counter() - start
        texts = []
        for path in sorted(folder.iterdir()):
            doc = read(path)
            assert isinstance(doc, Document)
            texts += [f"{c.context}\n{c.text}" if c.context else c.text for c in chunks(doc.blocks)]
        texts = texts[:40] if quick else texts
        start = time.perf_counter()
        embedder.embed(texts)
        embed_s = time.perf_counter() - start
        mb = report.bytes / 1e6
        alone_s = embed_s * report.chunks / len(texts)  # the model alone on all the passages (quick: extrapolated)
        rows.append(
            row(
                BENCH,
                "indexing throughput (python reference)",
                mb / index_s,
                "MB/s",
                baseline=mb / alone_s,
                ratio=alone_s / index_s,
                notes=f"{report.added} files, {mb:.2f} MB, {report.chunks} passages in {index_s:.1f} s "
                f"({report.chunks / index_s:.1f} passages/s); baseline: embedding {len(texts)} of the same passages "
                f"alone {embed_s:.1f} s; llm embed-multi: no offline embedding model (see module doc)",
            )
        )
        rows.append(
            row(
                BENCH,
                "indexing passages/s",
                report.chunks / index_s,
                "passages/s",
                baseline=report.chunks / alone_s,
                ratio=alone_s / index_s,
            )
        )

        # 1. quality
        found: dict[str, list[bool]] = {}
        for mode in ("fusion", "bm25", "vector"):
            found[mode] = []
            for q in questions:
                hits = search(store, q["question"], limit=TOP, mode=mode)
                found[mode].append(any(Path(h.path).stem in accepted[q["topic"]] for h in hits))
        n = len(questions)
        for mode, label in (("fusion", "BM25 + vectors, RRF"), ("bm25", "BM25 alone"), ("vector", "vectors alone")):
            k = sum(found[mode])
            low, high = wilson(k, n)
            target = ">= 90 %" if mode == "fusion" else None
            rows.append(
                row(
                    BENCH,
                    f"top-5 hit rate, {label}",
                    100 * k / n,
                    "%",
                    target=target,
                    notes=f"{k}/{n}, 95 % CI {100 * low:.1f}-{100 * high:.1f} %; {len(names)} topics, "
                    f"{report.chunks} passages",
                    low=100 * low,
                    high=100 * high,
                    n=n,
                )
            )
        for other in ("bm25", "vector"):
            value, low, high = paired_ratio_interval(found["fusion"], found[other])
            rows.append(
                row(
                    BENCH,
                    f"fusion / {other} alone, hits (paired)",
                    value if sum(found[other]) else None,
                    "x",
                    notes=f"95 % CI {low:.2f}-{high:.2f} (bootstrap over the questions)",
                )
            )
        misses = [q["question"] for q, ok in zip(questions, found["fusion"], strict=True) if not ok]
        print(f"fusion misses: {misses}", file=sys.stderr)

        # 2. latency at scale
        target_n = 5_000 if quick else 100_000
        grow(store, target_n)
        rows += latency(store, questions, embedder, target_n, quick)
    return rows


def stdlib_words(limit: int = 4_000_000) -> list[str]:
    """Real English and code text nobody here wrote: the words of the standard library's modules, in order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    words: list[str] = []
    for path in sorted(lib.glob("*.py")) + sorted(lib.glob("*/*.py")):
        if path.parent.name in ("test", "tests", "idlelib") or len(words) > limit:
            continue
        words += re.findall(
            r"[A-Za-z_][A-Za-z0-9_]+|[^\sA-Za-z0-9_]", path.read_text(encoding="utf-8", errors="replace")
        )
    return words


def grow(store: Any, target_n: int) -> None:
    """Add synthetic files until the index holds ``target_n`` passages: each passage a window of ~200 words of the
    standard library's source (so words are spread as in a real corpus, not one text repeated), its vector a real
    passage's vector jittered (the scan's cost does not depend on what a vector means)."""
    from assistant.storage import documents as tables

    ids, _, blob = tables.vectors(store)
    vectors = np.frombuffer(blob, dtype=np.float16).reshape(len(ids), -1).astype(np.float32)
    words = stdlib_words(300_000 if target_n < 10_000 else 4_000_000)
    rng = np.random.default_rng(0)
    have, number = len(ids), 0
    while have < target_n:
        take = rng.integers(0, len(ids), min(100, target_n - have))
        jitter = vectors[take] + rng.normal(0, 0.02, (len(take), vectors.shape[1])).astype(np.float32)
        jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
        starts = rng.integers(0, len(words) - 300, len(take))
        pieces = [
            (1, 20, " ".join(words[int(at) : int(at) + 200]), "", jitter[i].astype(np.float16).tobytes())
            for i, at in enumerate(starts)
        ]
        tables.write_files(store, [tables.NewFile(f"/synthetic/{number:05d}.txt", "text", 1, 1, "", pieces)], [], "")
        have += len(take)
        number += 1


def latency(store: Any, questions: list[dict[str, Any]], embedder: Any, n: int, quick: bool) -> list[dict[str, Any]]:
    from assistant.documents import embedding
    from assistant.documents import search as search_module
    from assistant.storage import documents as tables

    rounds = 1 if quick else 3
    queries = [q["question"] for q in questions] * rounds
    search_module.search(store, "warm up the vector cache")
    times: dict[str, list[float]] = {"fusion": [], "bm25": [], "vector": []}
    cpu: list[float] = []
    for query in queries:
        for mode in times:
            start, start_cpu = time.perf_counter(), time.process_time()
            search_module.search(store, query, limit=TOP, mode=mode)
            times[mode].append(1000 * (time.perf_counter() - start))
            if mode == "fusion":
                cpu.append(1000 * (time.process_time() - start_cpu))
    embed_ms = []
    for query in queries[: len(questions)]:
        start = time.perf_counter()
        embedding.for_queries().embed([query])
        embed_ms.append(1000 * (time.perf_counter() - start))
    count, _ = tables.chunks_version(store)
    out = [
        row(
            BENCH,
            f"search p95 at {count // 1000}k passages, fusion",
            percentile(times["fusion"], 95),
            "ms",
            target="<= 50 ms",
            notes=f"median {percentile(times['fusion'], 50):.1f} ms over {len(queries)} queries, CPU time p95 "
            f"{percentile(cpu, 95):.1f} ms (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
            f"query embedding alone p95 {percentile(embed_ms, 95):.1f} ms; BM25 alone p95 "
            f"{percentile(times['bm25'], 95):.1f} ms, vectors alone p95 {percentile(times['vector'], 95):.1f} ms",
        ),
    ]
    # the vector scan itself: single-threaded einsum (what search does) vs numpy's BLAS matrix-vector product
    cache = search_module._vectors(store)
    vectors = embedder.embed([q["question"] for q in questions])
    mine, blas, mine_cpu, blas_cpu = [], [], [], []
    for vector in vectors:
        for fn, wall, cpu in (
            (lambda v: np.einsum("ij,j->i", cache.matrix, v), mine, mine_cpu),
            (lambda v: cache.matrix @ v, blas, blas_cpu),
        ):
            start, start_cpu = time.perf_counter(), time.process_time()
            scores = fn(vector)
            np.argpartition(-scores, TOP)[:TOP]
            wall.append(1000 * (time.perf_counter() - start))
            cpu.append(1000 * (time.process_time() - start_cpu))
    p_mine, p_blas = percentile(mine, 95), percentile(blas, 95)
    out.append(
        row(
            BENCH,
            f"exact vector scan p95 at {count // 1000}k, einsum (1 thread)",
            p_mine,
            "ms",
            baseline=p_blas,
            ratio=p_mine / p_blas,
            notes=f"baseline: numpy BLAS matrix @ vector (threaded); CPU time p95 {percentile(mine_cpu, 95):.1f} "
            f"vs {percentile(blas_cpu, 95):.1f} ms",
        )
    )
    out.append(sqlite_vec_row(cache.matrix, vectors, count, p_mine))
    return out


def sqlite_vec_row(matrix: np.ndarray, queries: np.ndarray, count: int, ours: float) -> dict[str, Any]:
    """sqlite-vec's vec0 KNN on the same vectors, if this Python's sqlite3 can load an extension."""
    import sqlite3

    metric = f"sqlite-vec vec0 KNN p95 at {count // 1000}k"
    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        return row(
            BENCH,
            metric,
            None,
            "ms",
            baseline=ours,
            notes="not measurable: this Python's sqlite3 is built without loadable extensions "
            "(no enable_load_extension), so sqlite-vec cannot load in the app either; numpy it is",
        )
    try:
        import sqlite_vec
    except ImportError:
        return row(BENCH, metric, None, "ms", notes="sqlite-vec is not installed")
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{matrix.shape[1]}])")
    conn.executemany(
        "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
        ((i + 1, m.astype(np.float32).tobytes()) for i, m in enumerate(matrix)),
    )
    times = []
    for q in queries:
        start = time.perf_counter()
        conn.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = ?", [q.tobytes(), TOP]).fetchall()
        times.append(1000 * (time.perf_counter() - start))
    p95 = percentile(times, 95)
    return row(BENCH, metric, p95, "ms", baseline=ours, ratio=p95 / ours, notes="baseline: numpy as search does it")


if __name__ == "__main__":
    sys.exit(cli(run, "bench_retrieval"))
