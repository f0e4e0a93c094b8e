"""llama.cpp inside distillation (export check, quantiser, evaluation): the product's thread setting (``model.threads``
/ ``ASSISTANT_THREADS``, else the cores other processes leave idle), and its log kept off the terminal."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import _logger

from distill_tools.threads import choose as shared_machine_threads


def threads() -> int:
    """Threads for llama.cpp: the configured count, else the cores other processes leave idle (see ``threads``)."""
    return shared_machine_threads()


_captured: list[str] = []


def _keep(level: int, text: bytes, user_data: Any) -> None:
    _captured.append(text.decode("utf-8", errors="replace"))


_callback: Any = None  # the ctypes callback, kept alive while llama.cpp may call it


@contextmanager
def quiet() -> Iterator[list[str]]:
    """Keep llama.cpp's log off the terminal: its log callback and its C-level stdout/stderr both go to a
    scratch buffer; yields a list that receives the log's lines when the block ends (for error messages)."""
    global _callback
    if _callback is None:
        _callback = llama_cpp.llama_log_callback(_keep)
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    captured: list[str] = []
    _captured.clear()
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as scratch:
        try:
            for fd in saved:
                os.dup2(scratch.fileno(), fd)
            yield captured
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
            scratch.seek(0)
            captured += "".join(_captured).splitlines() + scratch.read().decode("utf-8", errors="replace").splitlines()
            _captured.clear()


def open_model(path: Path, n_ctx: int, n_threads: int | None = None, **options: Any) -> Any:
    """A ``llama_cpp.Llama`` over ``path`` with ``n_threads`` (default: the product's) and no log on the terminal."""
    count = n_threads or threads()
    with quiet():
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, verbose=False, n_threads=count, n_threads_batch=count, **options)
