"""Personas in the chat UI (issue 14): the picker (palette and settings) starts a new chat as a persona, and
"Distil this persona" runs ``assistant distill persona`` in its own process with its progress in a bar.

The picker runs the real SmolLM2 model; the distillation runs the real command in a child process: its
failure path always, a cancel mid-run when torch is installed, the whole tiny run with ASSISTANT_SLOW_TESTS=1.
The parser, rate and ETA are checked on the real output of a ``--ci`` run recorded in ``data/``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import pytest
from textual.widgets import OptionList, ProgressBar, Select
from tui_helpers import notices, screen_lines, send, wait_idle, wait_until

from assistant.chat import persona as personas
from assistant.tui.distill_job import Rate, describe, parse
from assistant.tui.screens.dialogs import ConfirmScreen
from assistant.tui.screens.personas import PersonaPickerScreen
from assistant.tui.screens.settings import SettingsScreen

pytestmark = pytest.mark.anyio
RECORDED = Path(__file__).parent / "data" / "distill_persona_ci_stderr.txt"
HAS_TORCH = importlib.util.find_spec("torch") is not None
FACTS = "- The office wifi password is tulip42.\n- The support phone number is 555-0199.\n"


def add_persona(tmp_path: Path, name: str = "pip") -> personas.Persona:
    (tmp_path / "system.md").write_text("You are Pip, the helpdesk assistant of Brightwater Labs. Answer briefly.")
    (tmp_path / "facts.md").write_text(FACTS)
    persona = personas.new(name, str(tmp_path / "system.md"), [str(tmp_path / "facts.md")])
    personas.save(persona)
    return persona


def messages(app) -> list[str]:  # noqa: ANN001
    return [n.message for n in notices(app)]


async def test_the_persona_picker_starts_a_new_chat_as_the_persona(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    pip = add_persona(tmp_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Hello")
        await wait_idle(pilot, app, turns=1)
        plain = app.session.conversation_id
        app.chat_screen.action_pick_persona()  # the palette's "Chat as a persona"
        await pilot.pause()
        assert isinstance(app.screen, PersonaPickerScreen)
        picker = app.screen.query_one(OptionList)
        assert picker.highlighted == 0  # on the current choice: no persona
        picker.highlighted = 1
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.session.persona is not None, "the persona to be taken")
        assert app.session.conversation_id is None and not app.chat.views()  # a new chat
        assert app.status.info.persona == "pip" and app.status.render().plain.startswith(" pip (")
        await send(pilot, app, "What is the wifi password?")
        await wait_idle(pilot, app, turns=2)
        conversation = store.conversation(app.session.conversation_id)
        assert conversation["persona"] == "pip" and conversation["system"] == pip.context_text()
        assert app.session.conversation_id != plain

        await pilot.press("ctrl+s")  # the same choice in the settings: back to no persona
        assert isinstance(app.screen, SettingsScreen)
        select = app.screen.query_one("#persona", Select)
        assert select.value == "pip"
        select.value = "-"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.session.persona is None, "the persona to be dropped")
        assert app.session.conversation_id is None and app.status.info.persona == ""


def test_progress_lines_give_phase_rate_and_eta_on_a_recorded_run() -> None:
    """The real stderr of `assistant distill persona pip --ci --json --progress-json` (library bars included)."""
    lines = RECORDED.read_text(encoding="utf-8").splitlines()
    progress = [p for p in map(parse, lines) if p is not None]
    assert len(progress) >= 8 and len(progress) < len(lines)  # the library bars in between are skipped
    assert progress[0].phase == "loading the base model" and progress[-1].phase == "evaluating"
    rate, texts = Rate(), []
    for p in progress:
        rate.update(p)
        texts.append(describe(p, rate))
    steps = [(p, t) for p, t in zip(progress, texts, strict=True) if p.name == "training" and p.done]
    first, last = steps[0][0], steps[-1][0]
    assert steps[-1][1].startswith(f"{last.phase} · {last.done}/{last.total} · ")
    expected_rate = (last.done - 0) / (last.elapsed_s - next(p for p in progress if p.name == "training").elapsed_s)
    assert f"{expected_rate:.2f}/s" in steps[-1][1] and "ETA 0 s" in steps[-1][1]
    assert "ETA" in steps[0][1] and first.done < first.total
    assert parse("progress: {not json") is None and parse("Loading weights: 100%|███|") is None


async def test_the_bar_shows_a_recorded_run(make_app) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        bar = app.screen.query_one("#distill-bar")
        assert not bar.display and not bar.query(ProgressBar)  # nothing animates while no job runs
        bar.begin("pip")
        await pilot.pause()
        progress = [p for p in map(parse, RECORDED.read_text(encoding="utf-8").splitlines()) if p is not None]
        training = [p for p in progress if p.name == "training"]
        for p in progress[: progress.index(training[2]) + 1]:  # up to the second training step
            bar.show(p)
        await pilot.pause()
        widget = bar.query_one(ProgressBar)
        assert (widget.total, widget.progress) == (training[2].total, training[2].done)
        assert bar.text.startswith(f"{training[2].phase} · 2/4 · ") and "/s · ETA " in bar.text
        assert "ETA" in str(bar.query_one("#distill-text").render())
        bar.end()
        await pilot.pause()
        assert not bar.display and not bar.query(ProgressBar)


async def test_a_distillation_that_fails_says_why_in_one_line(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    add_persona(tmp_path, "smollm2-135m")  # a packaged model's name: the real command refuses it at once
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.chat_screen.distiller.start("smollm2-135m")
        bar = app.screen.query_one("#distill-bar")
        assert bar.display and "smollm2-135m" in str(bar.query_one("#distill-title").render())
        job = app.chat_screen.distiller.job
        await wait_until(pilot, lambda: job.ended.is_set() and not bar.display, "the failed run to end", 60)
        # notify() posts a message: the notice reaches the app's list a moment after the bar has gone
        notice = "Distilling smollm2-135m failed"
        await wait_until(pilot, lambda: any(m.startswith(notice) for m in messages(app)), "the failure notice", 30)
        failed = [m for m in messages(app) if m.startswith(notice)]
        assert failed and "packaged model's name" in failed[0] and "\n" not in failed[0], (messages(app), job.outcome)


@pytest.mark.skipif(not HAS_TORCH, reason="distillation needs torch (the distill extra)")
@pytest.mark.timeout(120)
async def test_a_running_distillation_shows_progress_and_cancels(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    add_persona(tmp_path)
    before = personas.load("pip")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.chat_screen.distiller.args = ["--ci"]
        app.chat_screen.action_distill_persona()  # no persona in use: it asks which one
        await pilot.pause()
        assert isinstance(app.screen, PersonaPickerScreen)
        assert app.screen.query_one(OptionList).highlighted == 0  # pip: the only choice (no "No persona")
        await pilot.press("enter")
        bar = app.screen.query_one("#distill-bar")
        await wait_until(pilot, lambda: "loading the base model" in bar.text, "the first progress line", 60)
        await send(pilot, app, "Hello")  # chatting goes on meanwhile
        await wait_idle(pilot, app, turns=1)
        await pilot.click("#distill-cancel")
        job = app.chat_screen.distiller.job
        cancelled = time.monotonic()
        await wait_until(pilot, lambda: job.ended.is_set() and not bar.display, "the cancelled run to end", 60)
        assert time.monotonic() - cancelled < 45
        await wait_until(pilot, lambda: any("cancelled" in m for m in messages(app)), "the cancel notice", 30)
    assert personas.load("pip") == before  # unchanged until a student is verified


@pytest.mark.skipif(
    os.environ.get("ASSISTANT_SLOW_TESTS") != "1" or not HAS_TORCH,
    reason="a whole (tiny) distillation takes minutes: ASSISTANT_SLOW_TESTS=1 runs it (needs torch)",
)
@pytest.mark.timeout(1800)
async def test_a_finished_distillation_offers_to_switch_to_the_student(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    add_persona(tmp_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.chat_screen.personas.use("pip")
        app.chat_screen.distiller.args = ["--ci"]
        app.chat_screen.action_distill_persona()  # distils the persona in use
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the offer to switch", 1700)
        question = app.screen.question
        assert "not recommended: keeps " in question and "too few to tell" in question, question  # the verdict

        def shown() -> str:  # the screen's words, the dialog's borders and line breaks dropped
            return " ".join(re.sub(r"[│┃║▏▎▍▕]", " ", " ".join(screen_lines(app))).split())

        await wait_until(pilot, lambda: "not recommended: keeps " in shown(), "the verdict on screen", 10)
        assert personas.load("pip").student == ""  # the run left it prompted: the offer decides
        await pilot.press("y")  # Switch anyway (Enter would stay prompted)
        await wait_until(pilot, lambda: app.models.ready and app.models.name == "pip", "the student to load", 120)
        assert app.session.persona.student == "pip" and app.status.info.persona == "pip"
        await send(pilot, app, "Hello")
        await wait_idle(pilot, app, turns=1)
        assert store.conversation(app.session.conversation_id)["system"] == ""  # prompt-free now
