"""Make a student: the teacher with layers dropped (initialised from its weights), or another HF model
that shares the teacher's tokenizer."""

from __future__ import annotations

import copy
from typing import Any

from distill_tools import DistillError


def choose_layers(spec: str, n_layers: int) -> list[int]:
    """Layer indices to keep. ``every:K`` keeps every K-th (always the first and the last);
    ``first-last:N`` keeps the first N-1 and the last; ``0,1,5,...`` keeps exactly those."""
    try:
        if spec.startswith("every:"):
            k = int(spec.split(":", 1)[1])
            if k < 1:
                raise ValueError
            keep = sorted(set(range(0, n_layers, k)) | {n_layers - 1})
        elif spec.startswith("first-last:"):
            n = int(spec.split(":", 1)[1])
            if not 2 <= n <= n_layers:
                raise ValueError
            keep = list(range(n - 1)) + [n_layers - 1]
        else:
            keep = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise DistillError(
            f"student.layers = {spec!r}: use every:K, first-last:N (2 ≤ N ≤ {n_layers}) or comma-separated indices"
        ) from None
    if not keep or keep[0] < 0 or keep[-1] >= n_layers:
        raise DistillError(f"student.layers = {spec!r}: indices must lie in 0…{n_layers - 1}")
    return keep


def prune(teacher: Any, keep: list[int]) -> Any:
    """A deep copy of a decoder-only teacher keeping only the layers ``keep`` (weights copied)."""
    import torch

    student = copy.deepcopy(teacher)
    decoder = student.get_decoder()
    if not hasattr(decoder, "layers"):
        raise DistillError(f"cannot drop layers from a {type(teacher).__name__}: give student.model instead")
    decoder.layers = torch.nn.ModuleList([decoder.layers[i] for i in keep])
    for new_index, layer in enumerate(decoder.layers):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    config = student.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    student.train()
    return student


def check_tokenizers(teacher_tok: Any, student_tok: Any, student_name: str) -> None:
    """The student must read and write the same token ids as the teacher."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise DistillError(
            f"student {student_name!r} has a different tokenizer than the teacher "
            f"({len(student_tok)} vs {len(teacher_tok)} tokens, or different ids): logit distillation needs the same vocabulary"
        )


def parameter_count(model: Any) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    seen = {p.data_ptr(): p.numel() for p in model.parameters()}
    return sum(seen.values())
