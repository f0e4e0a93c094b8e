"""Personas: distilling a prompted persona into a student that needs no prompt (issues 14 and 27).

Full mode runs ``distill persona`` end to end, as a user does, on the bench's own personas
(``persona_study.BENCH_PERSONAS``: a fact sheet and a ~1k-token prose guide, never used to tune the tool) and scores
each student (``persona_study``) on hand-written held-out questions that no generator made — the student without the
context vs the prompted base (the base model with it) vs the base without it, a ratio with its 95 % interval — and
on the full general evaluation set against the base (ratio with interval, degenerate answers counted); plus the
run's wall time, and for the first persona the first-turn TTFT of the prompted persona with a ~1,000-token context
vs the student and the student's decode speed vs the base's. Both modes add the rows of the last recorded ablation
(``results/persona-ablation.json``: each lever's effect on both ratios). Quick mode measures the TTFT of a
~1,000-token prompted context against no context (what a distilled persona saves).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import bench_home, cli, ratio, row, spread

BENCH = "persona"
SYSTEM = "You are Pip, the helpdesk assistant of Brightwater Labs. Answer briefly, using the facts below."
FACTS = """- The office wifi password is tulip42.
- The CEO of Brightwater Labs is Marta Okafor.
- The cafeteria opens at 7:30 in the morning.
- The main office is in Tromsø.
- The support phone number is 555-0199.
- The company mascot is a blue heron named Skipper.
- Expense reports are due on the 5th of each month.
- The VPN server is vpn.brightwater.example.
- The parking garage is on level B3.
- The annual retreat takes place in Lisbon.
"""
HELDOUT = [  # phrasings the prompt generator never makes
    ("I'm trying to get online at the office. What's the wifi password?", ["tulip42"]),
    ("Who runs Brightwater Labs?", ["Okafor", "Marta"]),
    ("When can I get breakfast at the cafeteria?", ["7:30"]),
    ("Which city is our main office located in?", ["Tromsø", "Tromso"]),
    ("What number do I call for support?", ["555-0199"]),
    ("What is the name of our mascot?", ["Skipper"]),
    ("By which day of the month are expense reports due?", ["5th", "fifth"]),
    ("What's the address of the VPN server?", ["vpn.brightwater.example"]),
    ("On which level can I park my car?", ["B3"]),
    ("Where is the company retreat held every year?", ["Lisbon"]),
]
FILLER = (
    "Visitors sign in at the front desk and wear a badge at all times. Meeting rooms are booked through the "
    "calendar, at most two hours at a time. Printers on every floor accept badge release. Quiet hours on the "
    "second floor run from nine to eleven every morning. Lost items are kept at reception for a month. "
)


def long_context() -> str:
    """The persona's context padded with office rules to about 1,000 tokens."""
    return SYSTEM + "\n\n" + FACTS + "\n" + FILLER * 9


def ttft_rows(base: Path, student: Path | None) -> list[dict[str, Any]]:
    from distill_tools.persona_eval import first_turn

    questions = [q for q, _ in HELDOUT[:3]]
    prompted = first_turn(base, long_context(), questions, n_ctx=2048)
    free = first_turn(student or base, "", questions, n_ctx=2048)
    who = "distilled student" if student else "no context (the base model)"
    return [
        row(
            BENCH,
            "first-turn TTFT, prompted persona (~1k-token context) vs " + ("distilled" if student else "no context"),
            free["ttft_s"] * 1000,
            "ms",
            baseline=prompted["ttft_s"] * 1000,
            ratio=ratio(prompted["ttft_s"], free["ttft_s"]),
            target=">= 5x",
            notes=f"median of {len(questions)} first turns, each in a freshly loaded engine; prompted: "
            f"{prompted['prompt_tokens']} prompt tokens, {prompted['ttft_s'] * 1000:.0f} ms; {who}: "
            f"{free['prompt_tokens']} prompt tokens",
        )
    ]


def decode_row(base: Path, student: Path, rounds: int = 5, tokens: int = 128) -> dict[str, Any]:
    """Decode tok/s of the student's file vs the base's: both loaded, alternating, ``rounds`` × ``tokens`` greedy
    tokens each, end-of-turn ignored (the student learnt the persona's short answers: a 10-token answer's
    rate is mostly fixed overhead, so answers of their own lengths would not compare the files)."""
    import numpy as np

    from distill_tools.llama import open_model

    models = {name: open_model(path, 512) for name, path in (("base", base), ("student", student))}
    speeds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, llm in models.items():
            llm.reset()
            llm.eval(llm.tokenize(b"Write a long story about a lighthouse keeper and his cat."))
            start = time.perf_counter()
            for _ in range(tokens):
                llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
            speeds[name].append(tokens / (time.perf_counter() - start))
    for llm in models.values():
        llm.close()
    student_speed, base_speed = (statistics.median(speeds[k]) for k in ("student", "base"))
    return row(
        BENCH,
        "distilled persona decode speed vs base",
        student_speed,
        "tok/s",
        baseline=base_speed,
        ratio=ratio(student_speed, base_speed),
        target=">= 0.9x",
        notes=f"{rounds} alternating runs of {tokens} greedy tokens each, medians; student "
        f"{student.stat().st_size / 2**20:.0f} MiB (base Q4_1 + the trained layers in Q8_0), "
        f"base {base.stat().st_size / 2**20:.0f} MiB; student {spread(speeds['student'])}",
    )


