"""The training loop on a small real llama model: token-weighted accumulation, checkpoints keyed to settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distill_tools import DistillError, batches, train
from distill_tools.losses import teacher_targets
from distill_tools.recipe import LossSection, TrainSection

VOCAB = 96


def small_model(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def make_examples(lengths: list[int], seed: int = 3) -> list[batches.Example]:
    """Prompt of 3 tokens + answers of the given lengths, with teacher targets from another random model."""
    rng = np.random.default_rng(seed)
    teacher = small_model(seed=99)
    examples = []
    for n in lengths:
        ids = rng.integers(1, VOCAB, size=3 + n).tolist()
        with torch.no_grad():
            logits = teacher(torch.tensor([ids])).logits[0, 2 : 2 + n]
        logprobs, indices, tail = teacher_targets(logits, 6)
        examples.append(
            batches.Example(
                ids, 3, logprobs.numpy().astype(np.float16), indices.numpy().astype(np.uint16), tail.numpy()
            )
        )
    return examples


def gradients(batches: list[list[batches.Example]]) -> tuple[dict[str, float], list[torch.Tensor]]:
    model = small_model()
    totals = train.accumulate(model, batches, LossSection(alpha=0.3), pad_id=0)
    return totals, [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_gradient_accumulation_weights_every_token_equally() -> None:
    """Two micro-batches of 1 and 9 answer tokens give the gradient of one batch holding both (not a mean of means)."""
    short, long = make_examples([1, 9])
    split_totals, split = gradients([[short], [long]])
    whole_totals, whole = gradients([[short, long]])
    assert len(split) == len(whole) > 0
    for a, b in zip(split, whole):
        assert torch.allclose(a, b, atol=1e-6)
    for key in ("loss", "kd", "ce", "tail"):
        assert split_totals[key] == pytest.approx(whole_totals[key], rel=1e-5)
    assert 0 < whole_totals["tail"] < 1


def _run(
    folder: Path, examples: list[batches.Example], lr: float, resume: str = "auto", lines: list[str] | None = None
) -> tuple[torch.nn.Module, train.TrainState]:
    model = small_model()
    cfg = TrainSection(max_steps=3, batch_size=2, warmup_steps=1, lr=lr, checkpoint_every=100)
    state = train.train(
        model,
        examples,
        cfg,
        LossSection(),
        pad_id=0,
        seed=1,
        folder=folder,
        resume=resume,
        say=(lines.append if lines is not None else None),
    )
    return model, state


def test_a_changed_recipe_never_resumes_a_stale_checkpoint(tmp_path: Path) -> None:
    examples = make_examples([4, 2, 5, 3])
    first, first_state = _run(tmp_path, examples, lr=1e-3)
    assert first_state.step == 3
    # the same settings: resumed, nothing left to train
    lines: list[str] = []
    _, again = _run(tmp_path, examples, lr=1e-3, lines=lines)
    assert again.step == 3 and [h["loss"] for h in again.history] == [h["loss"] for h in first_state.history]
    assert not lines
    # --resume with other settings: refused in one line naming what changed
    with pytest.raises(DistillError, match=r"--resume: .*other settings \(train\.lr\); use --fresh"):
        _run(tmp_path, examples, lr=5e-3, resume="resume")
    # the default: a changed lr starts fresh and says so
    changed, changed_state = _run(tmp_path, examples, lr=5e-3, lines=lines)
    assert lines == ["checkpoint: the recipe changed since the checkpoint (train.lr): starting fresh"]
    assert changed_state.step == 3 and len(changed_state.history) == 3
    assert changed_state.history[0]["lr"] != first_state.history[0]["lr"]
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), changed.state_dict().values()))
    # --fresh retrains even with the same settings, and gives the same result as the first fresh run
    lines.clear()
    fresh, fresh_state = _run(tmp_path, examples, lr=5e-3, resume="fresh", lines=lines)
    assert lines and lines[0].startswith("checkpoint: starting fresh as asked")
    assert [h["loss"] for h in fresh_state.history] == [h["loss"] for h in changed_state.history]
    with pytest.raises(DistillError, match="--resume: no checkpoint"):
        _run(tmp_path / "empty", examples, lr=1e-3, resume="resume")


def test_long_sequences_batch_with_long_ones_and_every_example_comes_once_an_epoch() -> None:
    """Open-book sequences (retrieved passages in the prompt, ~400 tokens) mixed with 60-token ones: each micro-batch
    holds one length bucket only, so a long sequence never pads a batch of short ones to its length; an epoch
    still serves every example once, and one bucket keeps the plain seeded permutation."""
    short = [batches.Example(list(range(60)), 3, *_targets(57)) for _ in range(10)]
    long = [batches.Example(list(range(400)), 3, *_targets(397)) for _ in range(3)]
    mixed = short + long
    per_epoch = len(train.epoch_batches(mixed, 4, seed=0, epoch=0))
    assert per_epoch == 3 + 1  # 10 short: 4 + 4 + 2; 3 long: one batch
    nine = short[:9] + long  # 12 sequences: 3 batches of 4 unbucketed, 3 + 1 in buckets: every one is trained
    assert train.total_steps(nine, TrainSection(epochs=2, batch_size=4)) == 2 * 4
    assert train.total_steps(nine, TrainSection(epochs=2, batch_size=4, grad_accum=2)) == 2 * 2
    assert train.total_steps(short, TrainSection(epochs=3, batch_size=4, grad_accum=2)) == 3 * 2  # as before
    for epoch in range(2):
        seen = [train.micro_batch(mixed, epoch * per_epoch + k, 4, seed=0) for k in range(per_epoch)]
        assert all(len({len(e.input_ids) for e in batch}) == 1 for batch in seen)
        assert sorted(id(e) for batch in seen for e in batch) == sorted(id(e) for e in mixed)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    assert train.epoch_batches(short, 4, seed=0, epoch=0) == [order[:4], order[4:8], order[8:]]


def _targets(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((n, 2), np.float16), np.zeros((n, 2), np.uint16), np.zeros(n, np.float32)
