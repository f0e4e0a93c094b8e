"""The training loop: plain PyTorch, AdamW, warmup + cosine, gradient accumulation and clipping,
optional gradient checkpointing, checkpoints every N steps, resume, deterministic with a seed.

A step's loss is the mean over every answer token of its micro-batches (token-weighted: a
micro-batch of long answers counts for its tokens, not as one batch). The data order is a pure
function of (seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
Checkpoints carry the key of the settings that produced them: a checkpoint made with other
settings is never resumed. Ctrl-C finishes the current step, saves a checkpoint and stops.

Under ``torchrun`` (see ``distributed``) every rank takes its share of each step's examples (every N-th),
divides its loss by the step's global token count and the gradients are summed over the ranks: the same
step as one process makes, within float rounding. With ``[train] fsdp = true`` the ranks also shard the
weights, gradients and optimizer state (see ``sharding``). Rank 0 alone writes checkpoints; Ctrl-C stops every
rank at the same step boundary. On CUDA the forward passes run under bf16 autocast.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from tqdm import tqdm

from assistant.storage.files import atomic_write_text
from distill_tools import DistillError, Interrupted, distributed, threads
from distill_tools.answer_head import AnswerHead, frozen_below
from distill_tools.batches import Example, collate
from distill_tools.losses import ce_loss, combined_loss, kd_loss
from distill_tools.progress import Say, interactive
from distill_tools.recipe import LossSection, TrainSection

RESUME_MODES = ("auto", "resume", "fresh")


class TrainingInterrupted(Interrupted):
    """Ctrl-C during training; a checkpoint was saved."""

    def __init__(self, step: int, total: int, folder: Path) -> None:
        self.step, self.total, self.folder = step, total, folder
        super().__init__(
            f"interrupted at step {step}/{total}; checkpoint saved in {folder}: run the same command again to resume"
        )


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per step: loss, kd, ce, tail, lr, tokens, seconds
    stopped_early: bool = False  # the held-out general KL passed its budget (``Replay.max_kl``)


@dataclass
class Replay:
    """A KL-to-the-base term: every step also fits ``per_step`` of ``examples`` (general prompts with the frozen
    base model's top-k targets), weighted ``weight`` against the step's own loss. With ``max_kl``, every
    ``check_every`` steps the student's mean KL to the base on ``heldout`` (other general prompts) is measured;
    past the budget, training stops with the weights of the last check within it."""

    examples: list[Example]
    per_step: int = 4
    weight: float = 1.0
    heldout: list[Example] = field(default_factory=list)
    max_kl: float = 0.0  # 0 = no early stopping
    check_every: int = 8


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to ``peak`` then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


BUCKET_TOKENS = 256  # sequences batch with others of the same length bucket (0–255 tokens, 256–511, …)


def micro_batch(examples: list[Example], index: int, batch_size: int, seed: int) -> list[Example]:
    """The ``index``-th micro-batch of the run: epoch-wise seeded permutations, concatenated."""
    per_epoch = len(epoch_batches(examples, batch_size, seed, 0))
    epoch, position = divmod(index, per_epoch)
    return [examples[i] for i in epoch_batches(examples, batch_size, seed, epoch)[position]]


def epoch_batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's micro-batches (indices): a seeded permutation cut into batches within each length bucket, so a
    long sequence never pads a batch of short ones; with several buckets the batches come in a seeded order too."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(examples), generator=generator).tolist()
    buckets: dict[int, list[int]] = {}
    for i in order:
        buckets.setdefault(len(examples[i].input_ids) // BUCKET_TOKENS, []).append(i)
    cut = [b[j : j + batch_size] for b in buckets.values() for j in range(0, len(b), batch_size)]
    if len(buckets) == 1:
        return cut
    return [cut[i] for i in torch.randperm(len(cut), generator=generator).tolist()]


def forward_loss(model: nn.Module, batch: dict[str, Any], loss: LossSection) -> dict[str, Any]:
    """Sums over the batch's answer tokens: total, kd, ce (tensors), tail (the student's probability outside
    the teacher's top-k, a float), and their count. ``model``: the student, or its (sharded) ``AnswerHead``."""
    head = model if isinstance(model, AnswerHead) else AnswerHead(model)
    mask = batch["mask"]
    logits = head(batch["input_ids"], batch["attention_mask"], mask)
    indices = batch["teacher_indices"][mask]
    kd = kd_loss(
        logits,
        batch["teacher_logprobs"][mask],
        indices,
        kind=loss.kind,
        temperature=loss.temperature,
        beta=loss.beta,
        teacher_tail=batch["teacher_tail"][mask],
        reduction="sum",
    )
    ce = ce_loss(logits, batch["labels"][mask], reduction="sum")
    with torch.no_grad():
        tail = 1 - torch.softmax(logits.float(), -1).gather(-1, indices).sum(-1)
    return {
        "total": combined_loss(ce, kd, loss.alpha),
        "kd": kd,
        "ce": ce,
        "tail": float(tail.sum()),
        "tokens": int(mask.sum()),
    }


def total_steps(examples: list[Example], cfg: TrainSection) -> int:
    """``cfg.max_steps``, else the epochs' micro-batches (length buckets counted apart) in steps of ``grad_accum``."""
    per_epoch = len(epoch_batches(examples, cfg.batch_size, 0, 0))
    return cfg.max_steps or cfg.epochs * math.ceil(per_epoch / cfg.grad_accum)


def prepare(model: Any, cfg: TrainSection) -> None:
    """Freeze what the recipe freezes, enable gradient checkpointing, training mode."""
    torch.set_num_threads(cfg.threads or threads.choose())
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        model.get_output_embeddings().weight.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()


def optimizer_for(model: nn.Module, cfg: TrainSection) -> Any:
    """AdamW over the parameters that learn."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(
    model: Any,
    examples: list[Example],
    cfg: TrainSection,
    loss: LossSection,
    *,
    pad_id: int,
    seed: int,
    folder: Path,
    on_step: Callable[[TrainState], None] | None = None,
    settings: dict[str, Any] | None = None,
    resume: str = "auto",
    say: Say | None = None,
    replay: Replay | None = None,
) -> TrainState:
    """Train ``model`` in place on ``examples``, resuming from ``folder`` if it holds a checkpoint made with the
    same ``settings`` (see ``checkpoint_matches`` for ``resume``). Sharded (``cfg.fsdp`` under torchrun), the
    ranks train a sharded copy and rank 0's ``model`` receives its weights at each checkpoint and at the end."""
    torch.manual_seed(seed)
    place = distributed.world()
    say = say if place.main else None
    device = distributed.device()
    sharded = cfg.fsdp and place.parallel
    if replay is not None and place.parallel:
        raise DistillError("a replay set (KL to the base) trains in one process only, not under torchrun")
    prepare(model, cfg)
    learner: AnswerHead  # what trains: the student's head (keeping its frozen layers' outputs), or its sharded copy
    if sharded:
        from distill_tools import sharding  # only here: FSDP (torch.distributed.fsdp) loads for a sharded run alone

        learner = sharding.shard(model, device)
        if say:
            say(f"fsdp: each of {place.size} ranks holds {sharding.local_share(learner):.0%} of the parameters")
    else:
        if cfg.fsdp and say:
            say("fsdp: one process holds the whole student (run under torchrun, e.g. --nproc 2, to shard it)")
        model.to(device)
        learner = AnswerHead(model, frozen_below(model))
    optimizer = optimizer_for(learner, cfg)
    state = TrainState(total_steps=total_steps(examples, cfg))
    settings = settings if settings is not None else training_settings(cfg, loss, seed)
    if sharded:  # full-tensor checkpoints keyed by name: resumable by sharded runs only
        settings = {**settings, "sharded": True}

    def checkpoint() -> None:
        """Every rank calls (gathering shards is a collective); rank 0 writes."""
        if sharded:
            sharding.gather(learner, model)
            optimizer_state = sharding.optimizer_state(learner, optimizer)
        else:
            optimizer_state = optimizer.state_dict() if place.main else {}
        if place.main:
            save_checkpoint(folder, model, optimizer_state, state)

    matches = checkpoint_matches(folder, settings, resume, say)
    distributed.barrier()  # every rank has looked before rank 0 clears anything
    if place.main:
        if not matches:
            clear_checkpoints(folder)
        write_settings(folder, settings)
    distributed.barrier()
    if matches:
        resumed = load_checkpoint(folder, model, None if sharded else optimizer)
        if resumed is not None:
            state.step, state.history = resumed.step, resumed.history
            if sharded:
                sharding.scatter(learner, model, optimizer, read_optimizer_state(folder))
    guard = _KLGuard(model, replay)
    stop = _CtrlC(forgiving=place.parallel)
    bar = tqdm(
        total=state.total_steps,
        initial=state.step,
        desc="distill",
        unit="step",
        disable=not interactive() or not place.main,
    )
    try:
        with stop:
            while state.step < state.total_steps:
                state.history.append(
                    _step(learner, optimizer, examples, cfg, loss, state, pad_id, seed, device, replay)
                )
                state.step += 1
                last = state.history[-1]
                if guard.over_budget(state, pad_id, device):
                    state.stopped_early = True
                    state.total_steps = state.step
                    if say:
                        say(
                            f"train: held-out general KL {last['general_kl']:.3f} passed its budget at step "
                            f"{state.step}: stopping with the weights of step {guard.good_step}"
                        )
                    break
                bar.set_postfix(
                    loss=f"{last['loss']:.3f}",
                    kd=f"{last['kd']:.3f}",
                    tok_s=f"{last['tokens'] / max(last['seconds'], 1e-9):.0f}",
                )
                bar.update(1)
                if on_step:
                    on_step(state)
                if _stop_requested(stop):
                    break
                if state.step == state.total_steps:
                    checkpoint()  # the finished weights: exporting again (another quant, merge scale) does not retrain
                elif state.step % cfg.checkpoint_every == 0:
                    checkpoint()
                    if say and not interactive():
                        say(
                            f"train: step {state.step}/{state.total_steps}, {step_figures(state.history[-1])} "
                            "(checkpoint saved)"
                        )
            if _stop_requested(stop):  # also a Ctrl-C during the step the guard stopped at
                checkpoint()
                distributed.barrier()
                raise TrainingInterrupted(state.step, state.total_steps, folder)
    finally:
        bar.close()
    checkpoint()
    model.eval()
    return state


def _stop_requested(stop: "_CtrlC") -> bool:
    """Whether any rank's Ctrl-C asked to stop (a collective: every rank calls it at the same point)."""
    return distributed.all_reduce_sum([float(stop.requested)])[0] > 0


def _step(
    model: Any,
    optimizer: Any,
    examples: list[Example],
    cfg: TrainSection,
    loss: LossSection,
    state: TrainState,
    pad_id: int,
    seed: int,
    device: Any,
    replay: Replay | None = None,
) -> dict[str, float]:
    """One optimizer step; ``model`` is the student's ``AnswerHead`` (sharded under FSDP); ``replay`` adds its term."""
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads or threads.choose())  # re-measured every few seconds: load comes and goes
    lr = lr_at(state.step, state.total_steps, cfg.warmup_steps, cfg.lr)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    first = state.step * cfg.grad_accum
    batches = [micro_batch(examples, first + j, cfg.batch_size, seed) for j in range(cfg.grad_accum)]
    answer_tokens = sum(e.n_answer for batch in batches for e in batch)
    place = distributed.world()
    sharded = cfg.fsdp and place.parallel
    idle: set[int] = set()
    if sharded:  # every rank runs every micro-batch's collectives: an empty share counts nothing
        idle = {j for j, batch in enumerate(batches) if not batch[place.rank :: place.size]}
        batches = [batch[place.rank :: place.size] or batch[:1] for batch in batches]
    elif place.parallel:  # this rank's share: every N-th example of each micro-batch
        batches = [mine for batch in batches if (mine := batch[place.rank :: place.size])]
    totals = accumulate(model, batches, loss, pad_id, device, answer_tokens, idle)
    if replay is not None and replay.examples:
        totals["replay_kl"] = replay_term(model, replay, state.step, pad_id, seed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if place.parallel:
        if not sharded:  # (sharded, the backward passes reduce-scattered them already)
            distributed.all_reduce_gradients(params)
        names = ("loss", "kd", "ce", "tail", "tokens")
        totals = dict(zip(names, distributed.all_reduce_sum([float(totals[n]) for n in names])))
        totals["tokens"] = int(totals["tokens"])
    if cfg.clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
    optimizer.step()
    return {**totals, "lr": lr, "seconds": time.perf_counter() - start}


def accumulate(
    model: Any,
    batches: list[list[Example]],
    loss: LossSection,
    pad_id: int,
    device: Any = "cpu",
    answer_tokens: int = 0,
    idle: set[int] | None = None,
) -> dict[str, float]:
    """Backpropagate the mean loss over every answer token of ``batches`` (or over ``answer_tokens``, the step's
    count on every rank; gradients add up in ``.grad``); returns the step's token-weighted loss, kd, ce and
    student tail mass, and its token count. The ``idle`` micro-batches run with weight 0 (a sharded rank with
    no examples in them still takes part in their collectives)."""
    answer_tokens = answer_tokens or sum(e.n_answer for batch in batches for e in batch)
    totals = {"loss": 0.0, "kd": 0.0, "ce": 0.0, "tail": 0.0, "tokens": 0}
    cuda = torch.device(device).type == "cuda"
    for j, examples in enumerate(batches):
        batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            sums = forward_loss(model, batch, loss)
        if idle and j in idle:
            (sums["total"] * 0.0).backward()
            continue
        (sums["total"] / answer_tokens).backward()
        for name, key in (("loss", "total"), ("kd", "kd"), ("ce", "ce"), ("tail", "tail")):
            value = sums[key]
            totals[name] += float(value.detach() if hasattr(value, "detach") else value) / answer_tokens
        totals["tokens"] += int(batch["attention_mask"].sum())
    return totals


def replay_term(model: Any, replay: Replay, step: int, pad_id: int, seed: int, device: Any) -> float:
    """Backpropagate ``replay.weight`` × the mean KL(base ‖ student) over this step's replay micro-batch (pure
    KD: the base's distribution is the target, not its sampled words); returns that mean KL."""
    batch = micro_batch(replay.examples, step, replay.per_step, seed + 1)
    tokens = sum(e.n_answer for e in batch)
    kl_only = LossSection(alpha=0.0)
    sums = forward_loss(model, {k: v.to(device) for k, v in collate(batch, pad_id).items()}, kl_only)
    (sums["total"] * (replay.weight / tokens)).backward()
    return float(sums["kd"].detach()) / tokens


def general_kl(model: Any, examples: list[Example], pad_id: int, device: Any = "cpu", batch_size: int = 8) -> float:
    """The student's mean KL to the base per answer token on ``examples`` (no gradients)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
            sums = forward_loss(model, batch, LossSection(alpha=0.0))
            total, tokens = total + float(sums["kd"]), tokens + sums["tokens"]
    model.train(was_training)
    return total / max(1, tokens)


class _KLGuard:
    """Early stopping on the held-out general KL (see ``Replay``): remembers the learning weights of the last
    check within the budget and puts them back when a check passes it."""

    def __init__(self, model: Any, replay: Replay | None) -> None:
        self.model, self.replay = model, replay
        self.active = bool(replay and replay.max_kl > 0 and replay.heldout)
        self.good_step = 0
        self._good = self._learning_weights() if self.active else {}

    def _learning_weights(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def over_budget(self, state: TrainState, pad_id: int, device: Any) -> bool:
        """Check every ``check_every`` steps and at the end; True (weights restored) past the budget."""
        replay = self.replay
        if not self.active or replay is None:
            return False
        if state.step % replay.check_every and state.step < state.total_steps:
            return False
        kl = general_kl(self.model, replay.heldout, pad_id, device)
        state.history[-1]["general_kl"] = kl
        if kl <= replay.max_kl:
            self.good_step, self._good = state.step, self._learning_weights()
            return False
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self._good:
                    param.copy_(self._good[name])
        return True


def step_figures(record: dict[str, float]) -> str:
    """One step's figures for a progress line."""
    return (
        f"loss {record['loss']:.3f}, kd {record['kd']:.3f}, ce {record['ce']:.3f}, "
        f"student mass outside the teacher's top-k {record.get('tail', 0.0):.1%}"
    )


class _CtrlC:
    """While active (main thread only), the first Ctrl-C asks the loop to stop at the next step boundary.

    ``forgiving`` (under torchrun, whose agent forwards the terminal's Ctrl-C a second time): every Ctrl-C only
    asks; the agent kills ranks that do not stop within its grace period."""

    def __init__(self, forgiving: bool = False) -> None:
        self.requested, self.forgiving = False, forgiving
        self._previous: Any = None

    def __enter__(self) -> "_CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and not self.forgiving:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# -- checkpoints: <folder>/ckpt-NNNNNN/{model.safetensors, optimizer.pt, state.json}, <folder>/latest,
#    <folder>/settings.json (what produced them)
def training_settings(cfg: TrainSection, loss: LossSection, seed: int) -> dict[str, Any]:
    """The settings a checkpoint depends on (how often it is saved, threads and recomputation do not count)."""
    ignored = ("checkpoint_every", "threads", "gradient_checkpointing", "fsdp")  # fsdp: see train's "sharded"
    train = {k: v for k, v in asdict(cfg).items() if k not in ignored}
    return {"train": train, "loss": asdict(loss), "seed": seed}


def checkpoint_matches(folder: Path, settings: dict[str, Any], resume: str = "auto", say: Say | None = None) -> bool:
    """Whether the checkpoint in ``folder`` may be resumed under ``settings``.

    ``auto``: yes if it was made with the same settings, else start fresh and say which changed;
    ``resume``: yes, and refuse (one line) when there is none or the settings changed; ``fresh``: no."""
    if resume not in RESUME_MODES:
        raise DistillError(f"unknown resume mode {resume!r} (known: {', '.join(RESUME_MODES)})")
    settings = json.loads(json.dumps(settings, sort_keys=True))  # compared as they are stored
    exists = (folder / "latest").exists()
    if resume == "fresh":
        if exists and say:
            say(f"checkpoint: starting fresh as asked (discarding {folder})")
        return False
    if not exists:
        if resume == "resume":
            raise DistillError(f"--resume: no checkpoint in {folder}")
        return False
    changed = changed_settings(read_settings(folder), settings)
    if not changed:
        return True
    what = ", ".join(changed[:6]) + (", …" if len(changed) > 6 else "")
    if resume == "resume":
        raise DistillError(
            f"--resume: the checkpoint in {folder} was made with other settings ({what}); use --fresh to start over"
        )
    if say:
        say(f"checkpoint: the recipe changed since the checkpoint ({what}): starting fresh")
    return False


def changed_settings(old: dict[str, Any] | None, new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (every one, when the old settings are unknown)."""
    if old is None:
        return ["unknown settings (checkpoint from an older version)"]
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names


def read_settings(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError):
        return None


def write_settings(folder: Path, settings: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "settings.json", json.dumps(settings, indent=2, sort_keys=True))


def clear_checkpoints(folder: Path) -> None:
    """Forget every checkpoint in ``folder`` (the pointer first, so a crash midway leaves nothing resumable)."""
    (folder / "latest").unlink(missing_ok=True)
    for old in folder.glob("*ckpt-*"):
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(folder: Path, model: Any, optimizer_state: dict[str, Any], state: TrainState) -> Path:
    """Write a checkpoint directory under a temporary name, rename it, then point ``latest`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state.step:06d}"
    partial = folder / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_model(model, str(partial / "model.safetensors"))
    torch.save(optimizer_state, partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps(asdict(state)))
    shutil.rmtree(folder / name, ignore_errors=True)
    partial.rename(folder / name)
    atomic_write_text(folder / "latest", name)
    for old in folder.glob("ckpt-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return folder / name


def load_checkpoint(folder: Path, model: Any, optimizer: Any | None) -> TrainState | None:
    """Restore the latest checkpoint into ``model`` (and ``optimizer``); None if there is none."""
    pointer = folder / "latest"
    if not pointer.exists():
        return None
    where = folder / pointer.read_text().strip()
    try:
        load_model(model, str(where / "model.safetensors"))
        if optimizer is not None:
            optimizer.load_state_dict(read_optimizer_state(folder))
        data = json.loads((where / "state.json").read_text())
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DistillError(f"cannot resume from {where}: {exc}; delete {folder} to start over") from None
    return TrainState(**data)


def read_optimizer_state(folder: Path) -> dict[str, Any]:
    """The latest checkpoint's optimizer state (tensors and numbers only: ``weights_only``)."""
    where = folder / (folder / "latest").read_text().strip()
    try:
        return torch.load(where / "optimizer.pt", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DistillError(f"cannot resume from {where}: {exc}; delete {folder} to start over") from None
