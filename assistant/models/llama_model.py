"""One GGUF model loaded in llama.cpp: its context, chat template and tokenizer, with llama.cpp kept quiet.

llama_cpp takes ~150 ms to import, so it is imported when a model loads, not with this module: the chat UI
and ``assistant ask`` import the engine well before loading a model, and the chat UI shows itself first.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil

from assistant import AssistantError
from assistant.models.chat_template import ChatTemplate, fallback_for
from assistant.models.gguf_info import ModelInfo, available_memory, estimate_memory, read_info
from assistant.models.sampler import Sampler


class EngineError(AssistantError):
    """The model cannot be loaded or run."""


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def release_heap() -> None:
    """Hand freed C heap back to the OS (glibc keeps ~50-80 MiB of a closed model otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


BATCH_CAPACITY = 64  # tokens one ``Model.decode`` takes: a draft and the token before it
BATCH_CHECK = 13  # the widest verification ``Model.batch_width`` checks
DECODE_THREADS = 1  # threads for one token at a time (see README, Performance: a busy machine)
_LOAD_LOCK = threading.Lock()
_LOG = logging.getLogger("assistant.llama")
_LOG.addHandler(logging.NullHandler())  # no handler configured: nothing printed (not even logging's last resort)
_LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level
_recent_errors: deque[str] = deque(maxlen=4)  # llama.cpp's last error lines, for a failed load's message
_log_callback: object = None  # the installed ctypes callback (kept alive here)


def _quiet_llama_log(llama_cpp: ModuleType) -> None:
    """Route llama.cpp's log (model loading, "using full-size SWA cache", ...) to the ``assistant.llama``
    logger instead of the terminal; llama-cpp-python's own handler prints warnings and errors to stderr."""
    global _log_callback
    if _log_callback is not None:
        return

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
    from llama_cpp import llama_chat_format  # deliberately lazy: see the module docstring

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

    def __init__(self, path: Path | str, n_ctx: int = 4096, threads: int = 0, decode_threads: int = 0) -> None:
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
        import llama_cpp  # deliberately lazy: see the module docstring

        self._llama_cpp = llama_cpp
        _quiet_llama_log(llama_cpp)
        self.path = Path(path)
        self.threads = threads or physical_cores()  # prompt evaluation (batches)
        self.decode_threads = min(decode_threads or DECODE_THREADS, self.threads)  # one token at a time
        _recent_errors.clear()
        try:
            with llama_chat_handlers_disabled():
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=self.decode_threads,
                    n_threads_batch=self.threads,
                    flash_attn=True,  # each position's logits then do not depend on the batch: see batch_width
                    use_mmap=True,
                    logits_all=False,
                    verbose=False,
                )
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            why = f" ({_recent_errors[-1]})" if _recent_errors else ""
            raise EngineError(f"{path}: llama.cpp could not load the model: {exc}{why}") from None
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self.vocab = self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._batch: Any = llama_cpp.llama_batch_init(BATCH_CAPACITY, 0, 1)
        self.seed = llama_cpp.LLAMA_DEFAULT_SEED
        self._width: int | None = None  # see batch_width
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
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        """The token's text bytes (special tokens render as nothing); cached per token."""
        if (cached := self._pieces.get(token)) is not None:
            return cached
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                break
            size = -n
        self._pieces[token] = piece = buffer.raw[:n]
        return piece

    @functools.cached_property
    def max_piece_bytes(self) -> int:
        """The most bytes one token stands for (special tokens as their text): a text of ``b`` bytes is at least
        ``b / max_piece_bytes`` tokens. Read from the vocabulary on first use (~0.1 s for 50k tokens)."""
        buffer = ctypes.create_string_buffer(256)
        longest = 1
        for token in range(self.n_vocab):
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
            longest = max(longest, abs(n))  # negative: the piece needs -n bytes
        return longest

    def last_logits(self) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def set_seed(self, seed: int | None) -> None:
        """Make sampling repeatable with ``seed``; None: random."""
        self.seed = self._llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed
        self.llm.set_seed(self.seed)

    def sampler(self, *, temperature: float, top_p: float, top_k: int, grammar: object = None) -> Sampler:
        """A sampler for one turn with these settings and the seed set by :meth:`set_seed`."""
        return Sampler(
            self._llama_cpp,
            self.vocab,
            self.n_vocab,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=self.seed,
            grammar=grammar,
        )

    def decode(self, tokens: list[int], logits_all: bool = False) -> None:
        """Evaluate ``tokens`` after the first ``llm.n_tokens`` ones (at most ``BATCH_CAPACITY``), with logits for
        the last one, or for each with ``logits_all`` (read them with :meth:`logits`, by index in ``tokens``)."""
        llm, batch, start = self.llm, self._batch, self.llm.n_tokens
        self._llama_cpp.llama_memory_seq_rm(self._llama_cpp.llama_get_memory(llm.ctx), 0, start, -1)
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, start + i, 1, logits_all
            batch.seq_id[i][0] = 0
        batch.logits[len(tokens) - 1] = True
        if code := self._llama_cpp.llama_decode(llm.ctx, batch):
            raise RuntimeError(f"llama_decode returned {code}")
        llm.input_ids[start : start + len(tokens)] = tokens
        llm.n_tokens = start + len(tokens)
        llm._requires_eval = False

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Evaluate an answer's tokens inside: one at a time on the decode threads, a draft's verification on the
        batch threads (each position's logits are the same either way: checked by :meth:`batch_width`)."""
        self._llama_cpp.llama_set_n_threads(self.llm.ctx, self.decode_threads, self.threads)
        yield

    def batch_width(self, tokens: list[int]) -> int:
        """How many tokens one :meth:`decode` may verify with each position's logits bit-identical to decoding
        them one at a time (1: none), so that a verified draft gives exactly the answer decoding alone gives.

        Kernels differ by batch size on some models and machines (llama.cpp's repacked quantized matrices
        switch from a vector to a matrix kernel at 4 rows; attention without flash attention): this decodes the
        prompt's last tokens again *after* the KV cache's end (positions the answer will overwrite) both ways and
        compares, once per model. The prompt's own KV entries are left as its prefill made them: entries
        recomputed in a small batch differ from a 512-row prefill's, and so would every answer after them.
        """
        if self._width is not None:
            return self._width
        end = self.llm.n_tokens
        for width in (BATCH_CHECK, 3):
            if len(tokens) < width or end + width > self.n_ctx:
                return 1  # too short to tell, or no room: ask again on another prompt
            probe = tokens[-width:]
            singles = []
            for token in probe:
                self.decode([token])
                singles.append(self.logits(-1).copy())
            self.truncate(end)
            self.decode(probe, logits_all=True)
            same = all(np.array_equal(self.logits(i), single) for i, single in enumerate(singles))
            self.truncate(end)
            if same:
                self._width = width
                return width
        self._width = 1
        return 1

    def logits(self, index: int) -> np.ndarray:
        """The logits of the last decoded batch's position ``index`` (a view, valid until the next decode)."""
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def truncate(self, n_tokens: int) -> None:
        """Keep only the first ``n_tokens`` evaluated tokens in the KV cache (drop a rejected draft)."""
        llm = self.llm
        if n_tokens < llm.n_tokens:
            self._llama_cpp.llama_memory_seq_rm(self._llama_cpp.llama_get_memory(llm.ctx), 0, n_tokens, -1)
            llm.n_tokens = n_tokens

    def save_state(self) -> bytes:
        size = self._llama_cpp.llama_state_get_size(self.llm.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = self._llama_cpp.llama_state_get_data(self.llm.ctx, buffer, size)
        return ctypes.string_at(buffer, written)  # bytes(buffer[:n]) builds a list of ints: 40x slower

    def load_state(self, data: bytes, tokens: list[int]) -> None:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if self._llama_cpp.llama_state_set_data(self.llm.ctx, buffer, len(data)) != len(data):
            raise EngineError("could not restore a saved conversation state")
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
        self.llm._requires_eval = True

    @contextmanager
    def abortable(self, cancel: threading.Event) -> Iterator[None]:
        """Let ``cancel`` abort llama.cpp's evaluation mid-batch (between two graph nodes) while inside."""
        llama_cpp = self._llama_cpp
        callback = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())
        llama_cpp.llama_set_abort_callback(self.llm.ctx, callback, None)
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(self.llm.ctx, llama_cpp.ggml_abort_callback(), None)

    def close(self) -> None:
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()
