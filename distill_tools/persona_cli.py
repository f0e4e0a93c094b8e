"""``assistant distill persona NAME``: the command line of ``distill_tools.persona``.

Like ``cli``, this module loads with the assistant's command line: ``persona`` (and torch) only when the command
runs. The persona itself comes from the assistant (``app.App.persona``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from distill_tools import DistillError, Interrupted, verdict
from distill_tools.app import App
from distill_tools.progress import interrupted


def add_command(group: argparse._SubParsersAction, app: App | None) -> None:
    """Add ``distill persona`` to a distill subparsers group; ``app``: where the persona comes from."""
    cmd = group.add_parser("persona", help="distil a persona into its own student that needs no prompt")
    cmd.add_argument("name", help="the persona (see `assistant persona list`)")
    cmd.add_argument("--prompts", help='your own training prompts: text (one per line) or JSONL ("prompt")')
    cmd.add_argument("--minutes", type=float, default=None, help="stop training after N minutes (and use the result)")
    cmd.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="passes over the training questions (default 8; the report says when the student has not learnt them)",
    )
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.add_argument("--keep-prompted", action="store_true", help="register the student but leave the persona prompted")
    cmd.add_argument(
        "--fresh",
        action="store_true",
        help="start over: forget the cached teacher answers and checkpoints (and distil even if nothing changed)",
    )
    cmd.add_argument(
        "--teacher",
        default="",
        metavar="MODEL|URL",
        help="a stronger teacher: a local model sharing the base's tokenizer (a registry name or a GGUF file), or an "
        "OpenAI-compatible endpoint (http://127.0.0.1:8080/v1): logit KD where its tokenizer matches, else "
        "sequence-level KD on its answers; it also writes the questions when it can",
    )
    cmd.add_argument(
        "--eval",
        "--eval-tasks",
        dest="eval_tasks",
        default=None,
        metavar="FILE",
        help='your held-out questions, one JSON object a line: {"question": "...", "answers": ["...", ...]} '
        "(default: questions in a form the training prompts do not have)",
    )
    cmd.add_argument(
        "--general-limit",
        type=int,
        default=None,
        metavar="N",
        help="score general ability on N of the 282 bundled general tasks (default: all; fewer is quicker but vaguer)",
    )
    cmd.add_argument("--ci", action="store_true", help=argparse.SUPPRESS)  # the tiny recipe the tests run
    cmd.add_argument(
        "--progress-json",
        action="store_true",
        help="progress as JSON lines on stderr (phase, done, total, elapsed_s) for other programs",
    )
    cmd.set_defaults(handler=cmd_persona, app=app)


PROGRESS_PREFIX = "progress: "  # a --progress-json line: this, then one JSON object


class ProgressJson:
    """Every progress call as one line ``progress: {"phase", "done", "total", "elapsed_s"}`` on stderr (the chat UI
    reads them), at most ``per_s`` a second within a phase; a phase's first call always goes out."""

    def __init__(self, per_s: float = 4.0) -> None:
        self.clock, self.started, self.gap = time.monotonic, time.monotonic(), 1 / per_s
        self.phase, self.last = "", 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self.clock()
        name = phase.split(" (loss")[0]
        if name == self.phase and now - self.last < self.gap and done < total:
            return
        self.phase, self.last = name, now
        line = {"phase": phase, "done": done, "total": total, "elapsed_s": round(now - self.started, 2)}
        print(PROGRESS_PREFIX + json.dumps(line), file=sys.stderr, flush=True)


class PhaseLine:
    """One stderr line per phase (the teacher pass, training and evaluation also draw their own bars)."""

    def __init__(self) -> None:
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        name = phase.split(" (loss")[0]
        if name != self.phase:
            self.phase = name
            print(f"[distill persona] {name}…", file=sys.stderr, flush=True)


def cmd_persona(args: argparse.Namespace) -> int:
    if args.minutes is not None and args.minutes <= 0:
        raise DistillError("--minutes must be positive")
    from distill_tools import persona  # torch loads here, when the command runs

    app: App = args.app
    settings = persona.Settings.ci() if args.ci else persona.Settings()
    settings.teacher = args.teacher.strip()
    if args.epochs is not None:
        if args.epochs < 1:
            raise DistillError("--epochs must be at least 1")
        settings.epochs = args.epochs
    if args.general_limit is not None:
        if args.general_limit < 1:
            raise DistillError("--general-limit must be at least 1")
        settings.general_limit = args.general_limit
    try:
        summary = persona.run(
            app.persona(args.name),
            prompts_file=args.prompts,
            minutes=args.minutes,
            settings=settings,
            eval_tasks=args.eval_tasks,
            progress=ProgressJson() if args.progress_json else PhaseLine(),
            adopt=None if args.keep_prompted else app.adopt,
            fresh=args.fresh,
        )
    except Interrupted as exc:
        return interrupted(args.tool, exc)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(_unchanged(summary) if summary.get("unchanged") else _table(summary))
    return 0


