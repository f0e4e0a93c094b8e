"""Distilling a persona from the chat UI: ``assistant distill persona NAME`` in its own process.

torch never loads in the UI's process. The job reads the command's ``--progress-json`` lines
(``progress: {"phase", "done", "total", "elapsed_s"}`` on stderr) and its ``--json`` summary (stdout);
``Rate`` turns the progress into a rate and an ETA for the phase under way. Cancelling sends SIGINT,
as Ctrl-C would (the run keeps its teacher pass and checkpoint, so running it again resumes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

PROGRESS_PREFIX = "progress: "  # as distill_tools.persona_cli writes it
CANCEL_GRACE_S = 20.0  # after SIGINT the run saves its state; then SIGTERM, then SIGKILL


@dataclass
class Progress:
    phase: str  # e.g. "training (loss 2.314)"
    done: int
    total: int
    elapsed_s: float

    @property
    def name(self) -> str:
        """The phase without its running figures (``training``)."""
        return self.phase.split(" (loss")[0]


def parse(line: str) -> Progress | None:
    """A ``--progress-json`` line as a :class:`Progress`; None for any other line (library bars, messages)."""
    line = line.rsplit("\r", 1)[-1].strip()
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        data = json.loads(line[len(PROGRESS_PREFIX) :])
        return Progress(str(data["phase"]), int(data["done"]), int(data["total"]), float(data["elapsed_s"]))
    except (ValueError, KeyError, TypeError):
        return None


class Rate:
    """Units per second and the time left in the phase under way, measured from its first progress line."""

    def __init__(self) -> None:
        self.phase, self.start = "", (0.0, 0)  # (elapsed_s, done) when the phase started
        self.rate: float | None = None
        self.eta_s: float | None = None

    def update(self, p: Progress) -> None:
        if p.name != self.phase or p.done < self.start[1]:
            self.phase, self.start, self.rate, self.eta_s = p.name, (p.elapsed_s, p.done), None, None
            return
        seconds, units = p.elapsed_s - self.start[0], p.done - self.start[1]
        if seconds > 0 and units > 0:
            self.rate = units / seconds
            self.eta_s = max(0, p.total - p.done) / self.rate


def describe(p: Progress, rate: Rate, width: int = 0) -> str:
    """One line: phase, done/total, rate and ETA (when known). Given a ``width``, the phase's details in
    parentheses go first, then the phase is cut, so that the figures always fit."""
    figures = [f"{p.done}/{p.total}"] if p.total > 1 else []
    if rate.rate:
        figures.append(f"{rate.rate:.2f}/s" if rate.rate < 10 else f"{rate.rate:.0f}/s")
    if rate.eta_s is not None:
        figures.append(f"ETA {duration(rate.eta_s)}")
    tail = "".join(f" · {f}" for f in figures)
    phase = p.phase
    if width and len(phase + tail) > width:
        phase = phase.split(" (")[0]
    if width and len(phase + tail) > width:
        room = max(1, width - len(tail) - 1)
        phase = phase[:room] + "…" if len(phase) > room else phase
    return phase + tail


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


@dataclass
class Outcome:
    returncode: int
    summary: dict | None  # the --json summary when the run succeeded
    error: str  # the last line the command wrote that is not progress (its one-line error)
    cancelled: bool


class DistillJob:
    """One ``distill persona`` run in a child process; ``on_progress`` and ``on_end`` are called from its threads
    (what they return is ignored)."""

    def __init__(
        self,
        name: str,
        on_progress: Callable[[Progress], object],
        on_end: Callable[[Outcome], object],
        extra_args: list[str] | None = None,
    ) -> None:
        self.name = name
        self.args = [
            sys.executable,
            "-m",
            "assistant",
            "distill",
            "persona",
            name,
            "--json",
            "--progress-json",
            *(extra_args or []),
        ]
        self.on_progress, self.on_end = on_progress, on_end
        self.cancelled = threading.Event()
        self.ended = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._last_error = ""
        self.outcome: Outcome | None = None  # set when the run has ended

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_progress, daemon=True, name=f"distill {self.name} progress")
        self._reader.start()
        threading.Thread(target=self._wait, daemon=True, name=f"distill {self.name}").start()

    @property
    def running(self) -> bool:
        return self._proc is not None and not self.ended.is_set()

    def _read_progress(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            progress = parse(line)
            if progress is not None:
                self.on_progress(progress)
            elif text := line.rsplit("\r", 1)[-1].strip():
                self._last_error = text

    def _wait(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout.read()  # ends when the process closes it (it exits)
        code = self._proc.wait()
        self._reader.join(timeout=5.0)  # its last lines (the error) are read before the outcome is told
        summary = None
        if code == 0:
            try:
                summary = json.loads(out)
            except ValueError:
                summary = None
        self.outcome = Outcome(code, summary, self._last_error, self.cancelled.is_set())
        self.ended.set()
        self.on_end(self.outcome)

    def cancel(self) -> None:
        """Stop the run as Ctrl-C would; a thread escalates to SIGTERM and SIGKILL if it does not end in time."""
        if not self.running:
            return
        self.cancelled.set()
        self._signal(signal.SIGINT)
        threading.Thread(target=self._escalate, daemon=True).start()

    def _escalate(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.ended.wait(CANCEL_GRACE_S):
                return
            self._signal(sig)

    def _signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, sig)  # the run and anything it started
            except ProcessLookupError:
                pass
