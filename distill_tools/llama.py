"""llama.cpp inside distillation (export check, quantiser, evaluation): the product's thread setting
(``model.threads`` / ``ASSISTANT_THREADS``, else the physical cores), and its log kept off the terminal."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def threads() -> int:
    """Threads for llama.cpp, as the chat engine uses them."""
    from assistant.config import load
    from assistant.engine import physical_cores

    return load().model.threads or physical_cores()


@contextmanager
def quiet() -> Iterator[list[str]]:
    """Send llama.cpp's log (C-level stdout/stderr) to a scratch file; yields a list that receives its lines."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its Python-side log callback
    captured: list[str] = []
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
            scratch.seek(0)
            captured += scratch.read().decode("utf-8", errors="replace").splitlines()


def open_model(path: Path, n_ctx: int, **options: Any) -> Any:
    """A ``llama_cpp.Llama`` over ``path`` with the product's threads and no log on the terminal."""
    import llama_cpp

    count = threads()
    with quiet():
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, verbose=False, n_threads=count, n_threads_batch=count, **options)
