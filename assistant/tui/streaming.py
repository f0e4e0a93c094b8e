"""An answer on its way from the generation thread to the screen.

The worker thread reads the session's stream and collects the pieces; it nudges the UI at most
~20 times a second (``AnswerDelta``) and a timer picks up stragglers, so the model is not slowed
by per-token redraws and the UI never blocks. ``AnswerDone`` ends the turn; ``idle`` tells
anyone (quitting, a test, a benchmark) that no generation thread runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from textual.message import Message

from assistant import AssistantError
from assistant.models.engine import Delta
from assistant.text_safety import StreamSanitizer

STREAM_INTERVAL_S = 1 / 20  # the worker nudges the UI at most this often; pieces in between are batched


class AnswerDelta(Message):
    """More of the answer is waiting in :meth:`AnswerStream.take`."""


class AnswerDone(Message):
    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error


class AnswerStream:
    """The pieces of the answer being streamed, handed from the worker thread to the UI thread."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()  # set by the UI: the worker stops reading at the next piece
        self.idle = threading.Event()  # set while no worker runs
        self.idle.set()

    def begin(self) -> None:
        """A new answer is about to be streamed (call on the UI thread before starting the worker)."""
        self.stop.clear()
        self.idle.clear()
        self.take()

    def pump(self, stream: Iterator[Delta], post: Callable[[Message], object]) -> None:
        """Runs in the worker thread: read ``stream`` to its end (or ``stop``), posting progress to the UI."""
        cleaner = StreamSanitizer()  # model output may hold terminal escape sequences
        error = ""
        last_post = 0.0
        try:
            for delta in stream:
                if piece := cleaner.feed(delta.text):
                    with self._lock:
                        self._pending.append(piece)
                    if time.monotonic() - last_post >= STREAM_INTERVAL_S:
                        last_post = time.monotonic()
                        post(AnswerDelta())
                if self.stop.is_set():
                    break
        except AssistantError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app keeps running
            error = f"generation failed: {exc}"
        finally:
            stream.close()  # type: ignore[attr-defined]  # finalises the stored answer (as cancelled if stopped)
            self.idle.set()
        post(AnswerDone(error))

    def take(self) -> str:
        """Everything streamed since the last call."""
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
        return text
