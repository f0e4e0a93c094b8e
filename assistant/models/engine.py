"""The on-device engine: one GGUF model in llama.cpp, streamed answers with per-token logprobs.

Keeps the token sequence of the last turn so the next turn re-evaluates only its new
tokens (KV prefix reuse), keeps a bounded cache of other conversations' KV states, fits a
too-long history by dropping the oldest turns (and says so), and hot-swaps models between
turns with the old one serving until the new one is ready.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant import AssistantError
from assistant.models.chat_template import ChatTemplate, fallback_for
from assistant.models.gguf_info import ModelInfo, available_memory, estimate_memory, read_info

Messages = list[dict[str, str]]
PREFILL_CHUNK = 64  # prompt tokens evaluated between two looks at the cancel flag


class EngineError(AssistantError):
    """The model cannot be loaded or run."""


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
    truncated_chars: int = 0  # characters cut from a message too long for the window
    finish_reason: str = ""  # stop | length | cancelled
    notes: list[str] = field(default_factory=list)


@dataclass
class _Prefix:
    """What the KV cache holds: the text it renders to and its exact tokens."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)


@dataclass
class _SavedState:
    data: bytes  # llama.cpp's context state (KV cache)
    evaluated: list[int]  # the tokens that state holds
    prefix: _Prefix

    @property
    def nbytes(self) -> int:
        return len(self.data)


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


_LOAD_LOCK = threading.Lock()
_LOG = logging.getLogger("assistant.llama")
_LOG.addHandler(logging.NullHandler())  # no handler configured: nothing printed (not even logging's last resort)
_LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level
_recent_errors: deque[str] = deque(maxlen=4)  # llama.cpp's last error lines, for a failed load's message
_log_callback: object = None  # the installed ctypes callback (kept alive here)


def _quiet_llama_log() -> None:
    """Route llama.cpp's log (model loading, "using full-size SWA cache", ...) to the ``assistant.llama``
    logger instead of the terminal; llama-cpp-python's own handler prints warnings and errors to stderr."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if level == 4 and line:
            _recent_errors.append(line)
        if line:
            _LOG.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", line)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    _log_callback = forward


def _unused_chat_handler(*args: object, **kwargs: object) -> None:
    raise EngineError("llama-cpp-python's chat handlers are disabled; the engine renders its own template")


class _UnusedFormatter:
    """Stands in for llama-cpp-python's Jinja2ChatFormatter while a model loads: compiles nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def to_chat_handler(self) -> object:
        return _unused_chat_handler


@contextmanager
def llama_chat_handlers_disabled() -> Iterator[None]:
    """Load a model without llama-cpp-python compiling the file's chat templates.

    ``Llama()`` compiles every ``tokenizer.chat_template*`` string in the file with plain Jinja,
    whose constant folding runs arithmetic at compile time: a template holding ``9 ** 9 ** 9 ** 9``
    would hang the load in C code. The engine never uses those handlers (it renders the template
    itself in a bounded sandbox), so they are not built at all.
    """
    from llama_cpp import llama_chat_format

    with _LOAD_LOCK:
        original = llama_chat_format.Jinja2ChatFormatter
        # a class of the library swapped for another during the load: mypy rightly flags assigning to a class name
        llama_chat_format.Jinja2ChatFormatter = _UnusedFormatter  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            llama_chat_format.Jinja2ChatFormatter = original  # type: ignore[misc]


class Model:
    """One loaded GGUF model: llama.cpp context, template, tokenizer helpers."""

    def __init__(self, path: Path | str, n_ctx: int = 4096, threads: int = 0) -> None:
        self.info: ModelInfo = read_info(path)
        need = estimate_memory(self.info, n_ctx)
        if need > available_memory():
            raise EngineError(
                f"{path}: needs about {need / 2**30:.1f} GiB, only {available_memory() / 2**30:.1f} GiB free; "
                "pick a smaller model or a smaller context"
            )
        source = self.info.chat_template or fallback_for(self.info.architecture)
        self.template = ChatTemplate(
            source, self.info.bos_token, self.info.eos_token, builtin=not self.info.chat_template
        )
        self.template.render([{"role": "user", "content": "hello"}])  # a hostile template is refused before loading
        import llama_cpp

        _quiet_llama_log()
        self.path = Path(path)
        self.threads = threads or physical_cores()
        _recent_errors.clear()
        try:
            with llama_chat_handlers_disabled():
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    use_mmap=True,
                    logits_all=False,
                    verbose=False,
                )
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            why = f" ({_recent_errors[-1]})" if _recent_errors else ""
            raise EngineError(f"{path}: llama.cpp could not load the model: {exc}{why}") from None
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._pieces: dict[int, bytes] = {}
        self._add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"

    @property
    def name(self) -> str:
        return self.path.stem

    def tokenize(self, text: str, first: bool) -> list[int]:
        """Tokens of rendered template text (special tokens parsed); BOS only where the model wants it."""
        add_bos = first and self._add_bos and not (self.info.bos_token and text.startswith(self.info.bos_token))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        """The token's text bytes (special tokens render as nothing); cached per token."""
        if (cached := self._pieces.get(token)) is not None:
            return cached
        import llama_cpp

        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                break
            size = -n
        self._pieces[token] = piece = buffer.raw[:n]
        return piece

    def last_logits(self) -> np.ndarray:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def save_state(self) -> bytes:
        import llama_cpp

        size = llama_cpp.llama_state_get_size(self.llm.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(self.llm.ctx, buffer, size)
        return ctypes.string_at(buffer, written)  # bytes(buffer[:n]) builds a list of ints: 40x slower

    def load_state(self, data: bytes, tokens: list[int]) -> None:
        import llama_cpp

        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_set_data(self.llm.ctx, buffer, len(data)) != len(data):
            raise EngineError("could not restore a saved conversation state")
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
        self.llm._requires_eval = True

    @contextmanager
    def abortable(self, cancel: threading.Event) -> Iterator[None]:
        """Let ``cancel`` abort llama.cpp's evaluation mid-batch (between two graph nodes) while inside."""
        import llama_cpp

        callback = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())
        llama_cpp.llama_set_abort_callback(self.llm.ctx, callback, None)
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(self.llm.ctx, llama_cpp.ggml_abort_callback(), None)

    def close(self) -> None:
        self.llm.close()


