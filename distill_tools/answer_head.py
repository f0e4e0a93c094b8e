"""The student's logits at answer positions only: what the loss reads, and the root unit a sharded run wraps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class AnswerHead(nn.Module):
    """The decoder over the whole batch, the LM head only where ``mask`` is set (never over prompts or padding).
    One module, so a sharded run (``sharding``) gathers the embeddings, final norm and LM head around it."""

    model: Any  # a transformers causal LM

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.model.get_output_embeddings()(hidden[mask])
