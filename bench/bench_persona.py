"""Personas: distilling a prompted persona into a student that needs no prompt (issue 14's targets).

Full mode runs ``distill persona`` end to end on a 10-fact helpdesk persona (fictional facts the
base model cannot know) and measures, on hand-written held-out questions whose phrasings the tool
never generates: the student without the context vs the teacher (the base model with it) vs the
base without it; general retention vs the base on the bundled tasks; the run's wall time; the
first-turn TTFT of the prompted persona with a ~1,000-token context vs the distilled student; and
the student's decode speed vs the base's. Quick mode measures only the TTFT of a ~1,000-token
prompted context against no context (what a distilled persona saves), in seconds.
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


def distill_rows(home: Path) -> list[dict[str, Any]]:
    from assistant.chat import persona as personas
    from assistant.cli.distill import adopt, persona_source
    from assistant.models.registry import embedded_model_path
    from distill_tools import persona

    (home / "facts.md").write_text(FACTS)
    personas.save(personas.Persona("pip", system=SYSTEM, contexts=[personas.ContextFile("facts.md", FACTS)]))
    tasks = home / "heldout.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": q, "answers": a}) + "\n" for q, a in HELDOUT))
    start = time.perf_counter()
    s = persona.run(persona_source("pip"), eval_tasks=str(tasks), adopt=adopt)
    wall = time.perf_counter() - start
    scores = s["scores"]
    teacher, student, base = (
        scores[k] for k in ("teacher (base + context)", "student (no context)", "base (no context)")
    )
    n = s["checkable_questions"]
    table = (
        f"teacher with context {teacher['checkable'] * n:.0f}/{n}, "
        f"student without {student['checkable'] * n:.0f}/{n}, base without {base['checkable'] * n:.0f}/{n}; "
        f"KL student {student['mean_kl']:.3f} vs base {base['mean_kl']:.3f}, "
        f"top-1 {student['top1_agreement']:.0%} vs {base['top1_agreement']:.0%}"
    )
    general = s["general"]

    return [
        row(
            BENCH,
            "persona student vs prompted teacher (held-out questions)",
            student["checkable"] * 100,
            "%",
            baseline=teacher["checkable"] * 100,
            ratio=student["vs_teacher"],
            target=">= 0.9x",
            notes=table,
        ),
        row(
            BENCH,
            "persona student general retention vs base",
            general["student"] * 100,
            "%",
            baseline=general["base"] * 100,
            ratio=general["retention"],
            target=">= 0.95x",
            notes="bundled general tasks, both without context",
        ),
        row(
            BENCH,
            "distill persona wall time",
            wall / 60,
            "min",
            target="<= 20 min",
            notes=f"{s['context_tokens']}-token context, {s['train_sequences']} sequences, {s['steps']} steps; "
            f"stages {s['timings_s']}",
        ),
        decode_row(embedded_model_path(), Path(s["gguf"])),
        *ttft_rows(embedded_model_path(), Path(s["gguf"])),
    ]


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
                    notes="full mode only (runs `distill persona`, minutes)",
                ),
            ]
        return distill_rows(home)


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_persona"))
