"""Make a student: the teacher with layers dropped (initialised from its weights), or another HF model
that shares the teacher's tokenizer."""

from __future__ import annotations

import copy
from typing import Any

from distill_tools import DistillError


def check_layer_spec(spec: str) -> str:
    """What is wrong with a ``student.layers`` value on its own ('' if nothing; the range needs the teacher)."""
    try:
        choose_layers(spec, 1 << 16)
    except DistillError:
        return f"student.layers = {spec!r}: use all, every:K, first-last:N or comma-separated layer indices (0 or more)"
    return ""


def _indices(part: str) -> range:
    """``"7"`` → 7; ``"10-19"`` → 10…19 (raises ValueError otherwise)."""
    first, _, last = part.strip().partition("-")
    start, end = int(first), int(last or first)
    if end < start:
        raise ValueError(part)
    return range(start, end + 1)


def choose_layers(spec: str, n_layers: int) -> list[int]:
    """Layer indices to keep. ``all`` keeps every layer; ``every:K`` keeps every K-th (always the first and the last);
    ``first-last:N`` keeps the first N-1 and the last; ``0,1,5,...`` (ranges like ``10-19`` too) keeps exactly those."""
    try:
        if spec == "all":
            return list(range(n_layers))
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
            keep = sorted({i for x in spec.split(",") if x.strip() for i in _indices(x)})
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
    import torch

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
    import torch

    for layer in model.get_decoder().layers:
        _shrink(layer.mlp, torch.arange(width), layer.mlp.down_proj.weight.data[:, :width])
    model.config.intermediate_size = width


def _mlp_statistics(model: Any, batches: list[dict[str, Any]]) -> tuple[list[Any], list[Any], int]:
    """Per layer: the Gram matrix and the sum of |.| of the down projection's inputs over real tokens."""
    import torch

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
    import torch

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
