"""Benchmarks: the product against its own ceiling (raw llama.cpp) and its baselines, side by side.

Run everything with ``python -m bench [--quick] [--only NAME ...]``; one topic alone with
``python -m bench.bench_<topic> [--quick]``. Each ``bench/bench_<topic>.py`` exposes
``run(quick: bool) -> list[dict]`` (see ``bench.common`` for the row format).
"""
