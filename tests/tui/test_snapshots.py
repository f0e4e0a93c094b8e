"""Snapshots of the main screens at 80×24 (and one wide), from a store with fixed content.

Nothing timing-dependent is on screen: the stats shown come from the seeded messages, the
prompt's cursor does not blink, and no answer is generated. Update with
``pytest tests/tui/test_snapshots.py --snapshot-update`` after a deliberate UI change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea
from tui_helpers import seed


@pytest.fixture
def seeded(store):  # noqa: ANN001, ANN201
    return seed(store)


def opened(conversation: int | None, *keys: str, theme: str = "") -> Callable[[Pilot], Awaitable[None]]:
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        app.prompt.cursor_blink = False
        if theme:
            app.theme = theme
        await app.open_conversation(conversation)
        app.prompt.focus()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        for box in app.screen.query(TextArea):  # a dialog's box too: a blinking cursor is drawn or not by chance
            box.cursor_blink = False
        await pilot.pause()

    return run_before


def test_chat_with_code(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[0]))


def test_chat_light_theme(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[0], theme="textual-light"))


def test_new_chat(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(None))


def test_wide_terminal(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(140, 36), run_before=opened(seeded[0]))


def test_search_results(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[1], "ctrl+f", *"list"))


def test_help_screen(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[1], "f1"))


def test_model_picker(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[1], "ctrl+o"))


def test_settings_screen(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[1], "ctrl+s"))


def test_delete_confirmation(snap_compare, make_app, seeded) -> None:  # noqa: ANN001
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(seeded[1], "f8"))


def test_versions_reasoning_and_a_file(snap_compare, make_app, store, tmp_path) -> None:  # noqa: ANN001
    """The branch arrows (◀ 2/2 ▶), a folded reasoning block and a folded attachment (issue 18)."""
    from assistant.chat import attach, branches

    model = "SmolLM2-135M-Instruct.Q4_1"
    notes = attach.Attachment("sums.txt", "2 + 2 = 4\n", 10, "0" * 64, tokens=9)
    cid = store.new_conversation(title="Sums", model=model)
    question = store.add_message(cid, "user", attach.compose("What is 2 + 2?", [notes]))
    attach.save(store, question, [notes])
    store.add_message(cid, "assistant", "Four.", model=model, finish_reason="stop")
    branches.fork(store, cid, question)  # as a regenerate does
    store.add_message(
        cid,
        "assistant",
        "<think>Two and two make four.</think>\n\n2 + 2 = **4**.",
        model=model,
        finish_reason="stop",
        prompt_tokens=30,
        completion_tokens=12,
        ttft_s=0.05,
        tokens_per_s=40.0,
    )
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=opened(cid))
