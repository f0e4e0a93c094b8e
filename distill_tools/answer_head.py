"""The student's logits at answer positions only: what the loss reads, and the root unit a sharded run wraps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

CACHE_BYTES = 2 << 30  # at most this much of frozen layers' outputs kept (a fact sheet's ~250 sequences: ~60 MB)


class AnswerHead(nn.Module):
    """The decoder over the whole batch, the LM head only where ``mask`` is set (never over prompts or padding).
    One module, so a sharded run (``sharding``) gathers the embeddings, final norm and LM head around it.

    ``frozen_below``: the decoder layers below this index (and the embeddings) never learn, so their output for a
    sequence is the same every epoch: it is computed once and kept (up to ``CACHE_BYTES``), and a batch whose every
    sequence is kept runs only the layers above. Exact under right padding: a token never attends to a later one."""

    model: Any  # a transformers causal LM

    def __init__(self, model: nn.Module, frozen_below: int = 0) -> None:
        super().__init__()
        self.model = model
        self.frozen_below = frozen_below
        self._kept: dict[bytes, torch.Tensor] = {}
        self._bytes = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        decoder = self.model.get_decoder()
        keys = self._keys(input_ids, attention_mask) if self.frozen_below else []
        if keys and all(k in self._kept for k in keys):
            with _layers_from(decoder, self.frozen_below):
                hidden = decoder(
                    inputs_embeds=self._stacked(keys, input_ids), attention_mask=attention_mask, use_cache=False
                ).last_hidden_state
        else:
            with self._recording(decoder, keys, attention_mask):
                hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.model.get_output_embeddings()(hidden[mask])

    @staticmethod
    def _keys(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[bytes]:
        lengths = attention_mask.sum(1).tolist()
        return [row[:n].cpu().numpy().tobytes() for row, n in zip(input_ids, lengths)]

    def _stacked(self, keys: list[bytes], input_ids: torch.Tensor) -> torch.Tensor:
        rows = [self._kept[k] for k in keys]
        out = rows[0].new_zeros(len(rows), input_ids.shape[1], rows[0].shape[-1])
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out.to(input_ids.device)

    @contextmanager
    def _recording(self, decoder: Any, keys: list[bytes], attention_mask: torch.Tensor) -> Iterator[None]:
        """Keep what enters layer ``frozen_below`` for each sequence of the batch, while the room lasts."""
        if not keys or self._bytes >= CACHE_BYTES:
            yield
            return

        def keep(module: nn.Module, args: tuple[Any, ...]) -> None:
            hidden = args[0].detach()
            for key, row, n in zip(keys, hidden, attention_mask.sum(1).tolist()):
                if key not in self._kept:
                    self._kept[key] = row[:n].clone()
                    self._bytes += self._kept[key].numel() * self._kept[key].element_size()

        handle = decoder.layers[self.frozen_below].register_forward_pre_hook(keep)
        try:
            yield
        finally:
            handle.remove()


def frozen_below(model: Any) -> int:
    """The index of the first decoder layer with a parameter that learns (0: the embeddings learn, or not a llama
    decoder without dropout, whose layers take their input as it comes and give the same output every time)."""
    config = model.config
    if getattr(config, "model_type", "") != "llama" or getattr(config, "attention_dropout", 0.0):
        return 0
    if any(p.requires_grad for p in model.get_input_embeddings().parameters()):
        return 0
    layers = model.get_decoder().layers
    return next((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())), 0)


@contextmanager
def _layers_from(decoder: Any, start: int) -> Iterator[None]:
    """The decoder runs only its layers from ``start`` on (their input: ``inputs_embeds``)."""
    every = decoder.layers
    decoder.layers = nn.ModuleList(list(every)[start:])
    try:
        yield
    finally:
        decoder.layers = every
