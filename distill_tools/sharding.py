"""Fully sharded data parallel training (FSDP2, ``torch.distributed.fsdp.fully_shard``): ``[train] fsdp = true``
under torchrun, for a student whose weights, gradients and AdamW state do not fit one device together.

Each rank keeps 1/N of every parameter, of its gradient and of the optimizer's moments; a decoder layer's whole
weights exist on a rank only while that layer runs (gathered before, freed after), and the gradients are
reduce-scattered straight into the owning shards. The root unit (embeddings, final norm and the LM head tied to
them) is ``train.AnswerHead``, so it is gathered around the pass that uses it.

The plain model the caller passed stays a plain model on every rank: it is where checkpoints are gathered to (rank
0 writes it as usual) and loaded from, and it holds the trained weights when training ends, so export and
evaluation see an ordinary ``transformers`` model. Checkpoints hold full (unsharded) tensors: a sharded run resumes
under any number of processes that also shards.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from distill_tools.train import AnswerHead


def shard(model: nn.Module, device: torch.device) -> AnswerHead:
    """A sharded copy of ``model`` (which is left as it is): each decoder layer one FSDP unit, the rest the root.

    Gradients are summed over the ranks, not averaged: every rank's loss is already divided by the step's global
    token count (see ``train.accumulate``)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    head = AnswerHead(copy.deepcopy(model))
    layers: Any = head.model.get_decoder().layers
    units: list[Any] = [fully_shard(layer, mesh=mesh) for layer in layers]
    units.append(fully_shard(head, mesh=mesh))
    for unit in units:
        assert isinstance(unit, FSDPModule)
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)  # a plain sum (gloo has no pre-multiplied sum)
    return head


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather(head: AnswerHead, model: nn.Module) -> None:
    """Copy the sharded weights into the plain ``model`` on rank 0 (every rank must call: it is a collective)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(head, options=_options())  # empty on the other ranks
    if full:
        model.load_state_dict({name.removeprefix("model."): value for name, value in full.items()})


def optimizer_state(head: AnswerHead, optimizer: Any) -> dict[str, Any]:
    """The whole optimizer state, keyed by parameter name, on rank 0 (empty elsewhere; a collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(head, optimizer, options=_options())


def scatter(head: AnswerHead, model: nn.Module, optimizer: Any, optimizer_state: dict[str, Any] | None) -> None:
    """Load the plain ``model``'s weights (and a full optimizer state) into the shards (every rank calls)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(head, {f"model.{name}": value for name, value in model.state_dict().items()}, options=options)
    if optimizer_state is not None:
        set_optimizer_state_dict(head, optimizer, optimizer_state, options=options)


def local_share(head: AnswerHead) -> float:
    """The fraction of the student's parameter elements this rank holds."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for parameter in head.parameters():
        total += parameter.numel()
        local += parameter.to_local().numel() if isinstance(parameter, DTensor) else parameter.numel()
    return local / max(1, total)
