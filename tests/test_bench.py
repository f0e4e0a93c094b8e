"""The benchmark runner completes and writes its results (figures are reported, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1600)
def test_quick_bench_completes_and_writes_results(tmp_path: Path) -> None:
    """The whole ``python -m bench --quick`` (every benchmark, ~3 min): each module finishes, no error rows."""
    out = tmp_path / "results"
    # one llama.cpp thread: the figures are not checked here, and on a busy 2-core machine a
    # thread per core makes llama.cpp's spin barriers stall, so the run time would be unbounded
    env = os.environ | {"ASSISTANT_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads((out / "latest.json").read_text())
    rows = document["rows"]
    from bench.run import discover

    assert set(document["modules"]) == set(discover())
    errors = [(r["benchmark"], r.get("notes")) for r in rows if r["metric"] == "error"]
    assert not errors, errors
    assert all(module["status"] == "ok" for module in document["modules"].values()), document["modules"]
    by_metric = {r["metric"]: r for r in rows}
    persistence = by_metric["persistence cost of a streamed answer (250 ms flush)"]
    search = by_metric["FTS search over 100k messages (median)"]
    streaming = by_metric["p95 while streaming"]  # the answer was still streaming while keys landed
    assert isinstance(streaming["value"], float) and streaming["value"] > 0, streaming
    for r in (persistence, search):
        assert isinstance(r["value"], float) and r["value"] > 0
        assert r["met"] in (True, False)  # the target was checked, whatever the outcome on this machine
        assert r["min"] <= r["median"] <= r["max"]
    assert search["baseline"] > 0 and search["ratio"] == pytest.approx(search["value"] / search["baseline"])
    machine = document["machine"]
    assert machine["cores_logical"] >= 1 and machine["ram_gib"] > 0 and machine["versions"]["llama-cpp-python"]
    markdown = (out / "latest.md").read_text()
    assert "| store | FTS search over 100k messages (median) |" in markdown
    assert len(list(out.glob("2*-quick.json"))) == 1  # the timestamped copy
    assert "FTS search over 100k messages" in proc.stdout  # the printed table


def test_failing_module_becomes_an_error_row() -> None:
    from bench.run import run_module

    rows, status = run_module("bench_does_not_exist", quick=True, timeout_s=60)
    assert status["status"] == "failed (1)"
    assert [(r["benchmark"], r["metric"], r["met"]) for r in rows] == [("does_not_exist", "error", False)]
    assert "ModuleNotFoundError" in rows[0]["notes"]


def test_targets_are_checked_against_ratio_or_value() -> None:
    from bench.common import error_row, met, normalise, row

    assert met(normalise(row("x", "ratio", 1.0, ratio=0.98, target=">= 0.97x"), "x")) is True
    assert met(normalise(row("x", "ratio", 1.0, ratio=0.9, target=">= 0.97x"), "x")) is False
    assert met(normalise(row("x", "latency", 60.0, "ms", target="< 50 ms"), "x")) is False
    assert met(normalise(row("x", "count", 0, target="== 0"), "x")) is True
    assert met(normalise(row("x", "info", 3.0), "x")) is None
    failed = error_row("x", "RuntimeError: boom")
    assert failed["metric"] == "error" and failed["met"] is False and failed["value"] is None


def test_unknown_benchmark_is_one_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nosuchthing"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "unknown benchmark(s) nosuchthing" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_of_some_benchmarks_keeps_the_whole_runs_latest_results(tmp_path: Path) -> None:
    """``--only``: its own timestamped results; latest.* (what README's table comes from) stays the whole run's."""
    (tmp_path / "latest.md").write_text("the whole run\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "curve", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "latest.md").read_text() == "the whole run\n" and not (tmp_path / "latest.json").exists()
    [stamped] = tmp_path.glob("*-quick.md")
    assert "default recipe retention vs training tokens" in stamped.read_text()


@pytest.mark.timeout(300)
def test_ui_bench_finishes_when_the_answer_ends_before_enter_returns(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The UI measurement on a deliberately fast path: a one-token answer is over before a keystroke lands."""
    import asyncio

    from bench import bench_ui

    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    measured = asyncio.run(bench_ui._measure(quick=True, max_tokens=1))
    assert len(measured["idle"]) == 20 and len(measured["ui_speeds"]) == 3
    assert len(measured["streaming"]) <= 1  # one token leaves at most one keystroke inside the answer
    rows = bench_ui._rows(measured)
    assert {r["metric"] for r in rows} >= {"p95 while streaming", "decode tokens/s inside the UI"}
