"""Defects a new user hit in the chat UI (issue 19, rows 1, 8, 9, 11 and 16), each driven by Textual's pilot.

The real SmolLM2-135M student and a real SQLite store, as in ``test_app.py``.
"""

from __future__ import annotations

import time

import pytest
from test_engine import long_paste
from textual.widgets import Button, Input, Label, OptionList, TextArea
from tui_helpers import (
    ask_and_wait_for_text,
    notices,
    seed,
    send,
    streamed,
    streaming,
    wait_idle,
    wait_until,
    when,
)

from assistant.chat.session import resumable
from assistant.models.registry import Registry
from assistant.tui.app import ChatApp

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(120)
async def test_quit_while_streaming_stops_within_a_token_and_keeps_the_partial_answer(  # row 1
    make_app,
    store,
    tui_config,
    engine,  # noqa: ANN001
) -> None:
    tui_config.generation.max_tokens = 1500
    app = make_app()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await ask_and_wait_for_text(pilot, app, "Write a long essay about the history of Rome.", 20)
            conversation = app.session.conversation_id
            pressed = time.monotonic()
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: not app.is_running, "the app to exit", 5.0)
        deadline = pressed + 1.0
        while engine.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        stopped_after = time.monotonic() - pressed
        assert not engine.busy and stopped_after < 1.0, f"still generating {stopped_after:.2f} s after Ctrl+Q"
    finally:
        engine.cancel()  # if the test failed, do not leave the shared engine writing an essay
    answer = store.messages(conversation)[-1]
    assert answer["role"] == "assistant" and answer["content"].strip()
    assert answer["finish_reason"] == "cancelled" and resumable(answer)  # kept, marked incomplete
    assert answer["completion_tokens"] < 1500


async def test_dialogs_take_typing_in_their_first_field_at_once(make_app, store) -> None:  # noqa: ANN001 - row 8
    seed(store)
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"Be brief.")
        assert app.screen.focused is app.screen.query_one("#system", TextArea)
        assert app.screen.query_one("#system", TextArea).text == "Be brief."
        await pilot.press("escape")
        app.prompt.focus()
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("end", *" (2)")
        assert app.screen.query_one(Input).value == "Monads (2)"


def essay(paragraphs: int = 30) -> str:
    return (
        "\n\n".join(
            f"Paragraph {i}. The city grew, its people built roads, temples and aqueducts, and its army marched on."
            for i in range(paragraphs)
        )
        + "\n\nIn the end the western empire of Rome fell in 476."
    )


def on_screen(app, view) -> bool:  # noqa: ANN001
    """Whether some of ``view`` lies inside the chat's visible area."""
    chat = app.chat
    top, height = view.virtual_region.y, view.virtual_region.height
    return top < chat.scroll_y + chat.scrollable_content_region.height and top + height > chat.scroll_y


async def test_a_search_result_in_an_answer_opens_with_that_answer_on_screen(make_app, store) -> None:  # noqa: ANN001
    """Row 9: the conversation opened on a long answer's match shows the answer (highlighted), not just the question.

    Not reproduced with this Textual version (8.2.8): this test passed before any change, here and with a live
    streamed answer at 60x15; it stays as the guard for the row.
    """
    rome = store.new_conversation(title="History of Rome")
    store.add_message(rome, "user", "Write a long essay about the history of Rome. " + "Please be thorough. " * 30)
    answer = store.add_message(rome, "assistant", essay(), finish_reason="stop")
    store.add_message(rome, "user", "Thanks. Now shorter?")
    store.add_message(rome, "assistant", "Rome rose, ruled and fell.", finish_reason="stop")
    later = store.new_conversation(title="Other")
    store.add_message(later, "user", "Hello")
    app = make_app()
    async with app.run_test(size=(60, 15)) as pilot:
        await pilot.press("ctrl+f", *"aqueducts")
        await pilot.press("enter", "enter")
        await wait_until(pilot, lambda: any(v.has_class("-found") for v in app.chat.views()), "the match to open", 30)
        assert app.session.conversation_id == rome
        found = [v for v in app.chat.views() if v.has_class("-found")]
        assert [v.message_id for v in found] == [answer]
        assert on_screen(app, found[0]), f"scrolled to {app.chat.scroll_y}, the answer is at {found[0].virtual_region}"


async def test_a_model_that_failed_to_load_is_named_and_the_message_stays_in_the_box(  # row 11
    tui_config,
    store,
    tmp_path,  # noqa: ANN001
) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"this is not a model")
    app = ChatApp(tui_config, store, model=str(fake))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = app.status.render().plain
        assert "failed to load" in status and "Ctrl+O" in status, status
        app.prompt.focus()
        await pilot.press(*"hi there")
        await pilot.press("enter")
        await pilot.pause()
        assert app.prompt.text == "hi there"  # nothing is lost
        messages = [n.message for n in notices(app)]
        assert not any("still loading" in m for m in messages), messages
        assert "fake.gguf" in messages[-1] and "failed to load" in messages[-1], messages
        assert app.turns_done == 0 and not app.generating


