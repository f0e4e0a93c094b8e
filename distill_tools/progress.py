"""What a run tells its user: one line per phase with its figures and time, progress bars only on a terminal.

Piped or logged output (not a TTY) gets the phase lines and nothing else: no carriage-return bars,
no third-party progress bars, no llama.cpp log.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

Say = Callable[[str], None]
# what an error line drops (it may carry a file name as typed): escape sequences (CSI; OSC, DCS, SOS, PM and APC
# strings up to BEL, ST or a line end; the rest of an escape) and every other control or bidi-override character
UNSAFE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?|.?)"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def one_line(text: str) -> str:
    """``text`` as one line that a terminal shows as it is (``UNSAFE`` dropped, line breaks made spaces)."""
    return " ".join(UNSAFE.sub("", text).split())


def interrupted(tool: str, exc: BaseException) -> int:
    """A run stopped by Ctrl-C with its state saved (``distill_tools.Interrupted``): one line on stderr (what was
    kept, how to resume), and 130, the exit code of every command stopped by Ctrl-C."""
    print(f"{tool}: {one_line(str(exc))}", file=sys.stderr, flush=True)
    return 130


def silent(line: str) -> None:
    """A ``say`` that says nothing (a torchrun rank other than 0)."""


class Clock:
    """The seconds each phase of a run took (a summary's ``timings_s``), and the run's total."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``{name}_s``."""
        mark = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[f"{name}_s"] = time.perf_counter() - mark

    def took(self, name: str) -> str:
        """How long phase ``name`` took, as a phase line ends: ``12.3 s``."""
        return f"{self.seconds[f'{name}_s']:.1f} s"

    def timings(self, total: bool = False) -> dict[str, float]:
        """Every phase's seconds so far (and ``total_s``, from the start), rounded as a summary keeps them."""
        seconds = {**self.seconds, "total_s": time.perf_counter() - self.start} if total else self.seconds
        return {name: round(value, 1) for name, value in seconds.items()}


def interactive() -> bool:
    """Whether progress bars may be drawn: stdout and stderr are both terminals."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))


def printer(stream: TextIO | None = None) -> Say:
    """A ``say`` that writes one flushed line to ``stream`` (default: stdout at call time)."""

    def say(line: str) -> None:
        print(line, file=stream or sys.stdout, flush=True)

    return say


def quiet_libraries() -> None:
    """No transformers/huggingface_hub progress bars (``Loading weights: 100%|…|``) or advisory warnings: the
    phase lines replace them."""
    try:  # here, not at the top: transformers loads when a run starts, not with the command line
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        disable_progress_bars()
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
