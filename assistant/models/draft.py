"""Prompt-lookup drafting: guess the next tokens from where the last few tokens occurred before.

An answer that rewrites an attached file, quotes a document or continues itself repeats long runs of tokens
already in the prompt or in the answer so far. The engine verifies a guessed run in one batch (it keeps the
guesses up to the first one differing from the token it chooses there, greedy or sampled, plus that token), which
costs a little more than one token on a CPU and yields several when the guess is right. Guesses come from the most
recent earlier occurrence of the last ``NGRAMS`` tokens (longest first). The draft length adapts: it grows
while whole drafts are accepted and shrinks to what was accepted otherwise. When drafts keep failing
(open chat rarely repeats), or cost more time than they save, drafting pauses, for longer each time, and then
tries again. What a verification saves depends on the machine: quiet, it runs on a core that one-token decoding
leaves idle; beside a busy process that core is taken, and a verified draft of 5 costs several tokens' time. So
each verification's time is also weighed against the time one token takes (``efficiency``: tokens it gave per
token-time it cost). Beside ``while True: pass``, twelve short everyday answers then ran at 0.97-0.99x of plain
decoding and a file rewrite at 0.98-0.99x (0.90x and 0.83x before); quiet, 1.02-1.03x and 1.24-1.26x.
"""

from __future__ import annotations

from dataclasses import dataclass

NGRAMS = (3, 2)  # n-gram sizes looked up, longest first
MIN_DRAFT, START_DRAFT, MAX_DRAFT = 2, 4, 12  # MAX_DRAFT: llama_model.BATCH_CHECK - 1
MIN_GAIN = 0.5  # tokens gained per verification (moving average) below which drafting pauses
PAUSE, MAX_PAUSE = 16, 256  # tokens decoded plainly after drafting fails, doubled each time it fails again
START_EFFICIENCY = 1.2  # tokens a verification yields per one-token decode time it costs (assumed at first)


@dataclass
class DraftStats:
    drafts: int = 0  # verifications with a draft
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # of those, accepted


class PromptLookup:
    """Drafts for one answer; ``history`` is the prompt's tokens, extended with :meth:`append`."""

    def __init__(self, history: list[int]) -> None:
        self.history: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}  # n-gram -> where its latest occurrence's continuation starts
        self.length = START_DRAFT
        self.stats = DraftStats()
        self._gain = float(START_DRAFT)  # moving average of accepted tokens per verification
        self.efficiency = START_EFFICIENCY  # moving average: tokens a verification gave / its time in token-times
        self._paused = 0  # tokens left to decode without drafting
        self._pause = PAUSE
        self.extend(history)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        """One more token of the sequence (a prompt token or one of the answer's)."""
        history, index, at = self.history, self._index, len(self.history)
        for n in NGRAMS:
            if at >= n:
                index[tuple(history[at - n : at])] = at
        history.append(token)
        if self._paused:
            self._paused -= 1

    def draft(self, limit: int) -> list[int]:
        """Up to ``min(length, limit)`` guessed next tokens; none while paused or when nothing matches."""
        if self._paused or limit < 1:
            return []
        history = self.history
        for n in NGRAMS:
            if len(history) >= n and (at := self._index.get(tuple(history[-n:]))) is not None:
                return history[at : at + min(self.length, limit)]
        return []

    def update(self, drafted: int, accepted: int, cost: float | None = None) -> None:
        """Record a verification: ``accepted`` of ``drafted`` tokens kept, ``cost``: its time in one-token decodes
        (None: not known yet); adapt the length, maybe pause."""
        stats = self.stats
        stats.drafts += 1
        stats.drafted += drafted
        stats.accepted += accepted
        if accepted == drafted:
            self.length = min(MAX_DRAFT, self.length + 2)
        else:
            self.length = max(MIN_DRAFT, accepted + 1)
        self._gain = 0.7 * self._gain + 0.3 * accepted
        if cost:
            self.efficiency = 0.5 * self.efficiency + 0.5 * (accepted + 1) / cost
        if self._gain < MIN_GAIN or self.efficiency < 1.0:
            self._paused, self._pause = self._pause, min(MAX_PAUSE, 2 * self._pause)
            self._gain, self.efficiency = float(START_DRAFT), START_EFFICIENCY
        elif accepted:
            self._pause = PAUSE