@pytest.mark.timeout(300)
async def test_escape_during_the_prefill_of_a_long_paste_stops_within_half_a_second(  # row 16
    make_app,
    store,
    engine,  # noqa: ANN001
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.prompt.text = "Summarise this log:\n" + long_paste(60)
        app.prompt.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: engine.busy, "the prefill to start", 30)
        await pilot.pause(0.3)
        answer = streaming(app)
        assert app.generating and answer is not None and not answer.source  # still reading the prompt
        stopped = when(lambda: not engine.busy, 30)
        ended = when(lambda: app.turns_done == 1, 30)  # observed from a thread: pilot.press itself takes ~2 s here
        pressed = time.monotonic()
        await pilot.press("escape")
        await wait_until(pilot, lambda: ended.is_set(), "the turn to end", 30)
        print(
            f"\nEsc during prefill: engine stopped after {stopped.at - pressed:.2f} s, turn ended after "
            f"{ended.at - pressed:.2f} s"
        )
        assert ended.at - pressed < 0.5, f"Esc took {ended.at - pressed:.2f} s to stop the prefill"
        answer = store.messages(app.session.conversation_id)[-1]
        assert answer["role"] == "assistant" and answer["finish_reason"] == "cancelled"


async def test_the_model_picker_opens_on_the_current_model(make_app, store, smollm_path) -> None:  # noqa: ANN001
    """Row 16: not on the first entry of the list."""
    Registry(store).import_file(smollm_path, name="my-student", link=True)
    app = make_app(model="my-student")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        assert options.get_option_at_index(options.highlighted).id == "my-student"


async def test_the_sidebar_collapses_on_a_narrow_terminal(make_app, store) -> None:  # noqa: ANN001 - row 16
    seed(store)
    app = make_app()
    async with app.run_test(size=(60, 15)) as pilot:
        await pilot.pause()
        assert not app.sidebar.display and app.chat.size.width > 50
        await pilot.press("ctrl+b")  # still there when asked for
        assert app.sidebar.display
        await pilot.press("ctrl+b")
        await pilot.resize_terminal(120, 30)
        await pilot.pause()
        assert app.sidebar.display
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        assert not app.sidebar.display


async def test_dialogs_say_what_enter_does(make_app, store) -> None:  # noqa: ANN001 - row 16
    seed(store)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f8")
        await pilot.pause()
        screen = app.screen
        hint = str(screen.query_one(".dialog-hint", Label).render())
        assert "Enter" in hint and "Cancel" in hint and "Y" in hint, hint
        assert screen.focused is screen.query_one("#no", Button)
        await pilot.press("enter")  # the default: nothing deleted
        assert len(store.conversations()) == 2
        await pilot.press("f2")
        await pilot.pause()
        assert "Enter" in str(app.screen.query_one(".dialog-hint", Label).render())


@pytest.mark.timeout(300)
async def test_chatting_with_a_base_model_is_flagged(tui_config, store) -> None:  # noqa: ANN001 - row 7
    """Gemma 3 270M (a base model: no chat template, no instruct marker) gets a warning and a status flag."""
    app = ChatApp(tui_config, store, model="gemma3-270m")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.models.ready or bool(app.models.error), "gemma3-270m to load", 240)
        assert app.models.ready, app.models.error

        def warned() -> bool:
            warnings = [n.message for n in notices(app) if n.severity == "warning"]
            return any("base (completion) model, not tuned for chat" in m and "gemma" in m.lower() for m in warnings)

        # the UI hears of the load after the worker thread has finished it: wait for the warning, not the load
        await wait_until(pilot, warned, "the base-model warning", 30)
        await wait_until(pilot, lambda: "⚠ base model" in app.status.render().plain, "the status flag", 30)
        app.chat_screen.model_switch.load("smollm2-135m")  # a chat model: the flag goes
        await wait_until(pilot, lambda: app.models.name == "smollm2-135m", "SmolLM2 to load", 120)
        await wait_until(pilot, lambda: not app.status.info.base_model, "the status flag to go", 30)
        assert "base model" not in app.status.render().plain


@pytest.mark.timeout(180)
async def test_the_speed_is_not_stale_during_continue_and_stays_on_a_60_column_status_bar(  # row 16
    make_app,
    store,
    tui_config,  # noqa: ANN001
) -> None:
    partial = "Once upon a time, in a kingdom far away, there lived a dragon"
    conversation = store.new_conversation(title="Dragon", model="SmolLM2-135M-Instruct.Q4_1")
    store.add_message(conversation, "user", "Write a long story about a dragon.")
    store.add_message(
        conversation, "assistant", partial, model="SmolLM2-135M-Instruct.Q4_1", finish_reason="cancelled", ttft_s=0.31
    )  # stopped before a speed was measured
    tui_config.generation.max_tokens = 300
    app = make_app()
    async with app.run_test(size=(60, 15)) as pilot:
        await pilot.pause()
        assert "0.0 tok/s" not in app.status.render().plain  # no figure is not a figure of 0
        await pilot.press("f5")
        await wait_until(
            pilot,
            lambda: app.turns_done > 0 or len(streamed(app)) > len(partial) + 30,
            "the continued answer to stream",
        )
        line = app.status.render().plain
        assert app.generating and "generating" in line and "tok/s" not in line and "TTFT" not in line, line
        await pilot.press("escape")
        await wait_idle(pilot, app, turns=1)
        tui_config.generation.max_tokens = 12
        await send(pilot, app, "Name a colour.")
        await wait_idle(pilot, app, turns=2)
        line = app.status.render().plain
        assert f"{app.status.info.tokens_per_s:.1f} tok/s" in line and app.status.info.tokens_per_s > 0, line
        assert len(line) <= 60 and "on-device only" in line
