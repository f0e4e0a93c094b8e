"""Training batches: prompt + teacher answer sequences with the cached teacher targets, right-padded tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distill_tools import DistillError
from distill_tools.teacher_cache import TeacherOutput


@dataclass
class Example:
    input_ids: list[int]
    n_prompt: int  # positions n_prompt-1 … len-2 predict answer tokens
    topk_logprobs: np.ndarray
    topk_indices: np.ndarray
    tail: np.ndarray

    @property
    def n_answer(self) -> int:
        return len(self.input_ids) - self.n_prompt


def examples(outputs: list[TeacherOutput], max_length: int) -> list[Example]:
    """Training sequences (prompt + teacher answer), cut to ``max_length`` tokens."""
    result = []
    for out in outputs:
        room = max_length - len(out.prompt_ids)
        if room < 2:
            continue  # the prompt alone fills the sequence: nothing to learn from
        n_answer = min(len(out.answer_ids), room)
        result.append(
            Example(
                out.prompt_ids + out.answer_ids[:n_answer],
                len(out.prompt_ids),
                out.topk_logprobs[:n_answer],
                out.topk_indices[:n_answer],
                out.tail[:n_answer],
            )
        )
    if not result:
        raise DistillError(f"every prompt is longer than data.max_length = {max_length} tokens")
    return result


def collate(batch: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels, answer mask, teacher top-k log-probs/ids/tail."""
    length = max(len(e.input_ids) for e in batch)
    k = batch[0].topk_logprobs.shape[-1]
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.zeros((len(batch), length), dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    values = torch.zeros((len(batch), length, k), dtype=torch.float32)
    indices = torch.zeros((len(batch), length, k), dtype=torch.long)
    tails = torch.zeros((len(batch), length), dtype=torch.float32)
    for row, e in enumerate(batch):
        n, p, a = len(e.input_ids), e.n_prompt, len(e.input_ids) - e.n_prompt
        ids[row, :n] = torch.tensor(e.input_ids)
        attention[row, :n] = 1
        labels[row, p - 1 : n - 1] = torch.tensor(e.input_ids[p:])
        mask[row, p - 1 : n - 1] = True
        values[row, p - 1 : n - 1] = torch.from_numpy(e.topk_logprobs[:a].astype(np.float32))
        indices[row, p - 1 : n - 1] = torch.from_numpy(e.topk_indices[:a].astype(np.int64))
        tails[row, p - 1 : n - 1] = torch.from_numpy(e.tail[:a].astype(np.float32))
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "labels": labels,
        "mask": mask,
        "teacher_logprobs": values,
        "teacher_indices": indices,
        "teacher_tail": tails,
    }
