"""What a run tells its user: one line per phase with its figures, progress bars only on a terminal.

Piped or logged output (not a TTY) gets the phase lines and nothing else: no carriage-return bars,
no third-party progress bars, no llama.cpp log.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

Say = Callable[[str], None]


def interactive() -> bool:
    """Whether progress bars may be drawn: stdout and stderr are both terminals."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))


def printer(stream: TextIO | None = None) -> Say:
    """A ``say`` that writes one flushed line to ``stream`` (default: stdout at call time)."""

    def say(line: str) -> None:
        print(line, file=stream or sys.stdout, flush=True)

    return say


def quiet_libraries() -> None:
    """No transformers/huggingface_hub progress bars or advisory warnings: the phase lines replace them."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


@contextlib.contextmanager
def third_party_bars_hidden() -> Iterator[None]:
    """Off a terminal, swallow what a library writes to sys.stderr (e.g. transformers' GGUF conversion bar,
    a plain tqdm that no setting turns off); on a terminal, change nothing. Errors still raise."""
    if interactive():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield
