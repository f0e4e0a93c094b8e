"""Run every ``bench/bench_*.py`` module, print one table, write bench/results/.

``python -m bench [--quick] [--only NAME ...] [--out DIR]``. Each module runs in its own
Python process (its memory, loaded models and any crash stay its own); a module that fails,
crashes or times out becomes an ``error`` row and the run goes on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    RESULTS_DIR,
    ROOT,
    describe,
    error_row,
    machine,
    normalise,
    text_table,
    threads,
    write_results,
)

BENCH_DIR = Path(__file__).resolve().parent
TIMEOUT_S = {"quick": 600, "full": 3600}


def discover() -> list[str]:
    """Module names of every benchmark, e.g. ``bench_decode``."""
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def select(modules: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return modules
    wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
    unknown = wanted - {m.removeprefix("bench_") for m in modules}
    if unknown:
        known = ", ".join(m.removeprefix("bench_") for m in modules)
        raise SystemExit(f"bench: error: unknown benchmark(s) {', '.join(sorted(unknown))} (known: {known})")
    return [m for m in modules if m.removeprefix("bench_") in wanted]


def run_child(module: str, quick: bool, rows_file: Path) -> int:
    """Inside the child process: import the module, run it, write its rows as JSON."""
    topic = module.removeprefix("bench_")
    try:
        rows = [normalise(r, topic) for r in importlib.import_module(f"bench.{module}").run(quick)]
        status = 0
    except Exception as exc:  # a failing benchmark is a row, not a crash of the run
        traceback.print_exc()
        rows = [error_row(topic, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])]
        status = 1
    rows_file.write_text(json.dumps(rows, default=str))
    return status


def run_module(module: str, quick: bool, timeout_s: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one module in a subprocess; its output goes to our stderr, its rows come back as JSON."""
    topic = module.removeprefix("bench_")
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as tmp:
        rows_file = Path(tmp) / "rows.json"
        command = [PYTHON, "-m", "bench.run", "--child", module, "--rows-file", str(rows_file)]
        command += ["--quick"] if quick else []
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            code = None
        elapsed = time.perf_counter() - start
        if rows_file.exists():
            rows = json.loads(rows_file.read_text())
        elif code is None:
            rows = [error_row(topic, f"timed out after {timeout_s:.0f} s")]
        else:
            rows = [error_row(topic, f"the benchmark process exited with code {code} before reporting")]
    if not rows:
        rows = [error_row(topic, "the benchmark returned no rows")]
    status = "ok" if code == 0 else "timeout" if code is None else f"failed ({code})"
    return rows, {"elapsed_s": round(elapsed, 1), "status": status}


def save_partial(
    out_dir: Path, rows: list[dict[str, Any]], machine_info: dict[str, Any], status: dict[str, Any], quick: bool
) -> None:
    """The rows so far, so that nothing measured is lost if the run stops early."""
    from assistant.storage.files import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"mode": "quick" if quick else "full", "machine": machine_info, "modules": status, "rows": rows}
    atomic_write_text(out_dir / "partial.json", json.dumps(document, indent=2, default=str))


def render(source: Path, out_dir: Path) -> int:
    """Rewrite latest.* (and a timestamped copy) from a saved JSON document."""
    document = json.loads(source.read_text())
    rows = [normalise(r, r.get("benchmark") or "?") for r in document["rows"]]
    write_results(
        rows,
        document["machine"],
        out_dir,
        quick=document.get("mode") == "quick",
        elapsed_s=document.get("elapsed_s", 0.0),
        modules=document.get("modules"),
    )
    print(text_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks, write bench/results/.")
    parser.add_argument("--quick", action="store_true", help="few repetitions, short answers (a couple of minutes)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. decode store)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default bench/results)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per benchmark module")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp threads, product and baselines alike (default: physical cores)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="rewrite the tables and plots from a saved results/partial JSON file and exit",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child, args.quick, args.rows_file)
    if args.render:
        return render(args.render, args.out)
    modules = discover()
    if args.list:
        print("\n".join(m.removeprefix("bench_") for m in modules))
        return 0
    modules = select(modules, args.only)
    if args.threads:
        os.environ["ASSISTANT_THREADS"] = str(args.threads)
    timeout_s = args.timeout or TIMEOUT_S["quick" if args.quick else "full"]
    machine_info = machine()
    machine_info["llama_threads"] = threads()
    print(f"bench: {len(modules)} benchmark(s), {'quick' if args.quick else 'full'} mode", file=sys.stderr)
    print(f"bench: {describe(machine_info)}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    status: dict[str, Any] = {}
    start = time.perf_counter()
    for i, module in enumerate(modules, 1):
        print(f"bench: [{i}/{len(modules)}] {module} …", file=sys.stderr, flush=True)
        module_rows, status[module] = run_module(module, args.quick, timeout_s)
        rows += module_rows
        save_partial(args.out, rows, machine_info, status, args.quick)
        print(
            f"bench: [{i}/{len(modules)}] {module} {status[module]['status']} in {status[module]['elapsed_s']} s",
            file=sys.stderr,
            flush=True,
        )
    elapsed = time.perf_counter() - start
    machine_info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    written = write_results(  # latest.* is the whole run's: a run of some benchmarks (--only) leaves it alone
        rows, machine_info, args.out, quick=args.quick, elapsed_s=elapsed, modules=status, latest=not args.only
    )
    (args.out / "partial.json").unlink(missing_ok=True)
    print(text_table(rows))
    print(
        f"\nbench: {len(rows)} rows in {elapsed:.0f} s; wrote {', '.join(str(p) for p in written[:2])}"
        f" (+{len(written) - 2} more)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
