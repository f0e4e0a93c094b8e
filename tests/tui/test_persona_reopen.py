"""Reopening a persona chat reloads the persona (issue 26, rows 17 and 29): its model (its student, or its base
model once the student is stale), its system prompt, its name in the status bar and the pickers; a plain chat
opened after it goes back to the model that served before. The status bar names models as the registry does.

The app loads its models itself here (no shared engine: these tests swap models). The "base model" and the
"student" are the packaged SmolLM2 registered (linked) under other names, so a swap really loads a file, and no
distillation runs. Real SQLite; answers only where a test says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_personas import FACTS, add_persona
from textual.widgets import Label
from tui_helpers import notices, seed, send, wait_idle, wait_until

from assistant.chat import persona as personas
from assistant.config import Config
from assistant.models.registry import Registry
from assistant.storage.store import Store
from assistant.tui.app import ChatApp
from assistant.tui.screens.models import ModelPickerScreen
from assistant.tui.screens.personas import PersonaPickerScreen

pytestmark = pytest.mark.anyio
NAME = "smollm2-135m"


def stale_pip(tmp_path: Path, store: Store, smollm_path: Path) -> personas.Persona:
    """Persona pip on base model ``pip-base``, distilled into ``pip-student``, then edited: stale."""
    registry = Registry(store)
    for name in ("pip-base", "pip-student"):
        registry.import_file(str(smollm_path), name=name, link=True)
    pip = add_persona(tmp_path)
    pip.model = "pip-base"
    pip.adopt("pip-student", "the fingerprint of a prompt pip no longer has")
    personas.save(pip)
    assert pip.state == "stale" and pip.runtime_model() == "pip-base"
    return pip


def picker_title(app: ChatApp) -> str:
    return str(app.screen.query_one(Label).render())


async def test_a_reopened_stale_persona_chat_reloads_the_persona(
    tui_config: Config, store: Store, tmp_path: Path, smollm_path: Path
) -> None:
    """A chat its student started (no system prompt stored: the student had learnt it) is reopened after pip went
    stale. It used to go on with the model serving and without pip's prompt, the pickers saying "current: none".
    Now pip is read again: its base model loads, the chat's system prompt is pip's whole prompt, the status bar and
    both pickers name pip and pip-base; a plain chat opened next goes back to the model that served before."""
    pip = stale_pip(tmp_path, store, smollm_path)
    plain, _ = seed(store)
    chat = store.new_conversation(title="Wifi", model="pip-student", system="", persona="pip")
    store.add_message(chat, "user", "What is the wifi password?")
    store.add_message(chat, "assistant", "tulip42", model="pip-student", finish_reason="stop")
    app = ChatApp(tui_config, store)  # opens the latest chat: pip's
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.models.ready and app.models.name == "pip-base", "pip's base model")
        await wait_until(pilot, lambda: app.status.info.model == "pip-base", "the status bar to name pip-base")
        assert app.session.conversation_id == chat and app.session.persona is not None
        assert app.status.info.persona == "pip" and app.status.render().plain.startswith(" pip (pip-base)")
        assert app.session.system_prompt == pip.context_text() and FACTS.strip() in app.session.system_prompt
        app.chat_screen.action_pick_persona()
        await pilot.pause()
        assert isinstance(app.screen, PersonaPickerScreen) and "current: pip" in picker_title(app)
        await pilot.press("escape")
        app.chat_screen.model_switch.pick()
        await pilot.pause()
        assert isinstance(app.screen, ModelPickerScreen) and "serving: pip-base" in picker_title(app)
        await pilot.press("escape")

        await app.open_conversation(plain)
        await wait_until(pilot, lambda: app.models.name == NAME, "the model that served before pip's")
        await wait_until(pilot, lambda: app.status.info.model == NAME, "the status bar to name it")
        assert app.session.persona is None and app.status.info.persona == ""
        assert app.session.system_prompt == store.conversation(plain).system

        await app.open_conversation(chat)  # and back: one answer, as pip, with pip's prompt and the stale note
        await wait_until(pilot, lambda: app.models.name == "pip-base", "pip's base model again")
        await send(pilot, app, "Hi")
        await wait_idle(pilot, app, turns=1)
        answer = store.messages(chat)[-1]
        assert answer.role == "assistant" and answer.model == "pip-base" and answer.content
        assert any("is stale" in str(n.message) for n in notices(app)), [n.message for n in notices(app)]


async def test_a_reopened_chat_whose_persona_is_gone_says_so(
    tui_config: Config, store: Store, tmp_path: Path, engine
) -> None:  # noqa: ANN001
    """A persona removed since keeps its chats readable: the chat opens with its stored prompt, and one notice says
    the persona cannot be read, instead of failing or silently answering as someone else."""
    add_persona(tmp_path)
    chat = store.new_conversation(title="Wifi", model=NAME, system="You are Pip.", persona="pip")
    store.add_message(chat, "user", "What is the wifi password?")
    personas.remove("pip")
    app = ChatApp(tui_config, store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.session.conversation_id == chat and app.session.persona is None
        assert app.session.system_prompt == "You are Pip."
        assert any("persona 'pip' cannot be read" in str(n.message) for n in notices(app))


async def test_the_status_bar_names_a_model_loaded_by_its_file_stem_as_the_registry_does(
    tui_config: Config, store: Store
) -> None:
    """`assistant chat --model SmolLM2-135M-Instruct.Q4_1` (the name older versions showed) loads the packaged
    model; the status bar and the model picker call it smollm2-135m, the name `--model` and `models list` use."""
    app = ChatApp(tui_config, store, model="SmolLM2-135M-Instruct.Q4_1", open_latest=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.models.ready, "the model to load")
        await wait_until(pilot, lambda: app.status.info.model == NAME, "the status bar to name it")
        assert app.status.render().plain.startswith(f" {NAME}") and "Q4_1" not in app.status.render().plain
        app.chat_screen.model_switch.pick()
        await pilot.pause()
        assert f"serving: {NAME}" in picker_title(app)


def test_stale_pip_fixture_is_a_real_persona_file(tmp_path: Path, store: Store, smollm_path: Path) -> None:
    """The persona file the UI tests read is one `persona show` reads too (not a shape only these tests know)."""
    stale_pip(tmp_path, store, smollm_path)
    data = json.loads((personas.folder() / "pip.json").read_text())
    assert data["student"] == "pip-student" and personas.load("pip").state == "stale"
