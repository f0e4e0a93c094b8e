"""The on-device engine: one GGUF model in llama.cpp, streamed answers with per-token logprobs.

Keeps the token sequence of the last turn so the next turn re-evaluates only its new
tokens (KV prefix reuse, ``kv_states``), keeps a bounded cache of other conversations' KV states,
fits a too-long history by dropping the oldest turns and saying so, refuses a message too long for the
window even alone (``prompt``), and hot-swaps models between turns with the old one serving until the new
one is ready.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from assistant import AssistantError
from assistant.config import load
from assistant.models.draft import PromptLookup
from assistant.models.kv_states import Prefix, SavedState, StateCache
from assistant.models.llama_model import (
    EngineError,
    Model,
    llama_chat_handlers_disabled,
    physical_cores,
    release_heap,
)
from assistant.models.prompt import ContextLengthError, Messages, fit
from assistant.models.sampler import Sampler
from assistant.models.stats import Delta, Deltas, Stats, token_stats
from assistant.models.stop_scan import StopScan

__all__ = [  # the engine's API, with the names others import from here
    "ContextLengthError",
    "Delta",
    "Deltas",
    "Engine",
    "EngineError",
    "Messages",
    "Stats",
    "llama_chat_handlers_disabled",
    "physical_cores",
    "release_heap",
    "token_stats",
]

PREFILL_CHUNK = 64  # prompt tokens evaluated between two looks at the cancel flag
_StopScan = StopScan  # its former name, still imported by tests/test_api_request.py


class Engine:
    """Owns one model at a time; streams answers; swaps models between turns."""

    def __init__(
        self,
        path: Path | str,
        n_ctx: int = 4096,
        threads: int = 0,
        state_cache_bytes: int = 512 * 2**20,
        *,
        decode_threads: int | None = None,
        speculate: bool | None = None,
    ) -> None:
        """``decode_threads`` and ``speculate`` (prompt-lookup drafting, ``draft``):
        None takes the settings' ``model.decode_threads`` and ``model.speculate``."""
        settings = load().model
        self.n_ctx_requested = n_ctx
        self.threads = threads
        self.decode_threads = settings.decode_threads if decode_threads is None else decode_threads
        self.speculate = settings.speculate if speculate is None else speculate
        self.model = Model(path, n_ctx, threads, self.decode_threads)
        self.stats = Stats(n_ctx=self.model.n_ctx)
        self._prefix = Prefix()
        self._key: object = None  # which conversation the KV cache holds
        self._states = StateCache(state_cache_bytes)
        self._lock = threading.Lock()  # held while generating; swap waits for it
        self._swap_lock = threading.Lock()  # one swap at a time
        self._cancel = threading.Event()
        self._token_s: float | None = None  # one token's decode time, moving average (drafts are weighed by it)
        self.weigh_drafts = True  # drafting pauses when verifications cost more time than they save
        self.draft_sampled = False  # sampled answers draft exactly too, but measured no faster (see draft_state)

    # -- properties
    @property
    def name(self) -> str:
        return self.model.name

    @property
    def path(self) -> Path:
        return self.model.path

    @property
    def n_ctx(self) -> int:
        return self.model.n_ctx

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def cancel(self) -> None:
        """Stop the answer being generated (from any thread); the partial answer is kept."""
        self._cancel.set()

    # -- the KV cache
    def _prompt_tokens(self, text: str) -> list[int]:
        """Tokens for the prompt, reusing the cached token sequence when the text extends it."""
        prefix = self._prefix
        if prefix.tokens and text.startswith(prefix.text):
            return prefix.tokens + self.model.tokenize(text[len(prefix.text) :], first=False)
        return self.model.tokenize(text, first=True)

    def _switch_conversation(self, key: object) -> None:
        """Park the current conversation's KV state and restore the requested one's, if cached."""
        if key == self._key:
            return
        if self._key is not None and self._prefix.tokens:
            llm = self.model.llm
            evaluated = [int(t) for t in llm.input_ids[: llm.n_tokens]]
            self._states.park(self._key, SavedState(self.model.save_state(), evaluated, self._prefix))
        self._key = key
        saved = self._states.take(key) if key is not None else None
        if saved is not None:
            self.model.load_state(saved.data, saved.evaluated)
            self._prefix = saved.prefix
        else:
            self._prefix = Prefix()

    # -- generation
    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 0.95,
        top_k: int = 40,
        conversation: object = None,
        continue_final: bool = False,
        stop: Sequence[str] = (),
        seed: int | None = None,
        grammar: object = None,
        cancel: threading.Event | None = None,
    ) -> Deltas:
        """Yield the answer to ``messages`` piece by piece; ``self.stats`` describes the turn.

        ``grammar`` (a ``llama_cpp.LlamaGrammar``, see ``assistant.models.schema``) constrains what may be sampled.
        The answer ends before the first of the ``stop`` strings (never yielded); ``seed`` makes sampling
        repeatable (default: random). ``cancel``: the caller's own stop flag, for a stop that may come before the
        turn starts (``cancel()`` is reset as it starts): set by then, the turn ends at once with nothing generated.
        A message too long for the window even alone raises ``ContextLengthError``.

        With ``continue_final`` the last message is a partial assistant answer: the prompt ends
        with its text (no end-of-turn), so the model carries on from there and only the new
        text is yielded. After a stopped answer this prompt is exactly the cached one.
        """
        if continue_final and (not messages or messages[-1]["role"] != "assistant"):
            raise EngineError("nothing to continue: the last message is not an answer")
        with self._lock:
            started = time.perf_counter()
            self._cancel.clear()
            if cancel is not None and cancel.is_set():
                self._cancel.set()
            stats = self.stats = Stats(n_ctx=self.model.n_ctx, model=self.model.name)
            reserve = min(max_tokens, self.model.n_ctx // 2)
            text = fit(self.model, messages, reserve, stats, continue_final, self._cancel.is_set)
            if text is None:
                stats.finish_reason = "cancelled"
                return
            self._switch_conversation(conversation)
            self.model.set_seed(seed)
            sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "grammar": grammar}
            yield from self._generate(text, max_tokens, sampling, StopScan(stop), stats, started)

    def _generate(
        self, text: str, max_tokens: int, sampling: dict, scan: StopScan, stats: Stats, start: float
    ) -> Deltas:
        model, llm = self.model, self.model.llm
        tokens = self._prompt_tokens(text)
        cached = llm.n_tokens
        common = 0
        for a, b in zip(llm.input_ids[:cached], tokens):
            if a != b:
                break
            common += 1
        stats.prompt_tokens = len(tokens)
        stats.reused_tokens = min(common, len(tokens) - 1)
        stats.evaluated_tokens = len(tokens) - stats.reused_tokens
        max_tokens = max(1, min(max_tokens, model.n_ctx - len(tokens)))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated: list[int] = []
        answer: list[str] = []
        first_at = 0.0
        stats.finish_reason = "length"
        self._prefix = Prefix()  # invalid until this turn completes
        sampler = model.sampler(**sampling)
        stats.drafting = draft_state(self.speculate, sampler, self.draft_sampled)
        drafts = PromptLookup(tokens) if stats.drafting == "on" else None
        try:
            if not self._prefill(tokens, common):
                stats.finish_reason = "cancelled"
                return
            for token, logits in self._tokens(tokens, max_tokens, sampler, drafts):
                if model.is_end(token):
                    stats.finish_reason = "stop"
                    break
                logprob, entropy = token_stats(logits, token)
                generated.append(token)
                piece = decoder.decode(model.piece(token))
                if not first_at:
                    first_at = time.perf_counter()
                answer.append(piece)
                shown, stopped = scan.feed(piece)
                if shown or not scan.stops:
                    yield Delta(shown, token, logprob, entropy)
                if stopped:
                    stats.finish_reason = "stop"
                    break
                if self._cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                if len(generated) >= max_tokens:
                    break
            if held := scan.held():  # text that looked like the start of a stop string but was not
                yield Delta(held, -1, 0.0, 0.0)
        except GeneratorExit:  # the consumer stopped reading: same as a cancel
            stats.finish_reason = "cancelled"
            raise
        except Exception as exc:
            raise EngineError(f"generation failed: {exc}") from None
        finally:
            sampler.close()
            end = time.perf_counter()
            if tail := decoder.decode(b"", final=True):
                answer.append(tail)
            stats.completion_tokens = len(generated)
            stats.ttft_s = (first_at or end) - start
            decode_time = end - (first_at or end)
            stats.tokens_per_s = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time else 0.0
            stats.total_s = end - start
            stats.context_used = len(tokens) + len(generated)
            if drafts is not None:
                stats.drafts, stats.drafted_tokens = drafts.stats.drafts, drafts.stats.drafted
                stats.accepted_tokens = drafts.stats.accepted
            self._prefix = Prefix(text + "".join(answer), tokens + generated)

    def _tokens(
        self, tokens: list[int], max_tokens: int, sampler: Sampler, drafts: PromptLookup | None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The answer's tokens, each with the logits it was chosen from (valid until the next is asked for).

        The prompt but its last token is in the KV cache (``_prefill``). Each step evaluates the token chosen
        last; with ``drafts``, also a guessed continuation, in one batch, and yields the guesses the model
        agrees with (chosen as without a draft) and then its own next token; the rejected guesses leave the KV cache.
        """
        model = self.model
        model.truncate(len(tokens) - 1)
        with model.decoding():
            width = model.batch_width(tokens) if drafts is not None else 1
            if drafts is not None and width == 1:
                self.stats.drafting = BATCH_DIFFERS
            yield from self._decode_loop(tokens[-1], max_tokens, sampler, drafts if width > 1 else None, width)

    def _decode_loop(
        self, pending: int, max_tokens: int, sampler: Sampler, drafts: PromptLookup | None, width: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        model, ctx, produced = self.model, self.model.llm.ctx, 0
        while True:
            draft = drafts.draft(min(max_tokens - produced - 1, width - 1)) if drafts else []
            base = model.llm.n_tokens
            began = time.perf_counter()
            model.decode([pending, *draft], logits_all=bool(draft))
            took = time.perf_counter() - began
            if not draft:
                self._token_s = took if self._token_s is None else 0.8 * self._token_s + 0.2 * took
                logits = model.logits(-1)
                pending = sampler.sample(ctx, -1, logits)
                produced += 1
                if drafts is not None:
                    drafts.append(pending)
                yield pending, logits
                continue
            assert drafts is not None  # a draft comes from them
            chosen: list[int] = []
            for i in range(len(draft) + 1):  # the model's choice after each accepted guess, as without a draft
                chosen.append(sampler.sample(ctx, i, model.logits(i)))
                if i == len(draft) or chosen[-1] != draft[i] or model.is_end(chosen[-1]):  # the answer ends
                    break
            accepted = len(chosen) - 1
            model.truncate(base + 1 + accepted)
            per_token = self._token_s if self.weigh_drafts else None
            drafts.update(len(draft), accepted, took / per_token if per_token else None)
            for i, token in enumerate(chosen):
                drafts.append(token)
                produced += 1
                yield token, model.logits(i)
            pending = chosen[-1]

    def _prefill(self, tokens: list[int], cached: int) -> bool:
        """Evaluate the prompt but its last token in chunks, so a cancel stops it at once; False if cancelled.

        ``cached`` leading tokens are already in the KV cache. The last token is left to ``generate``,
        which then finds everything before it cached and evaluates only that one.
        """
        llm, start, end = self.model.llm, min(cached, len(tokens) - 1), len(tokens) - 1
        if start >= end:
            return not self._cancel.is_set()
        llm.n_tokens = start
        with self.model.abortable(self._cancel):
            for chunk in range(start, end, PREFILL_CHUNK):
                if self._cancel.is_set():
                    return False
                try:
                    llm.eval(tokens[chunk : min(chunk + PREFILL_CHUNK, end)])
                except RuntimeError:  # llama_decode returned 2: aborted by the cancel
                    if self._cancel.is_set():
                        return False
                    raise
        return not self._cancel.is_set()

    def complete(self, messages: Messages, **kwargs: Any) -> str:
        """The whole answer as one string (``kwargs``: those of :meth:`stream`)."""
        return "".join(d.text for d in self.stream(messages, **kwargs))

    def forget(self, conversation: object) -> None:
        """Drop a conversation's cached KV state (e.g. when it is deleted or edited)."""
        self._states.take(conversation)
        if conversation == self._key:
            self._prefix = Prefix()

    # -- hot-swap
    def swap(
        self,
        path: Path | str,
        timeout: float | None = None,
        *,
        history: Messages | None = None,
        conversation: object = None,
    ) -> None:
        """Load another model beside the current one, then switch to it between two turns.

        The load does not hold the engine lock, so the current model keeps answering meanwhile;
        the switch waits for the answer in progress (at most ``timeout`` seconds), never cuts it.
        The next turn renders the whole history with the new model's own chat template; given
        ``history`` (and its ``conversation`` key), the new model evaluates it during the load, so
        that turn only evaluates the new message. If the new model cannot load (bad file, won't
        fit, template error) the current one keeps serving and the error is raised; on success
        the old model's memory is released.
        """
        with self._swap_lock:
            new = _load_for_swap(path, self.n_ctx_requested, self.threads, self.decode_threads)
            warm = _prefill(new, history) if history and conversation is not None else Prefix()
            if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
                new.close()
                raise EngineError(f"the answer in progress did not finish within {timeout:g} s; model not swapped")
            try:
                old, self.model = self.model, new
                self._prefix = warm  # KV state and saved states belong to the old model
                self._key = conversation if warm.tokens else None
                self._states.clear()
                self.stats = Stats(n_ctx=new.n_ctx)
                self._token_s = None  # another model decodes at another speed
            finally:
                self._lock.release()
            old.close()
            release_heap()

    def swap_in_background(self, path: Path | str) -> Future[None]:
        """Start ``swap`` in a thread; the future holds its outcome (None, or the error)."""
        future: Future[None] = Future()

        def run() -> None:
            try:
                self.swap(path)
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name="model-swap", daemon=True).start()
        return future

    def close(self) -> None:
        with self._lock:
            self.model.close()


