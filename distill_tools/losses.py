"""Distillation losses: forward KL (Hinton et al., × T²), reverse KL (MiniLLM), generalized JSD (GKD).

The teacher is known through its top-k tokens only (cached on disk, or sent by a remote teacher),
so the losses compare two distributions over k + 1 *buckets*: the teacher's top-k tokens, and one
bucket for everything else (the teacher's tail mass, and the student's mass outside the teacher's
top-k). Nothing is renormalised away: a student that moves its probability outside the teacher's
top-k pays for it. On the buckets the divergence is exact; it equals the full-vocabulary
divergence when the two tails are shaped alike and is never larger (data-processing inequality).

The API, for anything that distils (the pipeline, persona distillation, a remote teacher):

- ``teacher_targets(teacher_logits, k, temperature)`` → (top-k log-probs, indices, tail log-mass)
  from full logits, at the temperature the loss will use (what the teacher pass caches);
- ``kd_loss(student_logits, teacher_logprobs, teacher_indices, kind=..., temperature=...,
  teacher_tail=..., mask=..., reduction="mean" | "sum" | "none")`` → per-token losses or their
  token-weighted mean/sum.

P is the teacher, Q the student; every divergence is scaled by T² so gradients keep their size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("forward_kl", "reverse_kl", "jsd")
REDUCTIONS = ("mean", "sum", "none")
TAIL_FLOOR = 1e-8  # a tail derived as 1 − Σ top-k probabilities never drops below this (fp16 rounding)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P‖Q) along the last dimension, from log-probabilities; entries with P = 0 count 0."""
    present = log_p > float("-inf")
    zero = torch.zeros_like(log_p)
    safe_p, safe_q = torch.where(present, log_p, zero), torch.where(present, log_q, zero)  # no NaN in any gradient
    return torch.where(present, safe_p.exp() * (safe_p - safe_q), zero).sum(-1)


def bucket_divergence(kind: str, log_p: torch.Tensor, log_q: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Divergence between two distributions given as log-probabilities along the last dimension (no T² here)."""
    if kind == "forward_kl":
        return _kl(log_p, log_q)
    if kind == "reverse_kl":
        return _kl(log_q, log_p)
    if kind == "jsd":
        return generalized_jsd(log_p, log_q, beta)
    raise ValueError(f"unknown loss kind {kind!r} (known: {', '.join(KINDS)})")


def generalized_jsd(log_p: torch.Tensor, log_q: torch.Tensor, beta: float) -> torch.Tensor:
    """β·KL(P‖M) + (1−β)·KL(Q‖M) with M = β·P + (1−β)·Q (Agarwal et al., GKD).

    The value vanishes at β = 0 and β = 1, where its limit direction is forward KL(P‖Q) (β → 0) and
    reverse KL(Q‖P) (β → 1); as in TRL's GKD trainer those two ends *are* forward and reverse KL.
    """
    if beta <= 0.0:
        return _kl(log_p, log_q)
    if beta >= 1.0:
        return _kl(log_q, log_p)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    return beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)


def divergence(
    kind: str, teacher: torch.Tensor, student: torch.Tensor, temperature: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """Full-vocabulary divergence per position between temperature-softened logits, scaled by T² (the reference)."""
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    return bucket_divergence(kind, log_p, log_q, beta) * temperature**2


def teacher_targets(
    teacher_logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top-k log-probabilities, their token ids, log of the mass outside them), all at ``temperature``."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    values, indices = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    return values, indices, _outside(log_p, indices)


def _outside(log_probs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """log Σ of the probabilities not at ``indices`` (−inf when the indices cover the vocabulary)."""
    if indices.shape[-1] >= log_probs.shape[-1]:
        return torch.full(log_probs.shape[:-1], float("-inf"), dtype=log_probs.dtype, device=log_probs.device)
    return torch.logsumexp(log_probs.scatter(-1, indices, float("-inf")), dim=-1)


def teacher_buckets(teacher_logprobs: torch.Tensor, teacher_tail: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's k + 1 bucket log-probabilities; the tail is 1 − Σ top-k when not given."""
    top = teacher_logprobs.float()
    if teacher_tail is None:
        teacher_tail = torch.log((1 - top.exp().sum(-1)).clamp(min=TAIL_FLOOR))
    return torch.log_softmax(torch.cat([top, teacher_tail.float()[..., None]], -1), -1)  # fixes fp16 rounding


def student_buckets(student_logits: torch.Tensor, indices: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The student's k + 1 bucket log-probabilities at the teacher's top-k ``indices``, at ``temperature``."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    indices = indices.long()
    return torch.cat([log_q.gather(-1, indices), _outside(log_q, indices)[..., None]], -1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    teacher_indices: torch.Tensor,
    *,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    teacher_tail: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """KD loss of the student against the teacher's top-k plus one tail bucket, scaled by T².

    ``student_logits`` (..., vocab); ``teacher_logprobs`` and ``teacher_indices`` (..., k): the
    teacher's log-probabilities *at this temperature* (``teacher_targets``) and their token ids;
    ``teacher_tail`` (...): log of the teacher's mass outside its top-k at this temperature (default
    1 − Σ top-k: exact at T = 1 when the top-k log-probs are exact). ``mask`` (...) selects the
    positions that count. ``reduction``: "none" → per-position losses (masked ones 0), "sum",
    "mean" → the token-weighted mean over the selected positions.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r} (known: {', '.join(REDUCTIONS)})")
    log_p = teacher_buckets(teacher_logprobs, teacher_tail)
    log_q = student_buckets(student_logits, teacher_indices, temperature)
    per_position = bucket_divergence(kind, log_p, log_q, beta) * temperature**2
    return _reduce(per_position, mask, reduction)


def _reduce(per_position: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    weights = torch.ones_like(per_position) if mask is None else mask.to(per_position.dtype)
    weighted = per_position * weights
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    return weighted.sum() / weights.sum().clamp(min=1.0)


def ce_loss(
    student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of the student on the target tokens where ``mask`` is true."""
    losses = F.cross_entropy(student_logits.float().flatten(0, -2), labels.flatten(), reduction="none")
    return _reduce(losses.view(labels.shape), mask, reduction)


def combined_loss(ce: torch.Tensor, kd: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·CE + (1−α)·KD."""
    return alpha * ce + (1 - alpha) * kd
