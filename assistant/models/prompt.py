"""The prompt: a conversation rendered with the model's chat template, fitted into its context window.

A history too long for the window loses its oldest turns (the system prompt is kept), and the turn's stats
count them in a note. A latest message that does not fit even alone (with the system prompt, and a partial
answer being continued) is refused with the numbers (:class:`ContextLengthError`), never cut.

Fitting costs a few renders of about one window's worth of turns, however long the history: an estimate
from the latest turns' own token counts, then galloping and bisecting on the number of turns kept, with a
look at the cancel flag between two renders. The tokens of a render are taken to grow with the turns it
holds (exactly so where the template puts special tokens between turns), so the turns kept are those the
former fit kept by dropping the oldest one and counting again, one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.models.llama_model import EngineError, Model
from assistant.models.stats import Stats

Messages = list[dict[str, str]]
Cancelled = Callable[[], bool]
CHARS_PER_TOKEN = 8  # a history with more characters per token of the window is not tried whole first
TEMPLATE_TOKENS = 5  # tokens the chat template adds around a turn, for the estimate only


class ContextLengthError(EngineError):
    """The latest message (with the system prompt) does not fit the context window beside the answer."""

    def __init__(self, tokens: int, limit: int, n_ctx: int) -> None:
        self.tokens, self.limit, self.n_ctx = tokens, limit, n_ctx
        super().__init__(
            f"the message is {tokens:,} tokens, more than the {limit:,} that the model's {n_ctx:,}-token "
            "context leaves beside the answer; shorten it"
        )


def render(model: Model, messages: Messages, continue_final: bool) -> str:
    """The prompt text; with ``continue_final`` the last (assistant) message opens the model's turn."""
    if not continue_final:
        return model.template.render(messages)
    return model.template.render(messages[:-1]) + messages[-1]["content"]


def fit(
    model: Model,
    messages: Messages,
    reserve: int,
    stats: Stats,
    continue_final: bool = False,
    cancelled: Cancelled = lambda: False,
) -> str | None:
    """The prompt, leaving ``reserve`` tokens of the window for the answer; None once ``cancelled()`` is true.

    What was left out goes in ``stats``; ``ContextLengthError`` if the latest message does not fit alone.
    """
    prompts = _Prompts(model, messages, model.n_ctx - reserve, continue_final)
    kept = _kept(prompts, cancelled)
    if kept is None:
        return None
    stats.dropped_messages = len(prompts.turns) - kept
    if stats.dropped_messages:
        stats.notes.append(
            f"{stats.dropped_messages} oldest message(s) left out to fit the {model.n_ctx}-token context"
        )
    return prompts.text(kept)


@dataclass
class _Prompts:
    """The prompts made of the system prompt and the latest ``n`` turns, and whether they fit ``budget`` tokens."""

    model: Model
    messages: Messages
    budget: int
    continue_final: bool
    system: Messages = field(init=False)
    turns: Messages = field(init=False)
    _texts: dict[int, str] = field(default_factory=dict)
    _tokens: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        start = 1 if self.messages and self.messages[0]["role"] == "system" else 0
        self.system, self.turns = self.messages[:start], self.messages[start:]

    @property
    def keep(self) -> int:
        """Turns always kept: the question and, when continuing, the partial answer."""
        return min(2 if self.continue_final else 1, len(self.turns))

    def text(self, n: int) -> str:
        if n not in self._texts:
            latest = self.turns[len(self.turns) - n :]
            self._texts[n] = render(self.model, self.system + latest, self.continue_final)
        return self._texts[n]

    def tokens(self, n: int) -> int:
        if n not in self._tokens:
            self._tokens[n] = len(self.model.tokenize(self.text(n), first=True))
        return self._tokens[n]

    def fits(self, n: int) -> bool:
        text = self.text(n)
        if len(text) > self.budget * 4 and len(text.encode()) > self.budget * self.model.max_piece_bytes:
            return False  # more tokens than the budget, without counting them: no token holds more bytes
        return self.tokens(n) <= self.budget

    def plausible(self) -> bool:
        """Whether the whole history might fit: worth one render and count before any search."""
        return sum(len(m["content"]) for m in self.messages) <= self.budget * CHARS_PER_TOKEN


def _kept(prompts: _Prompts, cancelled: Cancelled) -> int | None:
    """How many latest turns the prompt keeps: all if they fit, else the most that do; None if cancelled."""
    whole, tried = len(prompts.turns), prompts.plausible()
    if tried and prompts.fits(whole):
        return whole
    if cancelled():
        return None
    if not prompts.fits(prompts.keep):
        raise ContextLengthError(prompts.tokens(prompts.keep), prompts.budget, prompts.model.n_ctx)
    guess = _guess(prompts, cancelled)
    if guess is None:
        return None
    return _most_that_fit(prompts.fits, prompts.keep, whole if tried else whole + 1, guess, cancelled)


def _guess(prompts: _Prompts, cancelled: Cancelled) -> int | None:
    """An estimate of how many latest turns fit: the kept ones, then older ones while their own tokens (and a
    few for the template around each) fit in the room the kept ones leave; None if cancelled."""
    room = prompts.budget - prompts.tokens(prompts.keep)
    n = prompts.keep
    for message in reversed(prompts.turns[: len(prompts.turns) - n]):
        if cancelled():
            return None
        if len(message["content"]) > room * CHARS_PER_TOKEN:
            break
        room -= len(prompts.model.tokenize(message["content"], first=False)) + TEMPLATE_TOKENS
        if room < 0:
            break
        n += 1
    return n


def _most_that_fit(fits: Callable[[int], bool], lo: int, hi: int, guess: int, cancelled: Cancelled) -> int | None:
    """The largest ``n`` with ``fits(n)``, given ``fits(lo)``, not ``fits(hi)`` and ``fits`` true up to some ``n``
    only: galloping from ``guess`` with doubling steps, bisecting once bracketed; None if cancelled."""
    n, step = guess, 1
    while hi - lo > 1:
        if cancelled():
            return None
        if not lo < n < hi:
            n = (lo + hi) // 2
        if fits(n):
            lo, n = n, n + step
        else:
            hi, n = n, n - step
        step *= 2
    return lo
