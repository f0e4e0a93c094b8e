"""Fully sharded data parallel training (FSDP2, ``torch.distributed.fsdp.fully_shard``): ``[train] fsdp = true``
under torchrun, for a student whose weights, gradients and AdamW state do not fit one device together.

Each rank keeps 1/N of every parameter, of its gradient and of the optimizer's moments; a decoder layer's whole
weights exist on a rank only while that layer runs (gathered before, freed after), and the gradients are
reduce-scattered straight into the owning shards. The root unit (embeddings, final norm and the LM head tied to
them) is ``answer_head.AnswerHead``, so it is gathered around the pass that uses it.

The plain model the caller passed stays a plain model on every rank: it is where checkpoints are gathered to (rank
0 writes it as usual) and loaded from, and it holds the trained weights when training ends, so export and
evaluation see an ordinary ``transformers`` model. Checkpoints hold full (unsharded) tensors: a sharded run resumes
under any number of processes that also shards.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from distill_tools.answer_head import AnswerHead


def shard(model: nn.Module, device: torch.device) -> AnswerHead:
    """A sharded copy of ``model`` (which is left as it is): each decoder layer one FSDP unit, the rest the root.

    Gradients are summed over the ranks, not averaged: every rank's loss is already divided by the step's global
    token count (see ``train.accumulate``)."""
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


def _full(value: Any) -> Any:
    """The whole tensor of a dim-0 sharded DTensor (FSDP's layout: ``torch.chunk`` pieces, the last ones shorter
    or empty), gathered by a plain all-gather of equal padded pieces; other values as they are. Every rank calls.
    (DTensor's own redistribution, which ``torch.distributed.checkpoint.state_dict`` uses, crashed a gloo rank now
    and then: SIGSEGV or SIGABRT in one run of three of a 150-gather loop.)"""
    if not isinstance(value, DTensor):
        return value
    world, rows = dist.get_world_size(), value.shape[0]
    piece = -(-rows // world)
    local = value.to_local().detach()
    padded = local.new_zeros((piece, *value.shape[1:]))
    padded[: local.shape[0]] = local
    whole = local.new_empty((piece * world, *value.shape[1:]))
    dist.all_gather_into_tensor(whole, padded)
    return whole[:rows].cpu()


def _rows(whole: torch.Tensor) -> torch.Tensor:
    """This rank's dim-0 piece of ``whole`` (FSDP's ``torch.chunk`` layout; empty past the last piece)."""
    pieces, rank = whole.chunk(dist.get_world_size(), dim=0), dist.get_rank()
    return pieces[rank] if rank < len(pieces) else whole[:0]


def _piece(whole: torch.Tensor, like: Any) -> Any:
    """This rank's dim-0 piece of ``whole``, as a DTensor shaped and placed like ``like``."""
    local = _rows(whole).to(like.device, like.dtype).clone()
    return DTensor.from_local(
        local, like.device_mesh, like.placements, run_check=False, shape=like.shape, stride=like.stride()
    )


def gather(head: AnswerHead, model: nn.Module) -> None:
    """Copy the sharded weights into the plain ``model`` on rank 0 (every rank must call: it is a collective)."""
    with torch.no_grad():
        for name, parameter in head.named_parameters():
            whole = _full(parameter)
            if dist.get_rank() == 0:
                model.get_parameter(name.removeprefix("model.")).copy_(whole)


def optimizer_state(head: AnswerHead, optimizer: Any) -> dict[str, Any]:
    """The whole optimizer state (``optimizer.state_dict()``'s layout, whole tensors) on rank 0, empty elsewhere
    (a collective)."""
    state = optimizer.state_dict()
    whole = {i: {key: _full(value) for key, value in entry.items()} for i, entry in sorted(state["state"].items())}
    return {"state": whole, "param_groups": state["param_groups"]} if dist.get_rank() == 0 else {}


def scatter(head: AnswerHead, model: nn.Module, optimizer: Any, optimizer_state: dict[str, Any] | None) -> None:
    """Load the plain ``model``'s weights (and a whole optimizer state) into this rank's shards (every rank calls;
    no communication: each rank has the whole tensors and keeps its piece)."""
    with torch.no_grad():  # every parameter of a fully sharded module is a DTensor
        for name, parameter in head.named_parameters():
            cast(DTensor, parameter).to_local().copy_(_rows(model.get_parameter(name.removeprefix("model."))))
    if optimizer_state:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state = {
            i: {
                key: _piece(value, params[i])
                if isinstance(params[i], DTensor) and torch.is_tensor(value) and value.shape == params[i].shape
                else value
                for key, value in entry.items()
            }
            for i, entry in optimizer_state["state"].items()
        }
        optimizer.load_state_dict({"state": state, "param_groups": optimizer_state["param_groups"]})


def local_share(head: AnswerHead) -> float:
    """The fraction of the student's parameter elements this rank holds."""
    local = total = 0
    for parameter in head.parameters():
        total += parameter.numel()
        local += parameter.to_local().numel() if isinstance(parameter, DTensor) else parameter.numel()
    return local / max(1, total)
