"""Losses against the full-vocabulary computation, direct formulas and known identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill_tools import teacher_cache
from distill_tools.losses import (
    KINDS,
    ce_loss,
    combined_loss,
    divergence,
    generalized_jsd,
    kd_loss,
    teacher_targets,
)

torch.manual_seed(0)
T_LOGITS = torch.randn(3, 5, 11)
S_LOGITS = torch.randn(3, 5, 11)
VOCAB, K = 400, 8


def direct_kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def softmax(xs: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def peaked_teacher(positions: int = 6) -> torch.Tensor:
    """A teacher that is confident in a few tokens, like a trained LM (most mass inside its top-k)."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(positions, VOCAB, generator=generator)
    logits[:, :K] += 6.0
    return logits


def student_outside_topk(teacher: torch.Tensor, shift: float) -> torch.Tensor:
    """The teacher's logits, with every token outside the teacher's top-k raised by ``shift``: the same shape
    inside the top-k and inside the tail, but ``shift`` moves the student's mass out of the teacher's top-k."""
    _, indices, _ = teacher_targets(teacher, K)
    student = teacher + shift
    return student.scatter(-1, indices, teacher.gather(-1, indices))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_topk_plus_tail_equals_the_full_vocabulary_loss_when_the_tails_are_alike(kind: str, t: float) -> None:
    """The student's mass sits outside the teacher's top-k; the tail bucket sees all of it, at any temperature."""
    teacher = peaked_teacher()
    student = student_outside_topk(teacher, 5.0)
    logprobs, indices, tail = teacher_targets(teacher, K, t)
    full = divergence(kind, teacher, student, t)
    bucketed = kd_loss(student, logprobs, indices, kind=kind, temperature=t, teacher_tail=tail, reduction="none")
    assert torch.allclose(bucketed, full, rtol=1e-4, atol=1e-5)
    assert full.min() > 0.1  # not a trivially small case (JSD is at most ln 2)


@pytest.mark.parametrize("kind", KINDS)
def test_topk_plus_tail_never_exceeds_the_full_vocabulary_loss(kind: str) -> None:
    """Collapsing the tail into one bucket is a coarsening: the loss is a lower bound of the full one."""
    generator = torch.Generator().manual_seed(2)
    teacher = peaked_teacher(20)
    student = torch.randn(20, VOCAB, generator=generator) * 3
    for t in (1.0, 2.0):
        logprobs, indices, tail = teacher_targets(teacher, K, t)
        bucketed = kd_loss(student, logprobs, indices, kind=kind, temperature=t, teacher_tail=tail, reduction="none")
        full = divergence(kind, teacher, student, t)
        assert (bucketed <= full + 1e-5).all() and (bucketed > 0).all()


def test_a_student_that_moves_its_mass_outside_the_topk_pays_for_it() -> None:
    """The issue's synthetic case: renormalising over the top-k gave 0.000000 against a full KL of 7.25."""
    teacher = peaked_teacher()
    student = student_outside_topk(teacher, 12.0)
    logprobs, indices, tail = teacher_targets(teacher, K)
    renormalised = divergence("forward_kl", teacher.gather(-1, indices), student.gather(-1, indices)).mean()
    full = divergence("forward_kl", teacher, student).mean()
    loss = kd_loss(student, logprobs, indices, teacher_tail=tail)
    assert renormalised.item() < 1e-5  # what the old loss saw
    assert full.item() > 5.0
    assert loss.item() == pytest.approx(full.item(), rel=1e-4)
    # without the cached tail (a top-k-only teacher), 1 − Σ top-k gives the same at T = 1
    assert kd_loss(student, logprobs, indices).item() == pytest.approx(loss.item(), rel=1e-3)


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_forward_and_reverse_kl_match_direct_computation(t: float) -> None:
    p, q = softmax(T_LOGITS[1, 2].tolist(), t), softmax(S_LOGITS[1, 2].tolist(), t)
    forward = divergence("forward_kl", T_LOGITS, S_LOGITS, t)[1, 2].item()
    reverse = divergence("reverse_kl", T_LOGITS, S_LOGITS, t)[1, 2].item()
    assert forward == pytest.approx(direct_kl(p, q) * t * t, rel=1e-5)
    assert reverse == pytest.approx(direct_kl(q, p) * t * t, rel=1e-5)


def test_jsd_matches_definition_and_identities() -> None:
    beta = 0.3
    p, q = softmax(T_LOGITS[0, 0].tolist()), softmax(S_LOGITS[0, 0].tolist())
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
    expected = beta * direct_kl(p, m) + (1 - beta) * direct_kl(q, m)
    assert divergence("jsd", T_LOGITS, S_LOGITS, beta=beta)[0, 0].item() == pytest.approx(expected, rel=1e-5)
    log_p, log_q = torch.log_softmax(T_LOGITS, -1), torch.log_softmax(S_LOGITS, -1)
    assert torch.allclose(generalized_jsd(log_p, log_q, 0.5), generalized_jsd(log_q, log_p, 0.5), atol=1e-6)
    bound = math.log(2)  # JSD(0.5) ≤ ln 2
    assert generalized_jsd(log_p, log_q, 0.5).max().item() <= bound + 1e-6


def test_jsd_at_beta_0_and_1_is_forward_and_reverse_kl() -> None:
    """The recipe accepts β ∈ [0, 1]; the ends were 0 (no training signal), now they are the two KLs (as TRL)."""
    logprobs, indices, tail = teacher_targets(T_LOGITS, 4)
    for beta, kind in ((0.0, "forward_kl"), (1.0, "reverse_kl")):
        jsd = kd_loss(S_LOGITS, logprobs, indices, kind="jsd", beta=beta, teacher_tail=tail)
        kl = kd_loss(S_LOGITS, logprobs, indices, kind=kind, teacher_tail=tail)
        assert jsd.item() == pytest.approx(kl.item(), rel=1e-6) and kl.item() > 0.1
        assert divergence("jsd", T_LOGITS, S_LOGITS, beta=beta).mean().item() == pytest.approx(
            divergence(kind, T_LOGITS, S_LOGITS).mean().item(), rel=1e-6
        )


