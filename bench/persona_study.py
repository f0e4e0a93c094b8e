"""Measuring a persona student on the bench's own personas (``bench/personas/<name>``: a system prompt, context
files and hand-written held-out questions that no generator made) and the levers of issue 27 (``--ablation``).

Scores, each model in llama.cpp, greedy: held-out questions for the prompted base (the context as system prompt),
the student and the base (both without it); the full general evaluation set (``general_eval.jsonl``) for the
student and the base, with degenerate (looping) answers counted. The base's scores are cached per file, so an
ablation pays for them once. ``python -m bench.persona_study --ablation PERSONA --out FILE`` trains one student
per lever (``VARIANTS``) and writes the results after each one (atomically), stopping at ``--until`` (UTC).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PERSONAS = Path(__file__).resolve().parent / "personas"
# What `bench --only persona` runs: a fact sheet and a ~1k-token prose guide, both written by helper sessions that
# never saw the question generator. brindlewick-ferry has judged nothing yet. tufted-otter-grooming judged one lever
# (reverted) and, with quillmoss-clinic and saltfen-library (40 unread questions each), the choice of the upper third
# (2026-12-08), so it no longer judges that choice. The other personas were used to tune: harbor-bakery and
# lumen-handbook (questions read while diagnosing), tidewater-bikes (the replay count was chosen on it);
# tinderloft-makers is a second fact sheet of the judges' kind (README "Judged on personas…", "Two more judges…").
BENCH_PERSONAS = ("tufted-otter-grooming", "brindlewick-ferry")
HELDOUT_TOKENS = 40
GENERAL_TOKENS = 64
LIMITS = {"general": 0, "stride": 1}  # general tasks scored: every stride-th, at most general (0 = all)

# Each lever changed alone from the default recipe (the first row).
VARIANTS: dict[str, dict[str, Any]] = {
    "default: LoRA r16, upper third, merged whole, 8 epochs; 96 replay answers, lr 1e-3, 48-token answers": {},
    "a. full fine-tuning of the middle third instead of LoRA": {"method": "full", "layers": "middle"},
    "b. KL to the base on the broad replay set, every step": {"replay_kl": True},
    "c. lr 3e-4": {"lr": 3e-4},
    "c. early stopping on held-out general KL (with b)": {"replay_kl": True, "max_general_kl": 0.25},
    "d. 24-token teacher answers": {"max_new_tokens": 24},
    "d. 96-token teacher answers": {"max_new_tokens": 96, "max_length": 208},
    "e. 0.75 of the LoRA change merged (same training as the default)": {"merge_scale": 0.75},
    "e. the LoRA change merged at 0.5 (same training as the default)": {"merge_scale": 0.5},
    "f. the default again, seed 1 (run-to-run spread)": {"seed": 1},
    "g. 4 epochs (half the default's)": {"epochs": 4},
    "h. 32 replay answers (the default until 2026-12-07)": {"replay": 32},
    "j. LoRA on the middle third (layers 10-19; the default until 2026-12-08)": {"layers": "middle"},
}


@dataclasses.dataclass
class BenchPersona:
    name: str
    system: str
    files: dict[str, str]
    questions: list[dict[str, Any]]  # {"question", "answers", "kind"}


def load_persona(name: str) -> BenchPersona:
    folder = PERSONAS / name
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md")) if p.name != "system.md"}
    lines = (folder / "heldout.jsonl").read_text(encoding="utf-8").splitlines()
    return BenchPersona(
        name, (folder / "system.md").read_text(encoding="utf-8").strip(), files, [json.loads(x) for x in lines if x]
    )


def register(persona: BenchPersona) -> Any:
    """Save ``persona`` in the current ASSISTANT_HOME; returns it as ``distill_tools`` reads it."""
    from assistant.chat import persona as personas
    from assistant.cli.distill import persona_source

    contexts = [personas.ContextFile(name, text) for name, text in persona.files.items()]
    personas.save(personas.Persona(persona.name, system=persona.system, contexts=contexts))
    return persona_source(persona.name)


def _answers(path: Path, prompts: list[str], system: str, max_new: int, n_ctx: int) -> list[str]:
    from distill_tools import evaluate

    runner = evaluate.Runner(path, n_ctx=n_ctx)
    try:
        out = []
        for text in prompts:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
            ids = runner.llm.tokenize(runner.template.render(messages).encode(), add_bos=False, special=True)
            out.append(runner.text(runner.generate(ids, max_new)))
        return out
    finally:
        runner.close()


def heldout_scores(path: Path, persona: BenchPersona, context: str) -> list[bool]:
    """Per held-out question: answered correctly (``context`` as system prompt, or none)."""
    from distill_tools.evaluate import correct

    n_ctx = 2048 if context else 512
    answers = _answers(path, [q["question"] for q in persona.questions], context, HELDOUT_TOKENS, n_ctx)
    return [correct(a, q["answers"]) for a, q in zip(answers, persona.questions)]


def training_scores(path: Path, source: Any, settings: Any, limit: int = 48) -> list[bool]:
    """Per training question (``PromptSet.fit``: single-turn, checkable, not yes/no; at most ``limit``, seeded):
    answered without the context. Whether the student fits what it was trained on tells fitting apart from carrying
    over to new wordings."""
    from distill_tools import persona as distill
    from distill_tools.evaluate import correct

    chosen = distill.make_prompts(source, [], settings).fit_sample(limit, 0)
    answers = _answers(path, [q["prompt"] for q in chosen], "", HELDOUT_TOKENS, 512)
    return [correct(a, q["answers"]) for a, q in zip(answers, chosen)]


def general_scores(path: Path) -> dict[str, Any]:
    """Per general task: passed; and the indices of degenerate answers."""
    from distill_tools import general_eval

    tasks = general_eval.load_tasks()[:: LIMITS["stride"]][: LIMITS["general"] or None]
    answers = _answers(path, [t.prompt for t in tasks], "", GENERAL_TOKENS, 512)
    return {
        "passed": [general_eval.passes(a, t.check) for a, t in zip(answers, tasks)],
        "degenerate": [i for i, a in enumerate(answers) if general_eval.degenerate(a)],
    }


def cached(cache: Path, key: str, compute: Any) -> Any:
    """``compute()``, remembered in ``cache`` (JSON) under ``key``."""
    from assistant.storage.files import atomic_write_text

    data = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in data:
        data[key] = compute()
        data = {**(json.loads(cache.read_text()) if cache.exists() else {}), key: data[key]}
        atomic_write_text(cache, json.dumps(data))
    return data[key]


def file_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def baselines(persona: BenchPersona, context: str, cache: Path) -> dict[str, Any]:
    """The prompted base's and the bare base's held-out scores and the base's general scores (cached)."""
    from assistant.models.registry import embedded_model_path

    base = embedded_model_path()
    key = file_key(base)
    return {
        "prompted": cached(cache, f"prompted:{persona.name}:{key}", lambda: heldout_scores(base, persona, context)),
        "base": cached(cache, f"base:{persona.name}:{key}", lambda: heldout_scores(base, persona, "")),
        "general": cached(cache, f"general:{LIMITS['general']}:{LIMITS['stride']}:{key}", lambda: general_scores(base)),
    }