def _unchanged(s: dict[str, Any]) -> str:
    """The one line of a run that had nothing to do."""
    when = f" ({s['finished']})" if s.get("finished") else ""
    now = f"; persona {s['persona']!r} answers with it again" if s.get("adopted_now") else ""
    return (
        f"nothing changed since {s['persona']} was distilled{when}: its student {s['gguf']} is up to date{now}; "
        "use --fresh to distil again" + (f" (its verdict: {s['verdict']['line']})" if "verdict" in s else "")
    )


def _table(s: dict[str, Any]) -> str:
    lines = [f"{'':<26} {'checkable':>9} {'vs teacher':>10} {'KL':>7} {'top-1':>7}"]
    for label, v in s["scores"].items():
        lines.append(
            f"{label:<26} {v['checkable']:>9.0%} {v['vs_teacher']:>10.0%} {v['mean_kl']:>7.3f} "
            f"{v['top1_agreement']:>7.0%}"
        )
    t = s["first_turn"]
    if q := s.get("questions"):
        lines.append(
            f"teacher: {q['teacher']} ({q['kd']} KD); {q['per_fact']:.1f} training questions per fact, "
            f"{q['teacher_written_share']:.0%} written by the teacher"
        )
    lines += _evaluation(s)
    lines += [
        f"first-turn TTFT: prompted {t['teacher']['ttft_s'] * 1000:.0f} ms "
        f"({t['teacher']['prompt_tokens']} prompt tokens) "
        f"vs student {t['student']['ttft_s'] * 1000:.0f} ms ({s['ttft_ratio']:.1f}× lower); "
        f"decode {s['decode_ratio']:.2f}× the base",
        f"student: {s['gguf']}, registered as {s['persona']!r}"
        + (f"; persona {s['persona']!r} now runs prompt-free" if s["persona_points_at_student"] else ""),
        f"report: {s['report']['markdown']}  ({s['timings_s']['total_s']:.0f} s in all)",
    ]
    lines.append(f"verdict: {s['verdict']['line']}")
    return "\n".join(lines)


def _evaluation(s: dict[str, Any]) -> list[str]:
    """The held-out and general comparisons (``persona_eval``), each ratio with its 95 % interval."""
    h, g = s["heldout"], s["general"]
    c, d, n = h["correct"], g["degenerate"], h["questions"]
    if "grounded" in c:  # a persona over documents: both with the passages retrieval adds, and closed-book
        held = [
            f"  prompted base + retrieval {c['prompted']}/{n}, student + retrieval {c['grounded']}/{n}, student "
            f"closed-book {c['student']}/{n}, base {c['base']}/{n}: student + retrieval/prompted "
            f"{_ratio(h['student_vs_prompted'])}, closed-book/prompted {_ratio(h['closed_book_vs_prompted'])}"
        ]
    else:
        held = [
            f"  prompted base {c['prompted']}/{n}, student {c['student']}/{n}, base {c['base']}/{n}: "
            f"student/prompted {_ratio(h['student_vs_prompted'])}, base/prompted {_ratio(h['base_vs_prompted'])}"
        ]
    return [
        f"held-out questions: {h['source']}",
        *held,
        *_fit(h.get("fit")),
        f"general tasks ({g['tasks']}, {g['seconds']:.0f} s): student {g['passed']['student']} vs base "
        f"{g['passed']['base']} = {_ratio(g['interval_ratio'])}; degenerate answers: student {d['student']}, "
        f"base {d['base']}",
    ]


def _fit(fit: dict[str, int] | None) -> list[str]:
    line = verdict.fit_line(fit["student"], fit["questions"]) if fit else ""
    return [f"  {line}"] if line else []


def _ratio(r: list[float | None]) -> str:
    if any(x is None for x in r):
        return "n/a"
    return f"{r[0] * 100:.0f} % [{r[1] * 100:.0f}–{r[2] * 100:.0f}]"  # type: ignore[operator]