@pytest.mark.parametrize("kind", KINDS)
def test_divergence_of_a_distribution_with_itself_is_zero(kind: str) -> None:
    assert divergence(kind, T_LOGITS, T_LOGITS.clone(), 2.0).abs().max().item() < 1e-6
    assert (divergence(kind, T_LOGITS, S_LOGITS, 2.0) > 0).all()
    logprobs, indices, tail = teacher_targets(T_LOGITS, 4, 2.0)
    same = kd_loss(T_LOGITS.clone(), logprobs, indices, kind=kind, temperature=2.0, teacher_tail=tail, reduction="none")
    assert same.abs().max().item() < 1e-5


def test_t_squared_scaling_of_gradients() -> None:
    """d/dz_s [T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))] = T·(q_T − p_T): the gradient scale does not vanish with T."""
    for t in (1.0, 3.0, 8.0):
        student = S_LOGITS.clone().requires_grad_(True)
        divergence("forward_kl", T_LOGITS, student, t).sum().backward()
        expected = t * (torch.softmax(S_LOGITS / t, -1) - torch.softmax(T_LOGITS / t, -1))
        assert torch.allclose(student.grad, expected, atol=1e-5)


def test_gradients_are_finite_when_the_topk_covers_the_vocabulary() -> None:
    logprobs, indices, tail = teacher_targets(T_LOGITS, 11)
    assert torch.isinf(tail).all()
    student = S_LOGITS.clone().requires_grad_(True)
    for kind in KINDS:
        loss = kd_loss(student, logprobs, indices, kind=kind, teacher_tail=tail)
        assert loss.item() == pytest.approx(divergence(kind, T_LOGITS, S_LOGITS).mean().item(), rel=1e-5)
        loss.backward()
        assert torch.isfinite(student.grad).all()


def test_reductions_and_masked_positions() -> None:
    logprobs, indices, tail = teacher_targets(T_LOGITS, 4)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = mask[2, 4] = True
    per = kd_loss(S_LOGITS, logprobs, indices, teacher_tail=tail, reduction="none")
    assert per.shape == (3, 5)
    total = kd_loss(S_LOGITS, logprobs, indices, teacher_tail=tail, mask=mask, reduction="sum")
    assert total.item() == pytest.approx((per[0, 1] + per[2, 4]).item(), rel=1e-6)
    mean = kd_loss(S_LOGITS, logprobs, indices, teacher_tail=tail, mask=mask)
    assert mean.item() == pytest.approx(total.item() / 2, rel=1e-6)
    changed = S_LOGITS.clone()
    changed[1] += 100.0  # a fully masked row cannot move the loss
    unmoved = kd_loss(changed, logprobs, indices, teacher_tail=tail, mask=mask)
    assert unmoved.item() == pytest.approx(mean.item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(S_LOGITS, logprobs, indices, reduction="avg")


def test_cross_entropy_and_mix() -> None:
    labels = torch.randint(0, 11, (3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    direct = -torch.log_softmax(S_LOGITS, -1).gather(-1, labels[..., None]).mean()
    ce = ce_loss(S_LOGITS, labels, mask)
    assert ce.item() == pytest.approx(direct.item(), rel=1e-6)
    assert ce_loss(S_LOGITS, labels, reduction="sum").item() == pytest.approx(15 * direct.item(), rel=1e-5)
    logprobs, indices, tail = teacher_targets(T_LOGITS, 4)
    kd = kd_loss(S_LOGITS, logprobs, indices, teacher_tail=tail)
    assert combined_loss(ce, kd, 0.25).item() == pytest.approx(0.25 * ce.item() + 0.75 * kd.item(), rel=1e-6)
    with pytest.raises(ValueError):
        divergence("cosine", T_LOGITS, S_LOGITS)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_the_cache_holds_what_the_loss_needs(t: float) -> None:
    """The teacher pass's numpy top-k (float16 log-probs, uint16 ids, float32 tail) gives the loss of exact targets."""
    teacher = peaked_teacher()
    student = student_outside_topk(teacher, 3.0)
    logprobs, indices, tail = teacher_cache.topk(teacher.numpy(), K, t)
    assert logprobs.dtype == np.float16 and indices.dtype == np.uint16 and tail.dtype == np.float32
    exact_logprobs, exact_indices, exact_tail = teacher_targets(teacher, K, t)
    exact = kd_loss(student, exact_logprobs, exact_indices, temperature=t, teacher_tail=exact_tail)
    cached = kd_loss(
        student,
        torch.from_numpy(logprobs.astype(np.float32)),
        torch.from_numpy(indices.astype(np.int64)),
        temperature=t,
        teacher_tail=torch.from_numpy(tail),
    )
    assert cached.item() == pytest.approx(exact.item(), rel=2e-3)
    assert teacher_cache.index_dtype(49152) is np.uint16 and teacher_cache.index_dtype(65536) is np.uint16
    assert teacher_cache.index_dtype(65537) is np.int32
    assert teacher_cache.topk(np.zeros((2, 70000), np.float32), 4)[1].dtype == np.int32
    # bytes per answer token: k float16 log-probs + k uint16 ids + one float32 tail (was k float16 + k int32)
    out = teacher_cache.TeacherOutput([1], [2] * len(teacher), logprobs, indices, tail)
    assert out.nbytes / len(teacher) == K * 2 + K * 2 + 4
