"""Losses against direct computation and known identities."""

from __future__ import annotations

import math

import pytest
import torch

from distill_tools.losses import ce_loss, combined_loss, divergence, generalized_jsd, kd_loss

torch.manual_seed(0)
T_LOGITS = torch.randn(3, 5, 11)
S_LOGITS = torch.randn(3, 5, 11)


def direct_kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def softmax(xs: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


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


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_divergence_of_a_distribution_with_itself_is_zero(kind: str) -> None:
    assert divergence(kind, T_LOGITS, T_LOGITS.clone(), 2.0).abs().max().item() < 1e-6
    assert (divergence(kind, T_LOGITS, S_LOGITS, 2.0) > 0).all()


def test_t_squared_scaling_of_gradients() -> None:
    """d/dz_s [T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))] = T·(q_T − p_T): the gradient scale does not vanish with T."""
    for t in (1.0, 3.0, 8.0):
        student = S_LOGITS.clone().requires_grad_(True)
        divergence("forward_kl", T_LOGITS, student, t).sum().backward()
        expected = t * (torch.softmax(S_LOGITS / t, -1) - torch.softmax(T_LOGITS / t, -1))
        assert torch.allclose(student.grad, expected, atol=1e-5)


def test_topk_kd_gathers_student_logits_and_renormalises() -> None:
    values, indices = T_LOGITS.topk(4, dim=-1)
    mask = torch.ones(3, 5, dtype=torch.bool)
    sparse = kd_loss(S_LOGITS, mask, topk_values=values, topk_indices=indices)
    dense = divergence("forward_kl", values, S_LOGITS.gather(-1, indices)).mean()
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-6)
    # top-k with k = vocabulary size equals the full-vocabulary loss
    values, indices = T_LOGITS.topk(11, dim=-1)
    full = kd_loss(S_LOGITS, mask, teacher_logits=T_LOGITS)
    assert kd_loss(S_LOGITS, mask, topk_values=values, topk_indices=indices).item() == pytest.approx(full.item(), rel=1e-5)


def test_masked_positions_do_not_count() -> None:
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = mask[2, 4] = True
    expected = (divergence("forward_kl", T_LOGITS, S_LOGITS)[0, 1] + divergence("forward_kl", T_LOGITS, S_LOGITS)[2, 4]) / 2
    assert kd_loss(S_LOGITS, mask, teacher_logits=T_LOGITS).item() == pytest.approx(expected.item(), rel=1e-6)
    changed = S_LOGITS.clone()
    changed[1] += 100.0  # a fully masked row cannot move the loss
    assert kd_loss(changed, mask, teacher_logits=T_LOGITS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cross_entropy_and_mix() -> None:
    labels = torch.randint(0, 11, (3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    direct = -torch.log_softmax(S_LOGITS, -1).gather(-1, labels[..., None]).mean()
    ce = ce_loss(S_LOGITS, labels, mask)
    assert ce.item() == pytest.approx(direct.item(), rel=1e-6)
    kd = kd_loss(S_LOGITS, mask, teacher_logits=T_LOGITS)
    assert combined_loss(ce, kd, 0.25).item() == pytest.approx(0.25 * ce.item() + 0.75 * kd.item(), rel=1e-6)
    with pytest.raises(ValueError):
        divergence("cosine", T_LOGITS, S_LOGITS)
