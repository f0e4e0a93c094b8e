"""Make a student: the teacher with layers dropped (initialised from its weights; ``recipe.choose_layers`` picks
them) and MLPs narrowed, or another HF model that shares the teacher's tokenizer."""

from __future__ import annotations

import copy
from typing import Any

import torch

from distill_tools import DistillError


def prune(teacher: Any, keep: list[int]) -> Any:
    """A deep copy of a decoder-only teacher keeping only the layers ``keep`` (weights copied)."""
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
            f"({len(student_tok)} vs {len(teacher_tok)} tokens, or different ids): "
            "logit distillation needs the same vocabulary"
        )


def parameter_count(model: Any) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    seen = {p.data_ptr(): p.numel() for p in model.parameters()}
    return sum(seen.values())


def narrow_mlp(model: Any, width: int, batches: list[dict[str, Any]], ridge: float = 1e-5) -> None:
    """Keep the ``width`` most important MLP channels of every layer, in place.

    Importance of a channel: its mean |activation| on the calibration ``batches`` times the norm of
    its down-projection column (Minitron-style activation pruning). Each down projection is then
    refitted by least squares so the narrowed MLP reproduces the full one's output on those tokens
    (a closed form from the activations' Gram matrix); this halves the pruned student's initial KL.
    """
    layers = model.get_decoder().layers
    if not all(hasattr(layer, "mlp") and hasattr(layer.mlp, "down_proj") for layer in layers):
        raise DistillError(f"cannot narrow the MLPs of a {type(model).__name__}: give student.model instead")
    full = layers[0].mlp.down_proj.in_features
    if not 0 < width < full:
        raise DistillError(f"student.mlp_width = {width}: must lie between 1 and {full - 1} (0 keeps all {full})")
    grams, sums, count = _mlp_statistics(model, batches)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            down = layer.mlp.down_proj.weight  # (hidden, full)
            keep = torch.topk(sums[i] / count * down.norm(dim=0), width).indices.sort().values
            gram = grams[i][keep][:, keep]
            gram += ridge * gram.diagonal().mean() * torch.eye(width, dtype=gram.dtype)
            refit = torch.linalg.solve(gram, grams[i][keep] @ down.T.double()).T
            _shrink(layer.mlp, keep, refit.to(down.dtype))
    model.config.intermediate_size = width


def narrow_mlp_shape(model: Any, width: int) -> None:
    """Give every MLP ``width`` channels (the first ones) without calibration: the shape a checkpoint loads into."""
    for layer in model.get_decoder().layers:
        _shrink(layer.mlp, torch.arange(width), layer.mlp.down_proj.weight.data[:, :width])
    model.config.intermediate_size = width


def _mlp_statistics(model: Any, batches: list[dict[str, Any]]) -> tuple[list[Any], list[Any], int]:
    """Per layer: the Gram matrix and the sum of |.| of the down projection's inputs over real tokens."""
    layers = model.get_decoder().layers
    grams: list[Any] = [0.0] * len(layers)
    sums: list[Any] = [0.0] * len(layers)
    count = 0
    current: dict[str, Any] = {}

    def record(index: int) -> Any:
        def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
            acts = inputs[0][current["mask"]].double()
            grams[index] = grams[index] + acts.T @ acts
            sums[index] = sums[index] + acts.abs().sum(0)

        return hook

    handles = [layer.mlp.down_proj.register_forward_hook(record(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                current["mask"] = batch["attention_mask"].bool()
                count += int(current["mask"].sum())
                model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not count:
        raise DistillError("no calibration tokens to narrow the student with")
    return grams, sums, count


def _shrink(mlp: Any, keep: Any, down_weight: Any) -> None:
    """Replace gate/up/down projections by their ``keep`` channels (down gets ``down_weight``)."""
    for name in ("gate_proj", "up_proj"):
        old = getattr(mlp, name)
        new = torch.nn.Linear(old.in_features, len(keep), bias=False, dtype=old.weight.dtype)
        new.weight.data = old.weight.data[keep].clone()
        setattr(mlp, name, new)
    old = mlp.down_proj
    new = torch.nn.Linear(len(keep), old.out_features, bias=False, dtype=old.weight.dtype)
    new.weight.data = down_weight.contiguous()
    mlp.down_proj = new
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = len(keep)
