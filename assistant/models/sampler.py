"""Choosing each next token: greedy or sampled, with a grammar checked on the chosen token first.

llama-cpp-python's sampler chain applies a grammar to the whole vocabulary (49k tokens) before every
sample, which made schema-constrained decoding run at about half the speed of free decoding. This does what
llama.cpp's own ``common_sampler`` does: sample from the unconstrained logits, check only the chosen token
against the grammar (a one-candidate array through the grammar sampler), and only when it is rejected apply
the grammar to the whole vocabulary and sample again. Greedy output is the same either way: the best token
overall, if the grammar allows it, is the best allowed token; and greedy tries the 64 most likely tokens before
the whole vocabulary (the best allowed among them is the best allowed overall).

The unconstrained chain is llama-cpp-python's (top-k, typical, top-p, min-p, temperature, then a seeded
draw), so a seeded answer without a grammar is the one it gave before.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import numpy as np

MIN_P = 0.05  # what the engine always asked llama-cpp-python for
SHORTLIST = 64  # greedy: the most likely tokens tried against the grammar before the whole vocabulary
_CANDIDATE = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class Sampler:
    """Picks tokens from one context's logits for one turn; ``close()`` frees the llama.cpp samplers."""

    def __init__(
        self,
        llama_cpp: ModuleType,
        vocab: Any,
        n_vocab: int,
        *,
        temperature: float,
        top_p: float,
        top_k: int,
        seed: int,
        grammar: Any = None,
    ) -> None:
        self._lib = llama_cpp
        self.greedy = temperature == 0.0
        self._chain = None if self.greedy else _chain(llama_cpp, temperature, top_p, top_k, seed)
        self._grammar = None
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(
                vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
            if not self._grammar:
                self.close()
                raise ValueError("llama.cpp could not parse the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all = np.zeros(n_vocab, dtype=_CANDIDATE)
        self._all["id"] = np.arange(n_vocab, dtype=np.intc)
        self._all_array = llama_cpp.llama_token_data_array(
            data=self._all.ctypes.data_as(llama_cpp.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
        )
        self._short = np.zeros(SHORTLIST, dtype=_CANDIDATE)
        self._short_array = llama_cpp.llama_token_data_array(
            data=self._short.ctypes.data_as(llama_cpp.llama_token_data_p), size=SHORTLIST, selected=-1, sorted=False
        )
        self.resampled = 0  # tokens the grammar rejected (then sampled again from what it allows)

    @property
    def constrained(self) -> bool:
        return self._grammar is not None

    def sample(self, ctx: Any, index: int, logits: np.ndarray) -> int:
        """The next token from the logits of batch position ``index`` (``logits``: that row), accepted into
        the grammar's state."""
        token = (
            int(np.argmax(logits)) if self._chain is None else self._lib.llama_sampler_sample(self._chain, ctx, index)
        )
        if self._grammar is None:
            return token
        if not self._allows(token):
            self.resampled += 1
            token = self._constrained(logits)
        self._lib.llama_sampler_accept(self._grammar, token)
        return token

    def _allows(self, token: int) -> bool:
        """Whether the grammar allows ``token`` next: a one-candidate array through the grammar sampler."""
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        return bool(np.isfinite(self._one[0].logit))

    def _best_allowed(self, logits: np.ndarray) -> int | None:
        """Greedy: the best token the grammar allows among the ``SHORTLIST`` most likely, if that is certainly the
        best allowed overall (None: look at the whole vocabulary)."""
        top = np.argpartition(logits, -SHORTLIST)[-SHORTLIST:]
        candidates, array = self._short, self._short_array
        candidates["id"] = top
        candidates["logit"] = logits[top]
        candidates["p"] = 0.0
        array.size, array.selected, array.sorted = SHORTLIST, -1, False
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        allowed = candidates["logit"][:SHORTLIST]
        best = float(allowed.max())
        if not np.isfinite(best) or best <= float(logits[top].min()):  # none allowed, or a tie at the cut
            return None
        return int(candidates["id"][allowed == best].min())  # np.argmax's choice among equal logits: the first

    def _constrained(self, logits: np.ndarray) -> int:
        """Apply the grammar to the whole vocabulary, then sample as configured from what it allows (greedy:
        first among the most likely tokens, which is enough unless the grammar rejects them all)."""
        if self._chain is None and (token := self._best_allowed(logits)) is not None:
            return token
        candidates, array = self._all, self._all_array
        candidates["id"] = np.arange(len(candidates), dtype=np.intc)
        candidates["logit"] = logits
        candidates["p"] = 0.0
        array.size, array.selected, array.sorted = len(candidates), -1, False
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        if self._chain is None:
            return int(candidates["id"][int(np.argmax(candidates["logit"][: array.size]))])
        self._lib.llama_sampler_apply(self._chain, ctypes.byref(array))
        token = int(candidates["id"][array.selected])
        self._lib.llama_sampler_accept(self._chain, token)
        return token

    def close(self) -> None:
        for sampler in (self._chain, self._grammar):
            if sampler:
                self._lib.llama_sampler_free(sampler)
        self._chain = self._grammar = None


def _chain(llama_cpp: ModuleType, temperature: float, top_p: float, top_k: int, seed: int) -> Any:
    """llama-cpp-python's sampling chain for these settings (``Llama._init_sampler``, no penalties: the engine
    asks for none)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature < 0.0:
        parts = [llama_cpp.llama_sampler_init_dist(seed)]
    else:
        parts = [
            llama_cpp.llama_sampler_init_top_k(top_k),
            llama_cpp.llama_sampler_init_typical(1.0, 1),
            llama_cpp.llama_sampler_init_top_p(top_p, 1),
            llama_cpp.llama_sampler_init_min_p(MIN_P, 1),
            llama_cpp.llama_sampler_init_temp(temperature),
            llama_cpp.llama_sampler_init_dist(seed),
        ]
    for part in parts:
        llama_cpp.llama_sampler_chain_add(chain, part)
    return chain
