"""Distillation losses: forward KL (Hinton et al., × T²), reverse KL (MiniLLM), generalized JSD (GKD).

Every divergence works on the last dimension of two logit tensors: the full vocabulary, or the
teacher's cached top-k support (student logits gathered at the teacher's top-k token ids; both
distributions are then renormalised over those k tokens). P is the teacher, Q the student.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("forward_kl", "reverse_kl", "jsd")


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P‖Q) along the last dimension, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def divergence(kind: str, teacher: torch.Tensor, student: torch.Tensor, temperature: float = 1.0,
               beta: float = 0.5) -> torch.Tensor:
    """Per-position divergence between temperature-softened teacher and student logits, scaled by T²."""
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    if kind == "forward_kl":
        value = _kl(log_p, log_q)
    elif kind == "reverse_kl":
        value = _kl(log_q, log_p)
    elif kind == "jsd":
        value = generalized_jsd(log_p, log_q, beta)
    else:
        raise ValueError(f"unknown loss kind {kind!r} (known: {', '.join(KINDS)})")
    return value * temperature**2


def generalized_jsd(log_p: torch.Tensor, log_q: torch.Tensor, beta: float) -> torch.Tensor:
    """β·KL(P‖M) + (1−β)·KL(Q‖M) with M = β·P + (1−β)·Q (Agarwal et al., GKD); 0 at β ∈ {0, 1}."""
    if beta <= 0.0 or beta >= 1.0:
        return torch.zeros(log_p.shape[:-1], dtype=log_p.dtype, device=log_p.device)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    return beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)


def kd_loss(
    student_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    teacher_logits: torch.Tensor | None = None,
    topk_values: torch.Tensor | None = None,
    topk_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean divergence over the positions where ``mask`` is true (answer tokens; prompts are masked).

    Give either ``teacher_logits`` (full vocabulary) or ``topk_values`` + ``topk_indices``
    (batch, seq, k): then the student's logits are gathered at those ids.
    """
    if teacher_logits is None:
        if topk_values is None or topk_indices is None:
            raise ValueError("kd_loss needs teacher_logits or topk_values and topk_indices")
        teacher_logits = topk_values
        student_logits = student_logits.gather(-1, topk_indices.long())
    per_position = divergence(kind, teacher_logits, student_logits, temperature, beta)
    weights = mask.to(per_position.dtype)
    return (per_position * weights).sum() / weights.sum().clamp(min=1.0)


def ce_loss(student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student on the target tokens where ``mask`` is true."""
    losses = F.cross_entropy(student_logits.float().flatten(0, -2), labels.flatten(), reduction="none")
    weights = mask.flatten().to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def combined_loss(ce: torch.Tensor, kd: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·CE + (1−α)·KD."""
    return alpha * ce + (1 - alpha) * kd
