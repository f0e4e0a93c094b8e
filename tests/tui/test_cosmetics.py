"""Small things a new user saw (issue 26, row 31): where notices appear, the help's key list, the model's name
in the picker, long code lines, the footer at 60 columns and the context figure after a model switch.
Real SmolLM2, real SQLite; no answer is generated."""

from __future__ import annotations

import re
import tomllib

import pytest
from textual.widgets import OptionList
from textual.widgets._toast import Toast
from textual.widgets.markdown import MarkdownFence
from tui_helpers import notices, screen_lines, seed, wait_until

from assistant.tui.keys import key_rows
from assistant.tui.screens.help import TIPS, help_markdown
from assistant.tui.screens.models import ModelPickerScreen

pytestmark = pytest.mark.anyio


async def test_notices_leave_the_message_box_and_the_status_bar_visible(make_app) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        app.notify("A notice\nover two lines")
        await wait_until(pilot, lambda: bool(app.screen.query(Toast)), "the toast", 10)
        await pilot.pause()
        toast = app.screen.query_one(Toast).region
        for widget in (app.prompt, app.status):
            assert not toast.overlaps(widget.region), (toast, widget)


def test_the_help_names_up_for_editing_and_its_example_clashes_with_no_key() -> None:
    """Help listed edit-last as Ctrl+G only (the README says Up), and its example rebound Escape *and Ctrl+G* to
    stop; actions without a key showed "Ctrl+P" as their key."""
    rows = key_rows({})
    edit = next(description for _key, description, name in rows if name == "edit_last")
    assert "Up" in edit
    example = tomllib.loads(re.search(r"```toml\n(.*?)```", TIPS, re.S).group(1))["ui"]["keys"]
    taken = {key: name for key_list, _d, name in rows for key in key_list.split(",") if key}
    for name, keys in example.items():
        assert all(taken.get(key, name) == name for key in keys.split(",")), (name, keys)
    text = help_markdown(rows)
    assert "| Ctrl+P | Chat as a persona" not in text and "| palette only | Chat as a persona" in text


async def test_the_picker_names_the_model_serving_as_the_status_bar_does(make_app) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPickerScreen), "the picker", 10)
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        marked = [i for i in range(options.option_count) if "●" in str(options.get_option_at_index(i).prompt)]
        assert marked == [options.highlighted]
        assert f"serving: {app.status.info.model}" in "".join(screen_lines(app))


async def test_a_code_line_wider_than_the_chat_shows_that_it_scrolls(make_app, store) -> None:  # noqa: ANN001
    conversation = store.new_conversation(title="Long")
    store.add_message(conversation, "user", "Show a long line.")
    store.add_message(conversation, "assistant", f"```python\nprint('{'x' * 120}')\n```", finish_reason="stop")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        fence = app.chat.query_one(MarkdownFence)
        assert fence.max_scroll_x > 0 and fence.scrollbar_size_horizontal > 0 and fence.show_horizontal_scrollbar


async def test_the_footer_fits_60_columns(make_app, store) -> None:  # noqa: ANN001
    seed(store)
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        footer = screen_lines(app)[-1]
        assert "f1 Help" in footer and "palette" in footer, footer


@pytest.mark.timeout(120)
async def test_the_context_figure_stays_after_a_model_switch(make_app, store) -> None:  # noqa: ANN001
    """After switching models mid-chat the status bar said ``ctx 0/…``: the conversation has not shrunk. The
    figure stays (the next answer counts it with the new model); the speeds, the other model's, go."""
    seed(store)  # the open chat's last answer: 30 + 14 tokens
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.status.info.context_used == 44
        app.chat_screen.model_switch.load("smollm2-135m")
        await wait_until(pilot, lambda: any("Now answering" in n.message for n in notices(app)), "the switch", 90)
        assert app.status.info.context_used == 44 and app.status.info.tokens_per_s == 0.0
        assert "ctx 44/" in app.status.render().plain