SWAP_PROBE = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "How are you?"},
]


def _prefill(model: Model, history: Messages) -> Prefix:
    """Evaluate the conversation so far with a freshly loaded model (its KV cache then holds it)."""
    try:
        text = model.template.render(history, add_generation_prompt=False)
        tokens = model.tokenize(text, first=True)
        if len(tokens) > model.n_ctx // 2:  # the next turn will fit (and maybe trim) it itself
            return Prefix()
        model.llm.eval(tokens)
    except AssistantError:
        model.close()
        raise
    except Exception as exc:  # llama.cpp errors
        model.close()
        raise EngineError(f"the new model could not read the conversation: {exc}") from None
    return Prefix(text, tokens)


BATCH_DIFFERS = (
    "off: this model's logits for a batch of tokens differ from one token at a time with these thread settings "
    "(a verified draft could change the answer); model.decode_threads = 1 (the default) usually matches"
)


def draft_state(speculate: bool, sampler: Sampler, sampled: bool = False) -> str:
    """Whether this answer may draft ("on"), else why not ("off: …").

    A draft is verified by choosing each position's token as decoding alone would (greedy, or one draw of the
    seeded sampler per token, in the same order), so drafting changes no answer, sampled ones included. Only greedy
    answers draft by default (``sampled``: sampled ones too): at temperature 0.7 a file rewrite accepted 25-46 % of
    its guesses and ran at 0.91-0.98x without drafting (2026-12-07, four runs). Constrained answers do not draft:
    measured on five schemas, a JSON answer matched few guesses (its prompt's schema text seeds wrong ones) and
    the failed verifications made it 0.73-0.89x as fast, 0.96-1.08x at best."""
    if not speculate:
        return "off: model.speculate = false"
    if sampler.constrained:
        return "off: a grammar or schema constrains the answer"
    if not sampler.greedy and not sampled:
        return SAMPLED_OFF
    return "on"


SAMPLED_OFF = "off: sampled (temperature > 0): drafting measured no faster there"


def _load_for_swap(path: Path | str, n_ctx: int, threads: int, decode_threads: int) -> Model:
    """Load a model and render a short conversation with its template, so a broken one fails now."""
    model = Model(path, n_ctx, threads, decode_threads)
    try:
        model.template.render(SWAP_PROBE)
    except AssistantError:
        model.close()
        raise
    return model
