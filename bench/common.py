"""Shared benchmark helpers: machine description, repeated timing, rows, tables, result files, plots.

A row is a dict with the keys ``benchmark, metric, value, unit, baseline, ratio, target, notes``
(``baseline``/``ratio``/``target`` may be None) and optionally:

- ``met``: a bool the module decided itself (otherwise derived from ``target``);
- ``min``/``median``/``max``/``n``: the spread behind ``value``;
- ``plot``: ``{"title", "xlabel", "ylabel", "x": [...], "series": {label: [y, ...]}}`` drawn as a line chart.

``target`` is a string: an operator, a number and a unit, e.g. ``">= 0.97x"``, ``"<= 1.2x"``,
``"< 1.5 s"``, ``"< 50 ms"``, ``"== 0"``. A target ending in ``x`` (or ``×``) is checked against
``ratio``, any other against ``value`` (in the row's own unit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable
ROW_KEYS = ("benchmark", "metric", "value", "unit", "baseline", "ratio", "target", "notes")
VERSIONED = ("llama-cpp-python", "torch", "transformers", "textual", "sqlite-utils", "numpy", "assistant")


# -- the machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Cores, CPU model, RAM, OS, Python and the versions that matter for the figures."""
    import sqlite3

    import psutil

    return {
        "cpu_model": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "ram_available_gib": round(psutil.virtual_memory().available / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": {p: _version(p) for p in VERSIONED},
        "git_commit": _git_commit(),
    }


def describe(m: dict[str, Any]) -> str:
    """One line describing the machine."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (
        f"{m['cpu_model']}, {m['cores_physical']} physical / {m['cores_logical']} logical cores, "
        f"{m['ram_gib']} GiB RAM, load {'/'.join(map(str, m['load_average']))}; {m['os']}; "
        f"Python {m['python']}, SQLite {m['sqlite']}; {versions}"
    )


# -- timing
def summary(values: list[float]) -> dict[str, float]:
    """min / median / max / n of some measurements."""
    if not values:
        return {"min": math.nan, "median": math.nan, "max": math.nan, "n": 0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    """'min/median/max = a/b/c unit (n=…)' for the notes column."""
    s = summary(values)
    return f"min/med/max {s['min']:.{digits}g}/{s['median']:.{digits}g}/{s['max']:.{digits}g}{unit} (n={s['n']})"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def repeat(fn: Callable[[], Any], n: int, warmup: int = 0) -> list[float]:
    """Wall seconds of ``n`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(n)]


def interleave(candidates: dict[str, Callable[[], Any]], n: int) -> dict[str, list[Any]]:
    """Call each candidate ``n`` times, alternating the order every round (ABAB… then BA…).

    Returns each candidate's results in call order; side-by-side runs share the machine's
    noise, so their ratio is steadier than separate runs' ratio.
    """
    names = list(candidates)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(n):
        for name in names if i % 2 == 0 else reversed(names):
            results[name].append(candidates[name]())
    return results


# -- rows
def row(
    benchmark: str,
    metric: str,
    value: float | None,
    unit: str = "",
    *,
    baseline: float | None = None,
    ratio: float | None = None,
    target: str | None = None,
    notes: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """A result row; ``extra`` may hold ``met``, ``min``/``median``/``max``/``n``, ``plot``…"""
    return {
        "benchmark": benchmark,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "notes": notes,
        **extra,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


_TARGET = re.compile(r"^\s*(>=|<=|==|≥|≤|<|>|=)\s*([-+0-9.eE]+)\s*(.*)$")


def met(r: dict[str, Any]) -> bool | None:
    """Whether a row meets its target (None when it has none or it cannot be checked)."""
    if isinstance(r.get("met"), bool):
        return r["met"]
    target = r.get("target")
    if not isinstance(target, str) or not (m := _TARGET.match(target)):
        return None
    op, number, unit = m.group(1), float(m.group(2)), m.group(3).strip()
    subject = r.get("ratio") if unit in ("x", "×") else r.get("value")
    if not isinstance(subject, (int, float)) or isinstance(subject, bool) or math.isnan(subject):
        return None
    return {
        ">=": subject >= number,
        "≥": subject >= number,
        "<=": subject <= number,
        "≤": subject <= number,
        "<": subject < number,
        ">": subject > number,
        "==": subject == number,
        "=": subject == number,
    }[op]


def normalise(r: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """Fill missing keys and compute ``met``."""
    out = {key: r.get(key) for key in ROW_KEYS} | {k: v for k, v in r.items() if k not in ROW_KEYS}
    out["benchmark"] = out["benchmark"] or benchmark
    out["unit"] = out["unit"] or ""
    out["notes"] = out["notes"] or ""
    out["met"] = met(out)
    return out


def error_row(benchmark: str, message: str) -> dict[str, Any]:
    return normalise(row(benchmark, "error", None, notes=message, met=False), benchmark)


# -- formatting
def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}e}"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def _with_unit(value: Any, unit: str) -> str:
    text = fmt(value)
    return f"{text} {unit}".strip() if value is not None and unit else str(text)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    header = ["benchmark", "metric", "value", "baseline", "ratio", "target", "met?"]
    body = [
        [
            str(r["benchmark"]),
            str(r["metric"]),
            _with_unit(r["value"], r["unit"]),
            _with_unit(r["baseline"], r["unit"]),
            f"{fmt(r['ratio'])}x" if r["ratio"] is not None else "-",
            str(r["target"]) if r["target"] is not None else "-",
            fmt(r.get("met")),
        ]
        for r in rows
    ]
    return [header, *body]


def text_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    cells = table_rows(rows)
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], with_notes: bool = True) -> str:
    cells = table_rows(rows)
    if with_notes:
        cells[0].append("notes")
        for line, r in zip(cells[1:], rows):
            line.append(str(r.get("notes") or ""))
    escape = [[c.replace("|", "\\|") for c in line] for line in cells]
    lines = ["| " + " | ".join(line) + " |" for line in escape]
    lines.insert(1, "|" + "|".join("---" for _ in cells[0]) + "|")
    return "\n".join(lines)


# -- results
def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def write_results(
    rows: list[dict[str, Any]],
    machine_info: dict[str, Any],
    out_dir: Path,
    *,
    quick: bool,
    elapsed_s: float,
    modules: dict[str, Any] | None = None,
    latest: bool = True,
) -> list[Path]:
    """Timestamped results and, unless ``latest`` is False (a partial run), latest.json/.md (plus plots if
    matplotlib is installed)."""
    from assistant.storage.files import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if quick else "")
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine_info,
        "modules": modules or {},
        "rows": rows,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False, default=_json_default)
    try:
        plots = write_plots(rows, out_dir, stamp, latest)
    except Exception as exc:  # a plot must never cost the figures
        print(f"bench: plots skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        plots = []
    md = [
        f"# Benchmarks ({document['mode']}, {document['created']}, {elapsed_s:.0f} s)",
        "",
        f"Machine: {describe(machine_info)}",
        "",
        markdown_table(rows),
        "",
    ]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    written = []
    for name in ("latest", stamp) if latest else (stamp,):
        for suffix, content in ((".json", text), (".md", "\n".join(md) + "\n")):
            path = out_dir / f"{name}{suffix}"
            atomic_write_text(path, content)
            written.append(path)
    return written + plots


def write_plots(rows: list[dict[str, Any]], out_dir: Path, stamp: str, latest: bool = True) -> list[Path]:
    """One line chart per row with a ``plot`` and a chart of all ratios; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths: list[Path] = []
    for r in rows:
        spec = r.get("plot")
        if not isinstance(spec, dict) or not spec.get("series"):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for label, ys in spec["series"].items():
            xs = spec.get("x") or list(range(1, len(ys) + 1))
            ax.plot(xs[: len(ys)], ys, marker="o", label=label)
        ax.set_title(spec.get("title") or f"{r['benchmark']}: {r['metric']}")
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(spec.get("ylabel", r.get("unit", "")))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = re.sub(r"[^A-Za-z0-9]+", "-", f"{r['benchmark']}-{r['metric']}").strip("-").lower()
        for prefix in (stamp, "latest") if latest else (stamp,):
            path = out_dir / f"{prefix}-{name}.png"
            fig.savefig(path, dpi=110)
        paths.append(path)
        plt.close(fig)
    with_ratio = [r for r in rows if isinstance(r.get("ratio"), (int, float))]
    if with_ratio:
        fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(with_ratio) + 1.2))
        labels = [f"{r['benchmark']}: {r['metric']}"[:60] for r in with_ratio]
        colors = [
            "tab:green" if r.get("met") is True else "tab:red" if r.get("met") is False else "tab:gray"
            for r in with_ratio
        ]
        ax.barh(labels, [r["ratio"] for r in with_ratio], color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("ratio to baseline, log scale (green: target met, red: missed)")
        ax.invert_yaxis()
        fig.tight_layout()
        for prefix in (stamp, "latest") if latest else (stamp,):
            fig.savefig(out_dir / f"{prefix}-ratios.png", dpi=110)
        paths.append(out_dir / f"{prefix}-ratios.png")
        plt.close(fig)
    return paths


# -- environment for a benchmark
@contextlib.contextmanager
def bench_home() -> Iterator[Path]:
    """A throwaway ASSISTANT_HOME so benchmarks never touch the user's data."""
    saved = {k: os.environ.get(k) for k in ("ASSISTANT_HOME", "ASSISTANT_MODEL", "ASSISTANT_CONFIG")}
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as tmp:
        os.environ["ASSISTANT_HOME"] = tmp
        os.environ.pop("ASSISTANT_MODEL", None)
        os.environ.pop("ASSISTANT_CONFIG", None)
        try:
            yield Path(tmp)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120.0, every: float = 0.01) -> None:
    """Wait in the event loop until ``predicate()`` holds; after ``timeout`` s fail naming ``what``.

    Give it a predicate that cannot be missed (a counter that only grows, a finished worker), never a
    state that may come and go between two looks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        await asyncio.sleep(every)


def threads() -> int:
    """llama.cpp threads for product and baseline alike: ASSISTANT_THREADS, else the physical cores."""
    from assistant.models.engine import physical_cores

    return int(os.environ.get("ASSISTANT_THREADS") or 0) or physical_cores()


def cli(run: Callable[[bool], list[dict[str, Any]]], name: str) -> int:
    """Run one benchmark module alone and print its table (``python -m bench.bench_x [--quick]``)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--quick", action="store_true", help="few repetitions, short answers")
    args = parser.parse_args()
    topic = name.removeprefix("bench_")
    print(describe(machine()), file=sys.stderr)
    rows = [normalise(r, topic) for r in run(args.quick)]
    print(text_table(rows))
    for r in rows:
        if r["notes"]:
            print(f"- {r['benchmark']} / {r['metric']}: {r['notes']}")
    return 0
