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


def frozen_low(layers: int = 4, frozen: int = 2) -> torch.nn.Module:
    """A small llama whose embeddings and first ``frozen`` layers never learn (as a persona student's lower third)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = LlamaForCausalLM(config)
    model.get_input_embeddings().weight.requires_grad_(False)
    for layer in model.get_decoder().layers[:frozen]:
        layer.requires_grad_(False)
    return model


def test_frozen_lower_layers_run_once_per_sequence_and_change_nothing() -> None:
    """The layers below the first that learns run on a sequence's first pass only; later passes (padded otherwise,
    beside other sequences) start from what was kept and give the same logits and gradients as the whole decoder."""
    from distill_tools.answer_head import AnswerHead, frozen_below

    model = frozen_low()
    assert frozen_below(model) == 2
    a, b, c = make_examples([2, 4, 9])
    calls: list[int] = []
    model.get_decoder().layers[0].register_forward_hook(lambda *_: calls.append(1))
    kept = AnswerHead(model, frozen_below(model))
    for i, batch in enumerate(([a, b], [c], [b, a, c], [c, a])):  # the last two: all kept, padded to another length
        tensors = batches.collate(batch, pad_id=0)
        args = (tensors["input_ids"], tensors["attention_mask"], tensors["mask"])
        before = len(calls)
        model.zero_grad()
        got = kept(*args)
        got.square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad()
        want = AnswerHead(model)(*args)
        want.square().sum().backward()
        assert torch.allclose(got, want, atol=1e-5)
        for g, w in zip(grads, [p.grad for p in model.parameters() if p.requires_grad]):
            assert torch.allclose(g, w, atol=1e-5)
        ran_lower = len(calls) - before == 2  # kept once, then the whole decoder for comparison
        assert ran_lower == (i < 2)


def test_training_with_the_kept_lower_layers_gives_the_same_student(tmp_path: Path) -> None:
    from distill_tools import answer_head

    examples = make_examples([2, 5, 3, 7, 4, 6])
    cfg = TrainSection(max_steps=6, batch_size=2, warmup_steps=1, lr=1e-2, checkpoint_every=100)
    students = []
    for room in (answer_head.CACHE_BYTES, 0):
        model = frozen_low()
        answer_head.CACHE_BYTES, saved = room, answer_head.CACHE_BYTES
        try:
            train.train(model, examples, cfg, LossSection(), pad_id=0, seed=1, folder=tmp_path / str(room))
        finally:
            answer_head.CACHE_BYTES = saved
        students.append(model.state_dict())
    for name, weight in students[0].items():
        assert torch.allclose(weight, students[1][name], atol=1e-5), name
    assert not torch.equal(
        students[0]["model.layers.3.mlp.up_proj.weight"], frozen_low().state_dict()["model.layers.3.mlp.up_proj.weight"]
    )
