"""The training loop: plain PyTorch, AdamW, warmup + cosine, gradient accumulation and clipping,
optional gradient checkpointing, checkpoints every N steps, resume, deterministic with a seed.

The data order is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Ctrl-C finishes the current step, saves a checkpoint and stops.
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

from distill_tools import DistillError
from distill_tools.data import Example, collate
from distill_tools.losses import ce_loss, combined_loss, kd_loss
from distill_tools.recipe import LossSection, TrainSection


class TrainingInterrupted(DistillError):
    """Ctrl-C during training; a checkpoint was saved."""


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per step: loss, kd, ce, lr, tokens, seconds


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to ``peak`` then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def micro_batch(examples: list[Example], index: int, batch_size: int, seed: int) -> list[Example]:
    """The ``index``-th micro-batch of the run: epoch-wise seeded permutations, concatenated."""
    import torch

    per_epoch = math.ceil(len(examples) / batch_size)
    epoch, position = divmod(index, per_epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    return [examples[i] for i in order[position * batch_size:(position + 1) * batch_size]]


def forward_loss(model: Any, batch: dict[str, Any], loss: LossSection) -> tuple[Any, Any, Any]:
    """(total, kd, ce) with the LM head applied only at answer positions (prompt tokens are masked anyway)."""
    hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["mask"]
    logits = model.get_output_embeddings()(hidden[mask])
    everywhere = torch_ones(logits)
    kd = kd_loss(logits, everywhere, kind=loss.kind, temperature=loss.temperature, beta=loss.beta,
                 topk_values=batch["topk_values"][mask], topk_indices=batch["topk_indices"][mask])
    ce = ce_loss(logits, batch["labels"][mask], everywhere)
    return combined_loss(ce, kd, loss.alpha), kd, ce


def torch_ones(logits: Any) -> Any:
    import torch

    return torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device)


def total_steps(n_examples: int, cfg: TrainSection) -> int:
    per_step = cfg.batch_size * cfg.grad_accum
    return cfg.max_steps or cfg.epochs * math.ceil(n_examples / per_step)


def prepare(model: Any, cfg: TrainSection) -> Any:
    """Freeze what the recipe freezes, enable checkpointing; returns the AdamW optimizer."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        model.get_output_embeddings().weight.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(model: Any, examples: list[Example], cfg: TrainSection, loss: LossSection, *, pad_id: int, seed: int,
          folder: Path, on_step: Callable[[TrainState], None] | None = None) -> TrainState:
    """Train ``model`` in place on ``examples``, resuming from ``folder`` if it holds a checkpoint."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    optimizer = prepare(model, cfg)
    state = TrainState(total_steps=total_steps(len(examples), cfg))
    resumed = load_checkpoint(folder, model, optimizer)
    if resumed is not None:
        state.step, state.history = resumed.step, resumed.history
    stop = _CtrlC()
    bar = tqdm(total=state.total_steps, initial=state.step, desc="distill", unit="step", disable=None)
    try:
        with stop:
            while state.step < state.total_steps:
                state.history.append(_step(model, optimizer, examples, cfg, loss, state, pad_id, seed, device))
                state.step += 1
                last = state.history[-1]
                bar.set_postfix(loss=f"{last['loss']:.3f}", kd=f"{last['kd']:.3f}",
                                tok_s=f"{last['tokens'] / max(last['seconds'], 1e-9):.0f}")
                bar.update(1)
                if on_step:
                    on_step(state)
                if stop.requested:
                    save_checkpoint(folder, model, optimizer, state)
                    raise TrainingInterrupted(
                        f"interrupted at step {state.step}/{state.total_steps}; checkpoint saved in {folder}: "
                        "run the same command again to resume"
                    )
                if state.step % cfg.checkpoint_every == 0 and state.step < state.total_steps:
                    save_checkpoint(folder, model, optimizer, state)
    finally:
        bar.close()
    save_checkpoint(folder, model, optimizer, state)
    model.eval()
    return state


def _step(model: Any, optimizer: Any, examples: list[Example], cfg: TrainSection, loss: LossSection,
          state: TrainState, pad_id: int, seed: int, device: Any) -> dict[str, float]:
    import torch

    start = time.perf_counter()
    lr = lr_at(state.step, state.total_steps, cfg.warmup_steps, cfg.lr)
    for group in optimizer.param_groups:
        group["lr"] = lr
    totals = {"loss": 0.0, "kd": 0.0, "ce": 0.0}
    tokens = 0
    optimizer.zero_grad(set_to_none=True)
    for j in range(cfg.grad_accum):
        examples_j = micro_batch(examples, state.step * cfg.grad_accum + j, cfg.batch_size, seed)
        batch = {k: v.to(device) for k, v in collate(examples_j, pad_id).items()}
        total, kd, ce = forward_loss(model, batch, loss)
        (total / cfg.grad_accum).backward()
        for name, value in (("loss", total), ("kd", kd), ("ce", ce)):
            totals[name] += float(value.detach()) / cfg.grad_accum
        tokens += int(batch["attention_mask"].sum())
    if cfg.clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.clip)
    optimizer.step()
    return {**totals, "lr": lr, "tokens": tokens, "seconds": time.perf_counter() - start}


class _CtrlC:
    """While active (main thread only), the first Ctrl-C asks the loop to stop at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# -- checkpoints: <folder>/ckpt-NNNNNN/{model.safetensors, optimizer.pt, state.json}, <folder>/latest
def save_checkpoint(folder: Path, model: Any, optimizer: Any, state: TrainState) -> Path:
    """Write a checkpoint directory under a temporary name, rename it, then point ``latest`` at it."""
    import torch
    from safetensors.torch import save_model

    from assistant.files import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state.step:06d}"
    partial = folder / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_model(model, str(partial / "model.safetensors"))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
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
    import torch
    from safetensors.torch import load_model

    pointer = folder / "latest"
    if not pointer.exists():
        return None
    where = folder / pointer.read_text().strip()
    try:
        load_model(model, str(where / "model.safetensors"))
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(where / "optimizer.pt", weights_only=True))
        data = json.loads((where / "state.json").read_text())
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DistillError(f"cannot resume from {where}: {exc}; delete {folder} to start over") from None
    return TrainState(**data)
