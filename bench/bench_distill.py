"""Distillation: training throughput of distill_tools' loop vs an HF ``Trainer`` KD baseline, and the
default recipe's retention.

1. Throughput: the same student (the default recipe's shape: SmolLM2-135M-Instruct with every MLP
   narrowed to 480 channels), the same real teacher-answered sequences, batch and length. Our loop
   reads the cached top-k teacher log-probabilities and tail mass; the baseline is the usual ``Trainer`` subclass whose
   ``compute_loss`` runs the teacher online (full-vocabulary forward KL, same α·CE mix). Both are
   timed in the same process, interleaved, over several repetitions of a few optimizer steps.
2. Retention (full mode only; it runs the default recipe end to end, minutes on 2 cores): the
   distilled student's task score relative to the teacher, at its size relative to the teacher,
   and whether it beats the pruned student without distillation on every metric.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import bench_home, cli, ratio, row, spread, summary

BENCH = "distill"
PROMPTS = [
    "What is the capital of Spain?",
    "Write a Python function that adds two numbers.",
    "Explain gravity in simple terms.",
    "What is 6 * 7?",
    "Give me three tips for better sleep.",
    "What is a hash table?",
    "How do I read a file in Python?",
    "Name three planets.",
]


def _examples(teacher: Any, max_new: int) -> list[Any]:
    from distill_tools import batches, prompts, teacher_cache, torch_teacher

    tok = teacher.tokenizer
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    ids = [prompts.prompt_ids(tok, prompt) for prompt in PROMPTS]
    outputs = [
        teacher_cache.TeacherOutput(p, answer, *teacher_cache.topk(logits, 32))
        for p, (answer, logits) in zip(ids, runner.run(ids, [None] * len(ids), max_new))
    ]
    return batches.examples(outputs, max_length=128)


def _student(teacher: Any) -> Any:
    """The default recipe's student shape (weights do not matter for throughput)."""
    from distill_tools import pipeline, recipe

    return pipeline.make_student(recipe.load("default"), teacher, None)[0]


def _ours(teacher: Any, examples: list[Any], steps: int, batch: int, folder: Path) -> float:
    """Tokens/s of distill_tools.train over ``steps`` optimizer steps."""
    from distill_tools import train
    from distill_tools.recipe import LossSection, TrainSection

    model = _student(teacher)
    cfg = TrainSection(
        max_steps=steps, batch_size=batch, warmup_steps=1, checkpoint_every=10**6, freeze_embeddings=False
    )
    start = time.perf_counter()
    state = train.train(
        model, examples, cfg, LossSection(), pad_id=teacher.tokenizer.pad_token_id, seed=0, folder=folder
    )
    elapsed = time.perf_counter() - start
    return sum(h["tokens"] for h in state.history) / elapsed


