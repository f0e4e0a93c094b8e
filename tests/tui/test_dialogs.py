"""List dialogs and the settings (issue 26, row 30): the first Enter picks, each says what Enter does, the
distil picker offers only personas, the offer to switch to a student takes Enter as yes, and search results open
from the keyboard. Real SmolLM2, real SQLite; no distillation runs (its end is handed to the screen)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_personas import add_persona
from textual.widgets import Input, Label, OptionList
from tui_helpers import notices, seed, wait_until

from assistant.config import models_dir
from assistant.tui.controllers.distill import DistillEnded
from assistant.tui.distill_job import DistillJob, Outcome
from assistant.tui.screens.dialogs import ConfirmScreen
from assistant.tui.screens.models import ModelPickerScreen
from assistant.tui.screens.personas import NO_PERSONA, PersonaPickerScreen
from assistant.tui.screens.settings import SettingsScreen

pytestmark = pytest.mark.anyio


def hint(app) -> str:  # noqa: ANN001
    return str(app.screen.query_one(".dialog-hint", Label).render())


async def opened(pilot, app, kind: type) -> None:  # noqa: ANN001
    """Wait until a dialog of ``kind`` is on screen, composed."""
    await wait_until(
        pilot, lambda: isinstance(app.screen, kind) and app.screen.query(".dialog-hint"), kind.__name__, 10
    )


async def test_the_model_picker_takes_the_first_enter_and_says_what_it_does(make_app, smollm_path) -> None:  # noqa: ANN001
    """A model loaded by its path matched no entry: the list opened with nothing highlighted and Enter did nothing
    until an arrow was pressed. It opens on the first entry, and its hint says what Enter does."""
    app = make_app(model=str(smollm_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+o")
        await opened(pilot, app, ModelPickerScreen)
        assert app.screen.query_one(OptionList).highlighted == 0
        assert "Enter: switch" in hint(app) and "Esc: Cancel" in hint(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen), "the pick", 10)
        await wait_until(pilot, lambda: any("Now answering" in n.message for n in notices(app)), "the switch", 60)


async def test_the_persona_pickers_say_what_enter_does(make_app, tmp_path: Path) -> None:  # noqa: ANN001
    """The distil picker offered "No persona" (there is nothing to distil there): it lists the personas only."""
    add_persona(tmp_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.chat_screen.action_pick_persona()
        await opened(pilot, app, PersonaPickerScreen)
        assert "Enter: start a new chat as it" in hint(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.chat_screen, "the picker to close", 10)
        app.chat_screen.action_distill_persona()  # no persona in use: it asks which one
        await opened(pilot, app, PersonaPickerScreen)
        options = app.screen.query_one(OptionList)
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == ["pip"]
        assert NO_PERSONA not in str(app.screen.query_one(Label).render()) and "Enter: distil it" in hint(app)


async def test_settings_say_what_enter_does_and_enter_in_a_field_saves(make_app, tui_config) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+s")
        await opened(pilot, app, SettingsScreen)
        assert "Enter" in hint(app) and "Save" in hint(app) and "Esc: Cancel" in hint(app)
        field = app.screen.query_one("#max-tokens", Input)
        field.focus()
        field.value = "33"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is app.chat_screen, "the settings to close", 10)
        assert tui_config.generation.max_tokens == 33


async def test_the_offer_to_switch_to_a_student_takes_enter_as_yes_without_a_second_notice(  # noqa: ANN001
    make_app, tmp_path: Path
) -> None:
    """The offer made Enter mean Cancel (Enter should take the choice the user ran the distillation for; nothing
    is lost either way) and came with a "New model file … press Ctrl+O" toast for the same student."""
    add_persona(tmp_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        distiller = app.chat_screen.distiller
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(DistillJob, "start", lambda job: None)  # no process: its end is handed over below
            distiller.start("pip")
        models_dir().mkdir(parents=True, exist_ok=True)
        (models_dir() / "pip.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # the student's file, as the run leaves it
        app.chat_screen.model_switch.poll()
        app.chat_screen.model_switch.poll()  # its size is stable: a new file would be announced now
        distiller.ended(DistillEnded("pip", Outcome(0, {"student": "pip"}, "", False)))
        await opened(pilot, app, ConfirmScreen)
        assert "Enter: Switch" in hint(app) and "Esc: Not now" in hint(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.session.persona is not None, "the switch to pip", 10)
        assert not [n.message for n in notices(app) if "New model file" in n.message]


async def test_a_search_result_opens_with_down_and_enter(make_app, store) -> None:  # noqa: ANN001
    """Down in the search box did nothing (only Tab reached the results)."""
    first, second = seed(store)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.session.conversation_id == second
        await pilot.press("ctrl+f", *"reverse", "down", "enter")
        await wait_until(pilot, lambda: app.session.conversation_id == first, "the result to open", 10)
