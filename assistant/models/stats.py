"""What a turn reports: each streamed piece with its token's logprob and entropy, and the turn's statistics."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Delta:
    """One streamed piece of an answer: its text, token and that token's logprob and entropy."""

    text: str
    token: int
    logprob: float
    entropy: float


Deltas = Generator[Delta, None, None]  # a generator: close() stops it, and the generation, early


@dataclass
class Stats:
    model: str = ""  # the model that answered (set under the engine lock, so a swap cannot mislabel it)
    prompt_tokens: int = 0  # tokens in the whole prompt
    reused_tokens: int = 0  # of those, already in the KV cache
    evaluated_tokens: int = 0  # of those, evaluated this turn
    completion_tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    total_s: float = 0.0
    context_used: int = 0
    n_ctx: int = 0
    dropped_messages: int = 0  # oldest messages left out to fit the context window
    finish_reason: str = ""  # stop | length | cancelled
    drafts: int = 0  # prompt-lookup drafts verified (``draft``)
    drafted_tokens: int = 0  # tokens guessed in them
    accepted_tokens: int = 0  # of those, the ones the model agreed with
    drafting: str = ""  # "on", or why prompt lookup did not draft: "off: <reason>"
    notes: list[str] = field(default_factory=list)

    @property
    def acceptance(self) -> float | None:
        """The share of drafted tokens accepted; None when nothing was drafted."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else None

    @property
    def draft_length(self) -> float | None:
        """The mean draft length; None when nothing was drafted."""
        return self.drafted_tokens / self.drafts if self.drafts else None


def token_stats(logits: np.ndarray, token: int) -> tuple[float, float]:
    """(logprob of the token, entropy of the distribution) from raw logits."""
    peak = float(logits.max())
    shifted = logits - peak
    exp = np.exp(shifted)
    total = float(exp.sum())
    log_total = np.log(total)
    entropy = log_total - float((exp * shifted).sum()) / total
    return float(shifted[token] - log_total), float(entropy)
