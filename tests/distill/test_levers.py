"""The levers that keep the base's skills: the KL-to-the-base replay term mixed into every step, early stopping on
the held-out general KL, LoRA adapters merged before the export, threads for a shared machine."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from test_train import make_examples, small_model

from distill_tools import lora, threads, train
from distill_tools.recipe import LossSection, TrainSection

CFG = TrainSection(max_steps=4, batch_size=2, lr=1e-2, warmup_steps=1, checkpoint_every=100, threads=1)


def test_replay_term_is_the_kl_to_the_base_and_keeps_the_student_near_it(tmp_path: Path) -> None:
    general = make_examples([4, 5, 6, 3], seed=7)
    first = train.micro_batch(general, 0, 2, seed=1)  # step 0's replay micro-batch (seed + 1)
    at_start = train.general_kl(small_model(), first, pad_id=0)
    kept, drifted = small_model(), small_model()
    state = train.train(
        kept,
        make_examples([3, 4, 5, 6]),
        CFG,
        LossSection(),
        pad_id=0,
        seed=0,
        folder=tmp_path / "kept",
        replay=train.Replay(examples=general, per_step=2, weight=4.0),
    )
    train.train(drifted, make_examples([3, 4, 5, 6]), CFG, LossSection(), pad_id=0, seed=0, folder=tmp_path / "d")
    assert math.isclose(state.history[0]["replay_kl"], at_start, rel_tol=1e-4)
    assert all(h["replay_kl"] > 0 for h in state.history)
    assert train.general_kl(kept, general, 0) < train.general_kl(drifted, general, 0)


def test_early_stopping_restores_the_last_weights_within_the_kl_budget(tmp_path: Path) -> None:
    heldout = make_examples([5, 5], seed=11)
    model = small_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    budget = train.general_kl(model, heldout, 0) + 1e-6  # any learning passes it
    replay = train.Replay(examples=make_examples([4, 4], seed=7), heldout=heldout, max_kl=budget, check_every=1)
    state = train.train(
        model, make_examples([3, 4, 5, 6]), CFG, LossSection(), pad_id=0, seed=0, folder=tmp_path, replay=replay
    )
    assert state.stopped_early and state.step == 1 and state.history[-1]["general_kl"] > budget
    assert all(torch.equal(p, start[n]) for n, p in model.named_parameters())


def test_lora_learns_only_adapters_and_merges_into_the_chosen_layers(tmp_path: Path) -> None:
    base = small_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    for p in base.parameters():
        p.requires_grad_(False)
    model = lora.attach(base, [1], rank=4, alpha=8)
    learning = [n for n, p in model.named_parameters() if p.requires_grad]
    assert learning and all("lora_" in n and ".layers.1." in n for n in learning)
    train.train(model, make_examples([3, 4, 5, 6]), CFG, LossSection(), pad_id=0, seed=0, folder=tmp_path)
    merged = lora.merge(model).state_dict()
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed), changed
    assert set(merged) == set(before)  # a plain model again: what the GGUF export reads


def test_a_merge_scale_adds_that_share_of_the_learned_change(tmp_path: Path) -> None:
    """WiSE-FT at export: ``merge(model, 0.5)`` moves each adapted weight half as far from the base as a full merge;
    a scale outside [0, 1] is one clear error."""
    import copy

    import pytest

    from distill_tools import DistillError

    base = small_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    for p in base.parameters():
        p.requires_grad_(False)
    model = lora.attach(base, [1], rank=4, alpha=8)
    train.train(model, make_examples([3, 4, 5, 6]), CFG, LossSection(), pad_id=0, seed=0, folder=tmp_path)
    with pytest.raises(DistillError, match="between 0 and 1"):
        lora.merge(copy.deepcopy(model), 1.5)
    half = lora.merge(copy.deepcopy(model), 0.5).state_dict()
    full = lora.merge(model).state_dict()
    changed = [k for k in before if not torch.equal(before[k], full[k])]
    assert changed
    for k in changed:
        torch.testing.assert_close(half[k] - before[k], 0.5 * (full[k] - before[k]), rtol=1e-3, atol=1e-6)


def test_threads_leave_the_cores_other_processes_keep_busy(monkeypatch) -> None:  # noqa: ANN001
    assert threads.idle_share(2, 0.1) == 2
    assert threads.idle_share(2, 1.0) == 1  # one busy process on 2 cores: one thread
    assert threads.idle_share(2, 2.5) == 1  # never fewer than one
    assert threads.idle_share(8, 0.5) == 7
    monkeypatch.setenv("ASSISTANT_THREADS", "1")
    assert threads.choose() == 1  # the user's setting wins