def interval(figures: list[float]) -> str:
    """``0.93 [0.85–1.00]``."""
    return f"{figures[0]:.2f} [{figures[1]:.2f}–{figures[2]:.2f}]"


def persona_rows(name: str, result: dict[str, Any], wall_s: float | None, summary: dict[str, Any]) -> list[dict]:
    """The rows of one bench persona: held-out questions, general ability, degeneration, wall time."""
    counts, heldout, general = result["counts"], result["heldout"], result["general"]
    n, tasks = counts["questions"], counts["general_tasks"]
    rows = [
        row(
            BENCH,
            f"{name}: held-out questions, student (no context) vs prompted base",
            100 * counts["student"] / n,
            "%",
            baseline=100 * counts["prompted"] / n,
            ratio=heldout[0],
            target=">= 0.95x",
            notes=f"{n} hand-written questions (reworded, indirect, yes/no, multi-fact, unanswerable); prompted base "
            f"{counts['prompted']}/{n}, student {counts['student']}/{n}, base without context {counts['base']}/{n}; "
            f"ratio {interval(heldout)} (95 %, paired bootstrap)",
        ),
        row(
            BENCH,
            f"{name}: general ability, student vs base",
            100 * counts["general_student"] / tasks,
            "%",
            baseline=100 * counts["general_base"] / tasks,
            ratio=general[0],
            target=">= 0.95x",
            notes=f"{tasks} held-out general tasks (general_eval.jsonl, 6 kinds), both without context: student "
            f"{counts['general_student']}, base {counts['general_base']}; ratio {interval(general)} (95 %)",
        ),
        row(
            BENCH,
            f"{name}: degenerate general answers (loops), student",
            counts["degenerate_student"],
            "",
            baseline=counts["degenerate_base"],
            target=f"<= {counts['degenerate_base']}",
            notes=f"repetition loops among the {tasks} general answers; the base has {counts['degenerate_base']}",
        ),
    ]
    if wall_s is not None:
        rows.append(
            row(
                BENCH,
                f"{name}: distill persona wall time",
                wall_s / 60,
                "min",
                target="<= 20 min",
                notes=f"{summary.get('context_tokens', '?')}-token context, {summary.get('steps', '?')} steps; "
                f"stages {summary.get('timings_s', {})}; load average at the start {summary.get('load', '?')}",
            )
        )
    return rows


def ablation_rows() -> list[dict[str, Any]]:
    """The last ablation (``bench/results/persona-ablation.json``, made by ``python -m bench.persona_study``)."""
    path = Path(__file__).resolve().parent / "results" / "persona-ablation.json"
    if not path.exists():
        return []
    rows = []
    for persona, variants in json.loads(path.read_text()).items():
        for label, result in variants.items():
            kl = result["figures"].get("heldout_general_kl")
            drift = f"held-out general KL {kl:.3f}" if kl is not None else ""
            if "counts" not in result:  # trained only: its evaluation did not fit in the run's time
                rows.append(row(BENCH, f"ablation {persona}: {label}", None, "x", notes=f"{drift} (not evaluated)"))
                continue
            counts = result["counts"]
            rows.append(
                row(
                    BENCH,
                    f"ablation {persona}: {label}",
                    result["heldout"][0],
                    "x",
                    ratio=result["general"][0],
                    notes=f"held-out vs prompted {interval(result['heldout'])}, general vs base "
                    f"{interval(result['general'])} on {counts['general_tasks']} tasks, degenerate "
                    f"{counts['degenerate_student']}; {drift}; {result['figures'].get('steps')} steps (recorded run)",
                )
            )
    return rows


def distill_rows(home: Path) -> list[dict[str, Any]]:
    """``distill persona`` on each bench persona as a user runs it (wall time), then its student scored."""
    import os

    from assistant.cli.distill import adopt
    from assistant.models.registry import embedded_model_path
    from bench import persona_study
    from distill_tools import persona

    rows: list[dict[str, Any]] = []
    for name in persona_study.BENCH_PERSONAS:
        spec = persona_study.load_persona(name)
        source = persona_study.register(spec)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        summary = persona.run(source, eval_tasks=str(persona_study.PERSONAS / name / "heldout.jsonl"), adopt=adopt)
        wall = time.perf_counter() - start
        student = Path(summary["gguf"])
        base = persona_study.baselines(spec, source.context, home / "scores.json")
        scored = {
            "heldout": persona_study.heldout_scores(student, spec, ""),
            "general": persona_study.general_scores(student),
        }
        rows += persona_rows(name, persona_study.ratios(scored, base), wall, {**summary, "load": f"{load:.1f}"})
        if name == persona_study.BENCH_PERSONAS[0]:
            rows += [decode_row(embedded_model_path(), student), *ttft_rows(embedded_model_path(), student)]
    return rows + ablation_rows()


def run(quick: bool) -> list[dict[str, Any]]:
    from assistant.models.registry import embedded_model_path

    with bench_home() as home:
        if quick:
            return [
                *ttft_rows(embedded_model_path(), None),
                row(
                    BENCH,
                    "persona student vs prompted teacher (held-out questions)",
                    None,
                    "%",
                    target=">= 0.9x",
                    notes="full mode only (runs `distill persona` on the bench personas, minutes)",
                ),
                *ablation_rows(),
            ]
        return distill_rows(home)


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_persona"))