class _StopScan:
    """Finds stop strings in a streamed answer, holding back text that may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """(the text that can be shown now, whether a stop string was reached)."""
        if not self.stops:
            return piece, False
        self.pending += piece
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            shown, self.pending = self.pending[: min(found)], ""
            return shown, True
        keep = next(
            (
                k
                for k in range(min(len(self.pending), max(map(len, self.stops)) - 1), 0, -1)
                if any(s.startswith(self.pending[-k:]) for s in self.stops)
            ),
            0,
        )
        shown, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return shown, False

    def held(self) -> str:
        held, self.pending = self.pending, ""
        return held


def token_stats(logits: np.ndarray, token: int) -> tuple[float, float]:
    """(logprob of the token, entropy of the distribution) from raw logits."""
    peak = float(logits.max())
    shifted = logits - peak
    exp = np.exp(shifted)
    total = float(exp.sum())
    log_total = np.log(total)
    entropy = log_total - float((exp * shifted).sum()) / total
    return float(shifted[token] - log_total), float(entropy)


class Engine:
    """Owns one model at a time; streams answers; swaps models between turns."""

    def __init__(
        self, path: Path | str, n_ctx: int = 4096, threads: int = 0, state_cache_bytes: int = 512 * 2**20
    ) -> None:
        self.n_ctx_requested = n_ctx
        self.threads = threads
        self.model = Model(path, n_ctx, threads)
        self.stats = Stats(n_ctx=self.model.n_ctx)
        self._prefix = _Prefix()
        self._key: object = None  # which conversation the KV cache holds
        self._states: OrderedDict[object, _SavedState] = OrderedDict()
        self._state_cache_bytes = state_cache_bytes
        self._lock = threading.Lock()  # held while generating; swap waits for it
        self._swap_lock = threading.Lock()  # one swap at a time
        self._cancel = threading.Event()

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

    # -- prompt building
    def _render(self, messages: Messages, continue_final: bool) -> str:
        """The prompt text; with ``continue_final`` the last (assistant) message opens the model's turn."""
        if not continue_final:
            return self.model.template.render(messages)
        return self.model.template.render(messages[:-1]) + messages[-1]["content"]

    def _fit(
        self, messages: Messages, reserve: int, stats: Stats, continue_final: bool = False
    ) -> tuple[str, Messages]:
        """Render the prompt, dropping the oldest turns (system kept) until it fits."""
        messages = [dict(m) for m in messages]
        budget = self.model.n_ctx - reserve
        keep = 2 if continue_final else 1  # the question and, when continuing, the partial answer
        while True:
            text = self._render(messages, continue_final)
            count = len(self.model.tokenize(text, first=True))
            if count <= budget:
                return text, messages
            system = 1 if messages and messages[0]["role"] == "system" else 0
            if len(messages) - system > keep:
                del messages[system]
                stats.dropped_messages += 1
                continue
            last = messages[-keep]  # the question: a partial answer being continued is never cut
            # cut in proportion to this text's own characters per token (code and CJK pack fewer than prose)
            overflow_chars = len(last["content"]) - int(len(last["content"]) * budget / count * 0.95)
            if overflow_chars >= len(last["content"]):
                raise EngineError(
                    f"the prompt does not fit the model's {self.model.n_ctx}-token context even alone; shorten it"
                )
            stats.truncated_chars += overflow_chars
            last["content"] = last["content"][: len(last["content"]) - overflow_chars]

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
            self._states[self._key] = _SavedState(self.model.save_state(), evaluated, self._prefix)
            self._states.move_to_end(self._key)
            while sum(s.nbytes for s in self._states.values()) > self._state_cache_bytes and self._states:
                self._states.popitem(last=False)
        self._key = key
        saved = self._states.pop(key, None) if key is not None else None
        if saved is not None:
            self.model.load_state(saved.data, saved.evaluated)
            self._prefix = saved.prefix
        else:
            self._prefix = _Prefix()

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
    ) -> Deltas:
        """Yield the answer to ``messages`` piece by piece; ``self.stats`` describes the turn.

        ``grammar`` (a ``llama_cpp.LlamaGrammar``, see ``assistant.models.schema``) constrains what may be sampled.
        The answer ends before the first of the ``stop`` strings (never yielded); ``seed`` makes sampling
        repeatable (default: random).

        With ``continue_final`` the last message is a partial assistant answer: the prompt ends
        with its text (no end-of-turn), so the model carries on from there and only the new
        text is yielded. After a stopped answer this prompt is exactly the cached one.
        """
        if continue_final and (not messages or messages[-1]["role"] != "assistant"):
            raise EngineError("nothing to continue: the last message is not an answer")
        with self._lock:
            started = time.perf_counter()
            self._cancel.clear()
            stats = self.stats = Stats(n_ctx=self.model.n_ctx, model=self.model.name)
            reserve = min(max_tokens, self.model.n_ctx // 2)
            text, fitted = self._fit(messages, reserve, stats, continue_final)
            if stats.dropped_messages:
                stats.notes.append(
                    f"{stats.dropped_messages} oldest message(s) left out to fit the {self.model.n_ctx}-token context"
                )
            if stats.truncated_chars:
                stats.notes.append(f"your message was cut by {stats.truncated_chars} characters to fit the context")
            self._switch_conversation(conversation)
            import llama_cpp

            self.model.llm.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed)
            sampling = {"temp": temperature, "top_p": top_p, "top_k": top_k, "grammar": grammar}
            yield from self._generate(text, max_tokens, sampling, _StopScan(stop), stats, started)

    def _generate(
        self, text: str, max_tokens: int, sampling: dict, scan: _StopScan, stats: Stats, start: float
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
        self._prefix = _Prefix()  # invalid until this turn completes
        try:
            if not self._prefill(tokens, common):
                stats.finish_reason = "cancelled"
                return
            generator = llm.generate(tokens, min_p=0.05, repeat_penalty=1.0, **sampling)
            for token in generator:
                if model.is_end(token):
                    stats.finish_reason = "stop"
                    break
                logprob, entropy = token_stats(model.last_logits(), token)
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
            generator.close()
            if held := scan.held():  # text that looked like the start of a stop string but was not
                yield Delta(held, -1, 0.0, 0.0)
        except GeneratorExit:  # the consumer stopped reading: same as a cancel
            stats.finish_reason = "cancelled"
            raise
        except Exception as exc:
            raise EngineError(f"generation failed: {exc}") from None
        finally:
            end = time.perf_counter()
            if tail := decoder.decode(b"", final=True):
                answer.append(tail)
            stats.completion_tokens = len(generated)
            stats.ttft_s = (first_at or end) - start
            decode_time = end - (first_at or end)
            stats.tokens_per_s = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time else 0.0
            stats.total_s = end - start
            stats.context_used = len(tokens) + len(generated)
            self._prefix = _Prefix(text + "".join(answer), tokens + generated)

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
        self._states.pop(conversation, None)
        if conversation == self._key:
            self._prefix = _Prefix()

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
            new = _load_for_swap(path, self.n_ctx_requested, self.threads)
            warm = _prefill(new, history) if history and conversation is not None else _Prefix()
            if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
                new.close()
                raise EngineError(f"the answer in progress did not finish within {timeout:g} s; model not swapped")
            try:
                old, self.model = self.model, new
                self._prefix = warm  # KV state and saved states belong to the old model
                self._key = conversation if warm.tokens else None
                self._states.clear()
                self.stats = Stats(n_ctx=new.n_ctx)
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


def release_heap() -> None:
    """Hand freed C heap back to the OS (glibc keeps ~50-80 MiB of a closed model otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _prefill(model: Model, history: Messages) -> _Prefix:
    """Evaluate the conversation so far with a freshly loaded model (its KV cache then holds it)."""
    try:
        text = model.template.render(history, add_generation_prompt=False)
        tokens = model.tokenize(text, first=True)
        if len(tokens) > model.n_ctx // 2:  # the next turn will fit (and maybe trim) it itself
            return _Prefix()
        model.llm.eval(tokens)
    except AssistantError:
        model.close()
        raise
    except Exception as exc:  # llama.cpp errors
        model.close()
        raise EngineError(f"the new model could not read the conversation: {exc}") from None
    return _Prefix(text, tokens)


def _load_for_swap(path: Path | str, n_ctx: int, threads: int) -> Model:
    """Load a model and render a short conversation with its template, so a broken one fails now."""
    model = Model(path, n_ctx, threads)
    try:
        model.template.render(SWAP_PROBE)
    except AssistantError:
        model.close()
        raise
    return model
