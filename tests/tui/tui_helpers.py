"""Helpers for the chat UI tests."""

from __future__ import annotations

import asyncio
import threading
import time

from textual import events
from textual.notifications import Notification
from textual.widget import Widget

from assistant.storage.store import Store
from assistant.tui.app import ChatApp
from assistant.tui.widgets.message import MessageView


def seed(store: Store) -> tuple[int, int]:
    """Two stored conversations with fixed content (no timings that vary): returns their ids."""
    first = store.new_conversation(title="Reverse a list in Python", model="SmolLM2-135M-Instruct.Q4_1")
    store.add_message(first, "user", "How do I reverse a list in Python?")
    store.add_message(
        first,
        "assistant",
        "Use slicing or `reversed`:\n\n```python\nitems = [1, 2, 3]\nprint(items[::-1])\n```\n\n"
        "Both keep the original list.",
        model="SmolLM2-135M-Instruct.Q4_1",
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=30,
        ttft_s=0.05,
        tokens_per_s=50.0,
    )
    second = store.new_conversation(title="Monads", model="SmolLM2-135M-Instruct.Q4_1")
    store.add_message(second, "user", "What is a monad?")
    store.add_message(
        second,
        "assistant",
        "A monad wraps a value and lets you **chain** computations on it.",
        model="SmolLM2-135M-Instruct.Q4_1",
        finish_reason="stop",
        prompt_tokens=30,
        completion_tokens=14,
        ttft_s=0.04,
        tokens_per_s=48.5,
    )
    return first, second


async def wait_until(pilot, predicate, what: str, timeout: float = 90.0) -> None:  # noqa: ANN001
    """Let the app run until ``predicate()`` holds (give it one that cannot be missed); fail after ``timeout`` s
    naming ``what``.

    It polls with ``asyncio.sleep`` (the app's loop runs meanwhile), not ``pilot.pause``: that waits for the screen
    to settle, which takes seconds during a long prefill and fails once the app has exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(0.01)


async def send(pilot, app, text: str) -> int:  # noqa: ANN001
    """Type ``text`` and press Enter as a terminal would; returns ``turns_done`` before this turn.

    Enter is posted as the terminal driver posts it: ``pilot.press`` waits for the app to go idle, which it only
    does once the whole answer has streamed, so on a fast machine the answer would be over before it returns."""
    app.prompt.focus()
    await pilot.press(*text)
    await pilot.pause()
    before = app.turns_done
    press_enter(app)
    return before


def press_enter(app: ChatApp) -> None:
    """Enter, as the terminal driver posts it (without waiting for the app to go idle)."""
    app.post_message(events.Key("enter", "\r"))


def streaming(app: ChatApp) -> MessageView | None:
    """The message an answer is being streamed into, if any."""
    return next((view for view in app.chat.views() if view.streaming), None)


def streamed(app: ChatApp) -> str:
    """The text of the answer being streamed so far ('' when none is)."""
    view = streaming(app)
    return view.source if view is not None else ""


def screen_lines(app: ChatApp, widget: Widget | None = None) -> list[str]:
    """The text of every line on the screen as drawn now, or of the part ``widget`` covers (Textual's compositor
    has no public reader)."""
    lines = [strip.text for strip in app.screen._compositor.render_strips()]
    if widget is None:
        return lines
    region = widget.region
    return [line[region.x : region.right] for line in lines[region.y : region.bottom]]


def notices(app: ChatApp) -> list[Notification]:
    """Every notification the app has shown and still holds (Textual keeps them in ``App._notifications``: it has
    no public reader)."""
    return list(app._notifications)


async def wait_idle(pilot, app, timeout: float = 90.0, turns: int | None = None) -> None:  # noqa: ANN001
    """Wait until the app has finished the answer number ``turns`` (default: the one under way)."""
    target = turns if turns is not None else app.turns_done + (1 if app.generating else 0)
    await pilot.pause()
    await wait_until(pilot, lambda: not app.generating and app.turns_done >= target, "the answer to finish", timeout)
    await pilot.pause()


PARTIAL = "Monday\nTuesday\nWed"


def seed_incomplete(store: Store) -> tuple[int, int]:
    """A conversation whose last answer was cut by a crash (complete=0, no finish reason), as kill -9 leaves it."""
    conversation = store.new_conversation(title="Days", model="SmolLM2-135M-Instruct.Q4_1")
    store.add_message(conversation, "user", "List the days of the week, one per line.")
    answer = store.add_message(conversation, "assistant", PARTIAL, model="SmolLM2-135M-Instruct.Q4_1", complete=0)
    return conversation, answer


def note_text(view) -> str:  # noqa: ANN001 - a MessageView
    """The plain text of a message's resume note ('' when hidden)."""
    note = view.query_one(".resume-note")
    return str(note.render()) if note.display else ""


async def ask_and_wait_for_text(pilot, app, text: str, chars: int, timeout: float = 60.0) -> None:  # noqa: ANN001
    """Send ``text`` and return once ``chars`` characters of the answer are on screen (it is still streaming)."""
    await send(pilot, app, text)
    await wait_until(
        pilot,
        lambda: app.turns_done > 0 or len(streamed(app)) >= chars,
        "the answer to start",
        timeout,
    )
    assert app.generating, "the answer finished before the test could act on it"


class Moment(threading.Event):
    """Set (with the time in ``at``) by a watcher thread when a condition first holds."""

    at: float = float("inf")


def when(condition, timeout: float) -> Moment:  # noqa: ANN001
    """Watch ``condition()`` from a thread (every 5 ms, for at most ``timeout`` s); the moment it became true."""
    moment = Moment()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                moment.at = time.monotonic()
                moment.set()
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    return moment