def ratios(student: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Student/prompted on held-out questions and student/base on the general set, each with its 95 % interval."""
    from distill_tools.general_eval import paired_ratio_interval

    return {
        "heldout": list(paired_ratio_interval(student["heldout"], base["prompted"])),
        "general": list(paired_ratio_interval(student["general"]["passed"], base["general"]["passed"])),
        "counts": {
            "prompted": sum(base["prompted"]),
            "student": sum(student["heldout"]),
            "base": sum(base["base"]),
            "questions": len(base["prompted"]),
            "general_student": sum(student["general"]["passed"]),
            "general_base": sum(base["general"]["passed"]),
            "general_tasks": len(base["general"]["passed"]),
            "degenerate_student": len(student["general"]["degenerate"]),
            "degenerate_base": len(base["general"]["degenerate"]),
        },
    }


def train_variant(source: Any, settings: Any, work: Path) -> tuple[Path, dict[str, Any]]:
    """The persona's student under ``settings`` (the stages of ``distill persona``, no install), and its figures."""
    from distill_tools import persona as distill

    clock: dict[str, float] = {}
    start = time.perf_counter()
    teacher, base = distill.load_base(source)
    prompts = distill.make_prompts(source, [], settings)
    say = lambda *a: None  # noqa: E731
    pooled = [] if settings.replay_kl else distill.replay_records(settings)
    examples = distill.teacher_examples(teacher, source.context, prompts.train, pooled, settings, work, say)
    general = distill.general_replay(teacher, settings, say)
    clock["teacher_pass_s"] = time.perf_counter() - start
    distill.fresh_checkpoints(work / "checkpoints", [source.context, prompts.train, settings.training(), str(base)])
    mark = time.perf_counter()
    student, state = distill.train_student(teacher, examples, settings, work, None, say, general)
    clock["train_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    target = work / "student.gguf"
    distill.export_student(student, teacher, base, target, settings)
    clock["export_s"] = time.perf_counter() - mark
    kls = [h["general_kl"] for h in state.history if "general_kl" in h]
    return target, {
        **clock,
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "general_kl": kls,
        "sequences": len(examples),
    }


def measure(name: str, settings: Any, work: Path, cache: Path) -> dict[str, Any]:
    """Train and score one student of bench persona ``name``."""
    persona = load_persona(name)
    source = register(persona)
    start = time.perf_counter()
    gguf, figures = train_variant(source, settings, work)
    figures["distill_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    student = {"heldout": heldout_scores(gguf, persona, ""), "general": general_scores(gguf)}
    figures["eval_s"] = time.perf_counter() - mark
    fitted = training_scores(gguf, source, settings)
    figures["training_questions"] = [sum(fitted), len(fitted)]
    base = baselines(persona, source.context, cache)  # (after training: a parallel run may have cached them)
    return {**ratios(student, base), "figures": figures, "settings": dataclasses.asdict(settings)}


def ablation(
    name: str, out: Path, until: datetime | None, scale: dict[str, Any], only: list[str], cache: Path, home: Path | None
) -> None:
    """One student per variant (``scale`` applied to all), results rewritten into ``out`` after each; ``home``: an
    ASSISTANT_HOME kept between runs (its teacher passes are reused), else a throwaway one."""
    from assistant.storage.files import atomic_write_text
    from bench.common import bench_home
    from distill_tools.persona import Settings

    results = json.loads(out.read_text()) if out.exists() else {}
    with bench_home() as throwaway:
        if home is not None:
            os.environ["ASSISTANT_HOME"] = str(home)
        home = home or throwaway
        for label, change in VARIANTS.items():
            if label in results or (only and not any(o in label for o in only)):
                continue
            if until and datetime.now(timezone.utc) > until:
                print(f"stopping: past {until:%H:%M} UTC", file=sys.stderr)
                break
            settings = Settings(**{**scale, **change})
            print(f"{datetime.now(timezone.utc):%H:%M:%S} {name}: {label}", file=sys.stderr, flush=True)
            work = home / "work" / name
            try:
                results[label] = measure(name, settings, work, cache)
            except Exception as exc:  # one lever failing must not cost the others' runs
                print(f"{label}: failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            atomic_write_text(out, json.dumps(results, indent=1))
            print(json.dumps({k: results[label][k] for k in ("heldout", "general", "counts")}), file=sys.stderr)


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The ablation as a Markdown table: per persona and lever, both ratios with their 95 % intervals."""
    lines = [
        "| persona | lever | held-out: student / prompted base | general: student / base | degenerate (base) | "
        "general KL | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for persona, variants in results.items():
        for label, r in variants.items():
            f = r["figures"]
            kl = f"{f['heldout_general_kl']:.3f}" if "heldout_general_kl" in f else "–"
            if "counts" not in r:
                lines.append(f"| {persona} | {label} | not evaluated | not evaluated | – | {kl} | {f['steps']} |")
                continue
            c = r["counts"]
            lines.append(
                f"| {persona} | {label} | {c['student']}/{c['questions']} vs {c['prompted']}/{c['questions']} = "
                f"{_ratio(r['heldout'])} | {c['general_student']}/{c['general_tasks']} vs {c['general_base']}/"
                f"{c['general_tasks']} = {_ratio(r['general'])} | {c['degenerate_student']} vs "
                f"{c['degenerate_base']} | {kl} | {f['steps']} |"
            )
    return "\n".join(lines) + "\n"


def _ratio(figures: list[float]) -> str:
    return f"{figures[0]:.2f} [{figures[1]:.2f}–{figures[2]:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.persona_study")
    parser.add_argument("--ablation", metavar="PERSONA", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--until", help="HH:MM UTC: start no variant after this")
    parser.add_argument("--scale", default="{}", help="JSON Settings overrides for every variant (e.g. fewer epochs)")
    parser.add_argument("--only", nargs="*", default=[], help="run only the variants whose label contains these")
    parser.add_argument("--general-limit", type=int, default=0, help="score only the first N general tasks")
    parser.add_argument("--home", type=Path, help="an ASSISTANT_HOME to keep (reuses its teacher passes)")
    parser.add_argument("--cache", type=Path, help="the baselines' cache (JSON; default: next to --out)")
    parser.add_argument("--baselines-only", action="store_true", help="score the base models only (into --cache)")
    parser.add_argument("--general-stride", type=int, default=1, help="score every N-th general task (all kinds)")
    args = parser.parse_args()
    LIMITS["general"], LIMITS["stride"] = args.general_limit, args.general_stride
    until = None
    if args.until:
        hour, minute = map(int, args.until.split(":"))
        until = datetime.now(timezone.utc).replace(hour=hour, minute=minute, second=0, microsecond=0)
    cache = args.cache or args.out.with_suffix(".cache.json")
    if args.baselines_only:
        from bench.common import bench_home

        with bench_home():
            persona = load_persona(args.ablation)
            baselines(persona, register(persona).context, cache)
        return 0
    ablation(args.ablation, args.out, until, json.loads(args.scale), args.only, cache, args.home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
