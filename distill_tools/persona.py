"""``distill persona NAME``: context distillation of a persona into its own student.

The teacher is the persona's base model *with* its context as system prompt; the student starts as
the base model itself (same tokenizer, nothing pruned) and learns to answer the same way *without*
it: word-level KD on the teacher's cached top-k logits plus α·CE on its answers, on prompts made
from the context (``persona_prompts``) and the user's own, plus a replay set of general prompts
answered by the base model without context. The teacher pass and training loop are ``distill_tools``',
the last steps (export and verification, report, summary, registry) the pipeline's; every stage resumes
after Ctrl-C. The student is exported and verified in the work folder, evaluated, then moved into the
models folder and registered under the persona's name; only then does the persona point at it.

The persona arrives as plain data (``app.Persona``): the assistant reads it, and checks that its context
fits its base model's window, before calling :func:`run`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from assistant.config import data_dir, models_dir
from assistant.models import registry
from assistant.storage.files import atomic_write_text
from distill_tools import (
    DistillError,
    Interrupted,
    batches,
    evaluate,
    export,
    general_eval,
    lora,
    persona_eval,
    persona_teacher,
    pipeline,
    replay,
    teacher_cache,
    torch_model,
)
from distill_tools import persona_prompts as prompting
from distill_tools import persona_runs as runs
from distill_tools import train as training
from distill_tools.app import Persona
from distill_tools.batches import Example
from distill_tools.export import Verification
from distill_tools.progress import Clock, quiet_libraries
from distill_tools.prompts import load_records
from distill_tools.recipe import ExportSection, LossSection, TrainSection, choose_layers
from distill_tools.torch_model import Loaded
from distill_tools.torch_teacher import TorchTeacher
from distill_tools.train import TrainState

RETRIEVAL_CTX = 2048  # the evaluation's window for a persona over documents: the passages retrieval adds fit it
FIT_QUESTIONS = 24  # of the student's own training questions, asked without context after training (see evaluate)
MARKER = "\x1epersona-context\x1e"  # a teacher prompt starting with this sees the persona's context as system prompt
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Settings:
    """The recipe of a persona run (defaults: the full-size run; ``ci()`` a tiny one)."""

    per_fact: int = 12  # training questions per fact (persona_prompts: templates, or the teacher's own words)
    grounded: bool = True  # phrasings after the first are answered with the fact's own sentence (see persona_prompts)
    replay: int = 96  # general prompts answered by the base model without context, in the training pool: 96
    # kept 131-139/282 general tasks (base 134) where 32 kept 121-123, at 7-9/24 held-out instead of 9-11 (README)
    replay_kl: bool = False  # instead: KL to the base on the broad replay set (``replay``), mixed into every step
    replay_prompts: int = 256  # with replay_kl: training prompts drawn from it (0 = all but the held-out ones)
    replay_tokens: int = 32  # with replay_kl: the base's answer length on them
    replay_per_step: int = 4  # with replay_kl: replay sequences in every step
    replay_weight: float = 1.0  # with replay_kl: weight of the KL term against the persona loss
    general_heldout: int = 32  # with replay_kl: replay prompts kept out, to measure the student's general KL
    max_general_kl: float = 0.0  # stop training when the held-out general KL passes this (0 = never)
    epochs: int = 8  # fact sheets, merged whole: the student answers 42-44 of 48 of its training questions after 8
    # epochs, 23 after 4; it answers a person's wordings only once it fits its own (see README, issue 27)
    max_steps: int = 0  # 0 = epochs × batches
    batch_size: int = 8
    lr: float = 1e-3
    alpha: float = 0.5  # weight of CE on the teacher's answers (the rest: forward KL on its top-k logits)
    layers: str = "upper"  # layers that train: the upper or middle third, or student.choose_layers syntax; the rest
    # stay the base's own bytes in the GGUF (smaller and faster than all re-encoded; less forgetting). The upper third
    # trained ~1.9x as fast as the middle (the two thirds below run once per sequence, see answer_head) and kept as
    # much on two judge sheets (README, issue 27)
    attention: bool = True  # the chosen layers' attention trains too, not only their MLPs
    method: str = "lora"  # lora: low-rank adapters on those layers, merged before the export; full: their weights
    # learn (issue 27 ablation, fact-sheet persona: general ability 0.96x the base instead of 0.70x, see README)
    lora_rank: int = 16
    lora_alpha: int = 32
    merge_scale: float = 1.0  # share of the adapters' learned change merged at export (WiSE-FT, see lora.merge):
    # 0.75 kept general 134-135/282 (base 134) but halved what the student had learnt (13 vs 23 of 48 training
    # questions): it kept the base's skills by forgetting the persona
    max_new_tokens: int = 48  # teacher answer length
    max_length: int = 160  # prompt (without context) + answer tokens per training sequence
    open_book: float = 0.25  # a persona over documents: this share of the questions is also trained with the
    # passages retrieval adds in the student's prompt (RAFT), so the student keeps reading them (see open_book_outputs)
    open_book_tokens: int = 400  # the passages' budget in those prompts (one 200–400-token chunk of the index)
    top_k: int = 32
    quant: str = "Q8_0"
    eval_max_new_tokens: int = 40
    general_limit: int = 0  # bundled general tasks used for retention (0 = all)
    seed: int = 0
    teacher: str = ""  # --teacher: a bigger local model or an endpoint URL ('' = the base; see persona_teacher)

    def training(self) -> dict[str, Any]:
        """The settings that shape the trained weights (a checkpoint made with others is not resumed)."""
        return {
            k: v
            for k, v in asdict(self).items()
            if not k.startswith("eval") and k not in ("general_limit", "quant", "merge_scale")
        }

    @classmethod
    def ci(cls) -> "Settings":
        return cls(
            per_fact=1,
            replay=4,
            epochs=1,
            max_steps=4,
            batch_size=4,
            lr=1e-4,
            max_new_tokens=12,
            max_length=80,
            top_k=16,
            eval_max_new_tokens=12,
            general_limit=3,
        )


class _WithContext:
    """The teacher's tokenizer: a chat whose user text starts with MARKER gets the context as its system message.

    ``teacher_cache.teacher_pass`` renders the teacher's prompt from ``template.format(prompt=…)``; with the
    template ``MARKER + "{prompt}"`` this is how the teacher sees the persona's context while the
    student's prompt (rendered from the bare prompt) does not."""

    def __init__(self, tokenizer: Any, system: str) -> None:
        self._tokenizer, self._system = tokenizer, system

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        last = messages[-1]["content"]
        if last.startswith(MARKER):
            messages = [{"role": "system", "content": self._system}, {"role": "user", "content": last[len(MARKER) :]}]
        return self._tokenizer.apply_chat_template(messages, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class _OutOfTime(Exception):
    """The training budget (--minutes) is spent."""


def work_dir(name: str) -> Path:
    return data_dir() / "distill" / "persona" / name


def check_model_name(name: str) -> None:
    """The student is registered under the persona's name: refuse to replace a model that is not a student, or to
    add one whose name differs from another model's only in case (a user reads them as one name)."""
    if any(p.name.lower() == name.lower() for p in registry.packaged()):
        raise DistillError(f"persona {name!r} has a packaged model's name; its student cannot be registered under it")
    with registry.opened() as models:
        twins = [e for e in models.entries() if e.name.lower() == name.lower()]
    for entry in twins:
        if entry.name != name or entry.origin != "distilled":
            raise DistillError(
                f"a model named {entry.name!r} already exists ({entry.origin}); "
                f"remove it (`assistant models rm {entry.name}`) or copy the persona under another name"
            )


def run(
    persona: Persona,
    prompts_file: str | None = None,
    minutes: float | None = None,
    settings: Settings | None = None,
    eval_tasks: str | None = None,
    progress: Progress | None = None,
    adopt: Callable[[str, str, str], None] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Distil ``persona``; returns the summary (also written as JSON with a report and plot). ``adopt`` (the
    assistant's) points the persona at its student once that is registered; None leaves it prompted. With nothing
    changed since the last run, nothing is done (the summary says ``unchanged``); ``fresh`` starts over."""
    settings = settings or Settings()
    say = progress or (lambda phase, done, total: None)
    name, context = persona.name, persona.context
    if not context:
        raise DistillError(f"persona {name!r} has no system prompt or context to distil")
    check_model_name(name)
    user_records = load_records([prompts_file]) if prompts_file else []
    eval_questions = persona_eval.read_eval_file(eval_tasks) if eval_tasks else None  # a bad file: before any work
    clock = Clock()
    work = work_dir(name)
    key = runs.inputs_key(persona, asdict(settings), {"prompts": prompts_file, "eval": eval_tasks, "minutes": minutes})
    if fresh:
        runs.start_over(work)
    elif (done := runs.previous(work, name, key)) is not None:
        return runs.unchanged(done, persona, adopt)
    work.mkdir(parents=True, exist_ok=True)
    quiet_libraries()

    say("loading the base model", 0, 1)
    with clock.phase("load"):
        teacher, base = load_base(persona)
        tokens = len(teacher.tokenizer(context, add_special_tokens=False)["input_ids"])
        chosen = persona_teacher.resolve(settings.teacher, teacher)
    with clock.phase("teacher_pass"):
        say("writing questions", 0, 1)
        prompts = make_prompts(persona, user_records, settings, chosen)
        pooled = [] if settings.replay_kl else replay_records(settings)
        examples = teacher_examples(
            teacher, context, prompts.train, pooled, settings, work, say, chosen, open_book_message(persona, settings)
        )
        general = general_replay(teacher, settings, say)
    with clock.phase("train"):
        fresh_checkpoints(work / "checkpoints", [context, prompts.train, settings.training(), str(base)])
        student, state = train_student(teacher, examples, settings, work, minutes, say, general)
    say("exporting the student", 0, 1)
    with clock.phase("export"):
        staged = work / f"{name}.gguf"
        verification = export_student(student, teacher, base, staged, settings)
    say("evaluating", 0, 1)
    with clock.phase("eval"):
        evaluation = evaluate_student(
            base, staged, context, prompts, settings, tokens, eval_questions, eval_tasks, say, persona.retrieve
        )

    timings = clock.timings(total=True)
    summary = _summary(persona, prompts, examples, state, verification, evaluation, settings, tokens, timings)
    summary["questions"] = persona_teacher.figures(chosen, prompts)
    summary["report"] = pipeline.write_report(work / "report", evaluation["reports"], state.history, summary)
    summary["gguf"] = str(install(name, staged))
    summary["persona_points_at_student"] = adopt is not None
    if adopt is not None:
        adopt(name, runs.fingerprint(persona), summary["verdict"]["line"])
    runs.stamp(summary, persona, key)
    pipeline.write_summary(work, summary)
    return summary


def load_base(persona: Persona) -> tuple[Loaded, Path]:
    """The persona's base model in torch (the teacher, and what the student starts as), and its GGUF (whose
    unchanged tensors the student's file reuses)."""
    teacher = torch_model.load(runs.base_spec(persona))
    if teacher.gguf_path is None:
        raise DistillError(f"persona {persona.name!r}: its base model must be a GGUF (a registry name or a file)")
    return teacher, teacher.gguf_path


def make_prompts(
    persona: Persona,
    user_records: list[dict[str, str]],
    settings: Settings,
    chosen: persona_teacher.Teacher | None = None,
) -> prompting.PromptSet:
    """Questions about the facts of the persona's ``texts`` (its context files, else its system prompt), written by
    the ``chosen`` teacher where it can, else by templates; each sees the passage that answers it."""
    try:
        prompts = prompting.build(
            persona.texts,
            persona.context,
            user_records,
            settings.per_fact,
            settings.seed,
            grounded=settings.grounded,
            writer=chosen.ask if chosen else None,
            strong=bool(chosen and chosen.strong),
        )
    finally:
        if chosen:
            chosen.close()
    if not prompts.facts:
        raise DistillError(f"persona {persona.name!r}: no statements in its context to make training prompts from")
    return prompts


def replay_records(settings: Settings) -> list[dict[str, str]]:
    """General prompts (the bundled set, minus any that are also general evaluation tasks), seeded sample."""
    tasks = {t["prompt"] for t in evaluate.load_tasks("bundled:tasks")}
    pool = [r for r in load_records(["bundled:prompts"]) if r["prompt"] not in tasks]
    return random.Random(settings.seed).sample(pool, min(settings.replay, len(pool)))


def teacher_examples(
    teacher: Loaded,
    context: str,
    records: list[dict[str, str]],
    replay: list[dict[str, str]],
    settings: Settings,
    work: Path,
    say: Progress,
    chosen: persona_teacher.Teacher | None = None,
    open_book: Callable[[str], str] | None = None,
) -> list[Example]:
    """Training examples: the ``chosen`` teacher's answers to ``records`` (each seeing its record's ``system``, the
    passage that answers it; default: the base model), the base model's to ``replay`` without context (cached);
    with ``open_book`` (a question → the student's message with retrieved passages), a share of them again so."""
    tok = teacher.tokenizer
    runner = TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    common = {"max_new_tokens": settings.max_new_tokens, "top_k": settings.top_k}
    source = str(teacher.gguf_path)
    context_hash = hashlib.sha256(context.encode()).hexdigest()[:16]
    say("teacher pass (with the context)", 0, len(records) + len(replay))
    prompted = teacher_cache.teacher_pass(
        records,
        chosen.runner if chosen else runner,
        tok,
        work / "teacher-context",
        template="{prompt}",
        key=teacher_cache.cache_key(chosen.source if chosen else source, records, {**common, "context": context_hash}),
        **common,
    )
    say("teacher pass (replay, no context)", len(records), len(records) + len(replay))
    general = (
        teacher_cache.teacher_pass(
            replay,
            runner,
            tok,
            work / "teacher-replay",
            template="{prompt}",
            key=teacher_cache.cache_key(source, replay, common),
            **common,
        )
        if replay
        else []
    )
    examples = batches.examples(prompted + general, settings.max_length)
    if open_book is None:
        return examples
    opened = open_book_outputs(prompted, records, open_book, tok, settings, say)
    return examples + batches.examples(opened, settings.max_length + settings.open_book_tokens)


def open_book_message(persona: Persona, settings: Settings) -> Callable[[str], str] | None:
    """A persona over documents: the message the product would send for a question, with the passages retrieval
    adds within ``open_book_tokens``; None for other personas or with ``open_book`` 0."""
    retrieve = persona.retrieve
    if retrieve is None or settings.open_book <= 0:
        return None
    return lambda question: retrieve(question, settings.open_book_tokens)


def open_book_outputs(
    outputs: list[teacher_cache.TeacherOutput],
    records: list[dict[str, Any]],
    message: Callable[[str], str],
    tokenizer: Any,
    settings: Settings,
    say: Progress,
) -> list[teacher_cache.TeacherOutput]:
    """Retrieval-augmented fine-tuning (RAFT): a seeded share of the single-turn questions again, the student's
    prompt now what the product sends (the passages retrieval finds, the right one or not, then the question); the
    answer and targets stay the teacher's, who saw the passage that answers it. Trained closed-book only, the
    student stopped reading passages: with retrieval it answered 1/30 of the handbook's questions, the prompted
    base 5/30 (issue 28)."""
    single = [i for i, r in enumerate(records) if not r.get("history")]
    chosen = sorted(random.Random(settings.seed).sample(single, round(len(single) * settings.open_book)))
    opened = []
    for n, i in enumerate(chosen):
        say("open-book prompts (retrieval)", n, len(chosen))
        chat = [{"role": "user", "content": message(str(records[i]["prompt"]))}]
        opened.append(replace(outputs[i], prompt_ids=teacher_cache.chat_ids(tokenizer, chat)))
    return opened


def general_replay(teacher: Loaded, settings: Settings, say: Progress) -> training.Replay | None:
    """The KL-to-the-base term (``settings.replay_kl``): the base's answers, without context, to the broad replay
    set's training prompts and to its held-out ones (cached once per base model, shared by its personas)."""
    if not settings.replay_kl:
        return None
    train, heldout = replay.split(replay.load(), settings.general_heldout, settings.seed)
    records = replay.sample(train, settings.replay_prompts, settings.seed) + heldout
    tok = teacher.tokenizer
    common = {"max_new_tokens": settings.replay_tokens, "top_k": settings.top_k}
    say("teacher pass (general replay, the base without context)", 0, len(records))
    source = str(teacher.gguf_path)
    folder = data_dir() / "distill" / "replay" / hashlib.sha256(source.encode()).hexdigest()[:16]
    outputs = teacher_cache.teacher_pass(
        records,
        TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id),
        tok,
        folder,
        template="{prompt}",
        key=teacher_cache.cache_key(source, records, common),
        **common,
    )
    n_train = len(records) - len(heldout)
    return training.Replay(
        examples=batches.examples(outputs[:n_train], settings.max_length),
        per_step=settings.replay_per_step,
        weight=settings.replay_weight,
        heldout=batches.examples(outputs[n_train:], settings.max_length),
        max_kl=settings.max_general_kl,
    )


def fresh_checkpoints(folder: Path, inputs: list[Any]) -> None:
    """Resume training only from checkpoints made from the same context, prompts and settings."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    marker = folder / "inputs.key"
    if folder.exists() and (not marker.exists() or marker.read_text() != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, key)


def train_student(
    teacher: Loaded,
    examples: list[Example],
    settings: Settings,
    work: Path,
    minutes: float | None,
    say: Progress,
    general: training.Replay | None = None,
) -> tuple[Any, TrainState]:
    """The base model's copy trained on ``examples`` (and ``general``'s KL to the base); stops early (keeping its
    weights) when ``minutes`` run out. LoRA adapters come back merged into the weights."""
    cfg = TrainSection(
        epochs=settings.epochs,
        max_steps=settings.max_steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=max(1, min(10, settings.max_steps // 5 or 5)),
        checkpoint_every=20,
    )
    loss = LossSection(alpha=settings.alpha)
    if settings.method not in ("full", "lora"):
        raise DistillError(f"unknown training method {settings.method!r} (known: full, lora)")
    student = copy.deepcopy(teacher.model)
    if settings.method == "lora":
        for param in student.parameters():
            param.requires_grad_(False)
        layers = learning_layers(student, settings)
        student = lora.attach(student, layers, settings.lora_rank, settings.lora_alpha, settings.attention)
    else:
        trainable(student, settings)
    deadline = time.monotonic() + minutes * 60 if minutes else None
    latest: dict[str, Any] = {}

    def on_step(state: TrainState) -> None:
        latest["state"] = state
        last = state.history[-1]
        say(f"training (loss {last['loss']:.3f})", state.step, state.total_steps)
        if deadline is not None and time.monotonic() > deadline and state.step < state.total_steps:
            raise _OutOfTime

    say("training", 0, training.total_steps(examples, cfg))
    try:
        state = training.train(
            student,
            examples,
            cfg,
            loss,
            pad_id=teacher.tokenizer.pad_token_id,
            seed=settings.seed,
            folder=work / "checkpoints",
            on_step=on_step,
            replay=general,
        )
    except _OutOfTime:
        state = latest["state"]
        student.eval()
    except training.TrainingInterrupted as exc:
        raise Interrupted(
            f"interrupted at step {exc.step}/{exc.total}; the teacher's answers and a checkpoint are kept: "
            f"run `assistant distill persona {work.name}` again (same options, no --fresh) to resume"
        ) from None
    return lora.merge(student, settings.merge_scale), state


def trainable(student: Any, settings: Settings) -> None:
    """Only the MLPs (and attention) of ``settings.layers`` learn; every other weight stays the base model's."""
    chosen = set(learning_layers(student, settings))
    parts = ("mlp", "self_attn") if settings.attention else ("mlp",)
    for name, param in student.named_parameters():
        fields = name.split(".")
        layer = int(fields[2]) if fields[:2] == ["model", "layers"] else -1
        param.requires_grad_(layer in chosen and fields[3] in parts)


def learning_layers(student: Any, settings: Settings) -> list[int]:
    """The layers that learn: the upper or middle third, or ``settings.layers`` in ``choose_layers`` syntax."""
    n = student.config.num_hidden_layers
    thirds = {"upper": list(range(2 * n // 3, n)), "middle": list(range(n // 3, 2 * n // 3))}
    return thirds[settings.layers] if settings.layers in thirds else choose_layers(settings.layers, n)


def export_student(student: Any, teacher: Loaded, base: Path, target: Path, settings: Settings) -> Verification | None:
    """The pipeline's verified export at ``target`` (named after it, default limits); the weights training left
    unchanged are the ``base`` GGUF's own bytes, so those keep its quantisation, size and speed."""
    keep = export.unchanged_tensors(student, teacher.model, base)
    name = target.stem
    return pipeline.export_student(student, teacher, target, name, settings.quant, ExportSection(), keep=keep)


def evaluate_student(
    base: Path,
    student: Path,
    context: str,
    prompts: prompting.PromptSet,
    settings: Settings,
    context_tokens: int,
    eval_questions: list[dict[str, Any]] | None,
    eval_file: str | None,
    say: Progress,
    retrieve: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Held-out scores, KL, general retention, the verdict and first-turn speed (see ``persona_eval``). Held-out
    questions: the user's ``--eval`` file, else a question form the training prompts do not have. ``retrieve``: a
    persona over documents (the prompted base and the student are also scored with the passages retrieved)."""
    train = [str(r["prompt"]) for r in prompts.train]
    if eval_questions is not None:
        heldout = persona_eval.HeldOut(eval_questions, f"your questions ({eval_file})")
    elif prompts.teacher_share > 0:  # training asked the teacher's questions: the held-out templates are disjoint
        checkable = [h for h in prompts.heldout if h.get("answers")]
        heldout = persona_eval.HeldOut(checkable, prompts.heldout_source, "templates")
    else:  # templates trained: a question form the generator never makes
        heldout = persona_eval.corrections(prompts.facts, train)
    kl_prompts = [str(h["prompt"]) for h in prompts.heldout]
    general = general_eval.subset(general_eval.load_tasks(), settings.general_limit)
    n_ctx = max(1024, context_tokens + 128 + settings.eval_max_new_tokens)
    if retrieve is not None:
        n_ctx = max(n_ctx, RETRIEVAL_CTX)
    result = persona_eval.evaluate_persona(
        base,
        student,
        context,
        heldout,
        kl_prompts,
        general,
        settings.eval_max_new_tokens,
        n_ctx=n_ctx,
        top_k=settings.top_k,
        progress=say,
        retrieve=retrieve,
        fit=prompts.fit_sample(FIT_QUESTIONS, settings.seed),
    )
    questions = [str(h["prompt"]) for h in heldout.questions[:3]] or kl_prompts[:3]
    result["first_turn"] = {
        "teacher": persona_eval.first_turn(base, context, questions, n_ctx=n_ctx + 512),
        "student": persona_eval.first_turn(student, "", questions, n_ctx=n_ctx + 512),
        "base": persona_eval.first_turn(base, "", questions, n_ctx=n_ctx + 512),
    }
    result["checkable_source"] = heldout.source
    return result


def _summary(
    persona: Persona,
    prompts: prompting.PromptSet,
    examples: list[Example],
    state: TrainState,
    verification: Verification | None,
    evaluation: dict[str, Any],
    settings: Settings,
    tokens: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    reports = evaluation["reports"]
    speed = evaluation["first_turn"]
    return {
        "persona": persona.name,
        "base_model": persona.model or "(default)",
        "context_tokens": tokens,
        "facts": len(prompts.facts),
        "train_prompts": len(prompts.train),
        "heldout_prompts": len(prompts.heldout),
        "train_sequences": len(examples),
        "steps": state.step,
        "settings": asdict(settings),
        "scores": {
            r.label: {
                "checkable": round(r.task_score, 4),
                "vs_teacher": round(r.retention, 4),
                "mean_kl": round(r.mean_kl, 4),
                "top1_agreement": round(r.top1_agreement, 4),
            }
            for r in reports
        },
        "checkable_questions": len(reports[0].answers),
        "checkable_source": evaluation["checkable_source"],
        "heldout": evaluation["heldout"],
        "general": evaluation["general"],
        "verdict": evaluation["verdict"],
        "first_turn": speed,
        "ttft_ratio": round(speed["teacher"]["ttft_s"] / speed["student"]["ttft_s"], 2)
        if speed["student"]["ttft_s"]
        else 0.0,
        "decode_ratio": round(speed["student"]["tokens_per_s"] / speed["base"]["tokens_per_s"], 3)
        if speed["base"]["tokens_per_s"]
        else 0.0,
        "verification": export.verification_dict(verification),
        "timings_s": timings,
    }


def install(name: str, staged: Path) -> Path:
    """Move the verified student into the models folder (a temp name, then a rename) and register it."""
    target = models_dir() / f"{name}.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(staged, temp)
        os.replace(temp, target)
    except OSError as exc:
        raise DistillError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        Path(temp).unlink(missing_ok=True)
    registry.register_distilled(name, target)
    staged.unlink(missing_ok=True)
    return target