def _baseline(teacher: Any, examples: list[Any], steps: int, batch: int, folder: Path) -> float:
    """Tokens/s of an HF Trainer whose compute_loss runs the teacher online (the common KD recipe)."""
    import torch
    from transformers import Trainer, TrainingArguments

    from distill_tools import batches
    from distill_tools.losses import ce_loss, combined_loss, divergence
    from distill_tools.recipe import LossSection

    alpha, pad = LossSection().alpha, teacher.tokenizer.pad_token_id
    model = _student(teacher)
    frozen_teacher = teacher.model.eval()

    class KDTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            mask = inputs["mask"]
            with torch.no_grad():
                t_logits = frozen_teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            s_logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            kd = divergence("forward_kl", t_logits[mask], s_logits[mask]).mean()  # full vocabulary, teacher online
            ce = ce_loss(s_logits[mask], inputs["labels"][mask])
            return combined_loss(ce, kd, alpha)

    class Sequences(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(examples)

        def __getitem__(self, i: int) -> Any:
            return examples[i]

    args = TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=3e-4,
        warmup_steps=1,
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    tokens = 0

    def collate(batch_examples: list[Any]) -> dict[str, Any]:
        nonlocal tokens
        out = batches.collate(batch_examples, pad)
        tokens += int(out["attention_mask"].sum())
        return {k: out[k] for k in ("input_ids", "attention_mask", "labels", "mask")}

    trainer = KDTrainer(model=model, args=args, train_dataset=Sequences(), data_collator=collate)
    start = time.perf_counter()
    trainer.train()
    return tokens / (time.perf_counter() - start)


def throughput_rows(quick: bool) -> list[dict[str, Any]]:
    import tempfile

    from assistant.models.registry import embedded_model_path
    from distill_tools.torch_model import load

    reps, steps, batch = (1, 2, 4) if quick else (3, 4, 4)
    teacher = load(str(embedded_model_path()))
    examples = _examples(teacher, 32 if quick else 64)
    ours: list[float] = []
    base: list[float] = []
    for i in range(reps):
        order = [("ours", _ours), ("trainer", _baseline)] if i % 2 == 0 else [("trainer", _baseline), ("ours", _ours)]
        for name, fn in order:
            with tempfile.TemporaryDirectory() as tmp:
                (ours if name == "ours" else base).append(fn(teacher, examples, steps, batch, Path(tmp)))
    o, b = summary(ours)["median"], summary(base)["median"]
    notes = (
        f"default recipe's student (30 layers, 480-channel MLPs), batch {batch}, {steps} steps × {reps} reps, "
        "≤128 tokens; "
        f"ours (cached top-32 teacher log-probs + tail mass) {spread(ours, ' tok/s')}; "
        f"HF Trainer + online teacher {spread(base, ' tok/s')}"
    )
    return [
        row(
            BENCH,
            "training throughput vs HF Trainer KD",
            o,
            "tok/s",
            baseline=b,
            ratio=ratio(o, b),
            target=">= 1.5x",
            notes=notes,
            **summary(ours),
        )
    ]


def _persona_student(teacher: Any) -> Any:
    """A persona run's student as it was until 2026-12-08: the base with LoRA adapters on its middle third."""
    import copy

    from distill_tools import lora, persona

    settings = persona.Settings(layers="middle")
    student = copy.deepcopy(teacher.model)
    for param in student.parameters():
        param.requires_grad_(False)
    layers = persona.learning_layers(student, settings)
    return lora.attach(student, layers, settings.lora_rank, settings.lora_alpha, settings.attention)


def _persona_seconds(teacher: Any, examples: list[Any], epochs: int, kept: bool, folder: Path) -> float:
    """Seconds a persona student's optimizer steps take after its first epoch (the frozen lower third kept from
    the first, or recomputed)."""
    from distill_tools import answer_head, train
    from distill_tools.recipe import LossSection, TrainSection

    model = _persona_student(teacher)
    per_epoch = len(train.epoch_batches(examples, 8, 0, 0))
    cfg = TrainSection(max_steps=epochs * per_epoch, batch_size=8, warmup_steps=1, checkpoint_every=10**6)
    room, answer_head.CACHE_BYTES = answer_head.CACHE_BYTES, answer_head.CACHE_BYTES if kept else 0
    try:
        state = train.train(
            model, examples, cfg, LossSection(), pad_id=teacher.tokenizer.pad_token_id, seed=0, folder=folder
        )
    finally:
        answer_head.CACHE_BYTES = room
    return sum(h["seconds"] for h in state.history[per_epoch:])


def persona_step_rows(quick: bool) -> list[dict[str, Any]]:
    """A persona student's training steps, its frozen lower third (layers 0-9) run once per sequence vs every step."""
    import tempfile

    from assistant.models.registry import embedded_model_path
    from distill_tools.torch_model import load

    reps, epochs = (1, 2) if quick else (3, 3)
    teacher = load(str(embedded_model_path()))
    examples = _examples(teacher, 48) * 2  # a persona's 48-token answers
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(reps):
        for kept in (True, False) if i % 2 == 0 else (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                times[kept].append(_persona_seconds(teacher, examples, epochs, kept, Path(tmp)))
    k, r = summary(times[True])["median"], summary(times[False])["median"]
    notes = (
        f"SmolLM2-135M + LoRA r16 on layers 10-19 (the middle third), {len(examples)} sequences, batch 8: the steps "
        f"of epochs 2-{epochs} × {reps} reps; kept {spread(times[True], ' s')}; recomputed "
        f"{spread(times[False], ' s')}; a run's first epoch computes and keeps them (no gain there)"
    )
    return [
        row(
            BENCH,
            "persona training steps after the first epoch: frozen lower third kept vs recomputed",
            k,
            "s",
            baseline=r,
            ratio=ratio(r, k),
            target=">= 1.1x",
            notes=notes,
            **summary(times[True]),
        )
    ]


def retention_rows() -> list[dict[str, Any]]:
    from distill_tools import pipeline, recipe

    summary_ = pipeline.run(recipe.load("default"))
    models = {m["label"]: m for m in summary_["models"]}
    teacher, distilled = models["teacher"], models["distilled"]
    pruned = models.get("pruned (no distillation)")
    size = distilled["parameters"] / teacher["parameters"]
    beats = pruned is not None and all(
        [
            distilled["task_score"] > pruned["task_score"],
            distilled["mean_kl"] < pruned["mean_kl"],
            distilled["top1_agreement"] > pruned["top1_agreement"],
            distilled["perplexity"] < pruned["perplexity"],
        ]
    )
    detail = "; ".join(
        f"{k}: score {m['task_score']:.0%}, KL {m['mean_kl']:.3f}, top-1 {m['top1_agreement']:.0%}, "
        f"ppl {m['perplexity']:.2f}"
        for k, m in models.items()
    )
    t = summary_["timings_s"]
    return [
        row(
            BENCH,
            "default recipe retention",
            distilled["retention"] * 100,
            "%",
            target=">= 90 %",
            notes=f"at {size:.0%} of the teacher's parameters; {detail}; recipe took {t['total_s']:.0f} s",
        ),
        row(BENCH, "default recipe student size", size * 100, "%", target="<= 60 %"),
        row(BENCH, "distilled beats pruned on every metric", float(beats), "", met=beats, notes=detail),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    with bench_home():
        rows = throughput_rows(quick) + persona_step_rows(quick)
        if not quick:
            rows += retention_rows()
        else:
            rows.append(
                row(
                    BENCH,
                    "default recipe retention",
                    None,
                    "%",
                    target=">= 90 %",
                    notes="full mode only (runs the default recipe, minutes)",
                )
            )
    return rows


if __name__ == "__main__":
    raise SystemExit(cli(run, "bench_distill"))
