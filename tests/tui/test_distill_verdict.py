"""The verdict before the switch (issue 27 item 1): when a distillation ends, the offer to switch shows the student's
one-line verdict; a student that is not recommended is not switched to by Enter (the default is to stay, and the
dialog says why); Switch points the persona at its student with the verdict kept, and the persona picker shows it
(or "stale"). Real SmolLM2 (registered as the student), real SQLite; no distillation process runs: the run's
summary (its verdict from ``distill_tools.verdict.judge``) is handed to the screen as the job would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_personas import add_persona
from textual.widgets import Label
from tui_helpers import notices, screen_lines, wait_until

from assistant.chat import persona as personas
from assistant.config import database_path
from assistant.models.registry import Registry
from assistant.storage.store import Store
from assistant.tui.controllers.distill import DistillEnded
from assistant.tui.distill_job import DistillJob, Outcome
from assistant.tui.screens.dialogs import ConfirmScreen
from assistant.tui.screens.personas import PersonaPickerScreen, persona_detail
from distill_tools.verdict import fit_line, judge, ratio

pytestmark = pytest.mark.anyio


def summary(kept: int, fingerprint: str) -> dict:
    """A run's summary as `distill persona --json` gives it: its verdict on 20 questions and 282 general tasks."""
    prompted, student = [True] * 20, [True] * kept + [False] * (20 - kept)
    general = [True] * 130 + [False] * 152
    verdict = judge(ratio(student, prompted), ratio(general, general), 0, 0, 20, 20, 282)
    verdict["fit"] = fit_line(kept + 4, 24)  # as `persona_eval` adds it: its own training questions, no context
    return {"persona": "pip", "fingerprint": fingerprint, "verdict": verdict}


async def offered(pilot, app, outcome: Outcome) -> str:  # noqa: ANN001
    """Hand the run's end to the screen; the dialog's text once it is on screen."""
    distiller = app.chat_screen.distiller
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DistillJob, "start", lambda job: None)  # no process: its end is handed over below
        distiller.start("pip")
    assert distiller.job is not None and "--keep-prompted" in distiller.job.args  # the offer decides the switch
    distiller.ended(DistillEnded("pip", outcome))
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.query(".dialog-hint"), "offer")
    await pilot.pause()
    return " ".join(re.sub(r"[│┃║▏▎▍▕]", " ", " ".join(screen_lines(app))).split())  # borders and line breaks dropped


def hint(app) -> str:  # noqa: ANN001
    return str(app.screen.query_one(".dialog-hint", Label).render())


def register_student(smollm_path: Path) -> None:
    Registry(Store(database_path())).import_file(str(smollm_path), name="pip", link=True)


@pytest.mark.parametrize("size", [(120, 36), (60, 40)])
async def test_a_student_not_recommended_is_not_switched_to_by_enter(
    make_app, tmp_path: Path, smollm_path, size: tuple[int, int]
) -> None:  # noqa: ANN001
    pip = add_persona(tmp_path)
    register_student(smollm_path)
    run = summary(8, pip.fingerprint())
    assert not run["verdict"]["recommended"]
    app = make_app()
    async with app.run_test(size=size) as pilot:
        text = await offered(pilot, app, Outcome(0, run, "", False))
        assert "is not recommended: keeps 40 % [" in text and "persona lower bound" in text  # said once
        assert "its own training questions, no context: student 12/24 (it has not learnt its material yet" in text
        assert "Enter: Stay prompted" in hint(app) and "Switch anyway" in hint(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("stays prompted" in n.message for n in notices(app)), "the notice", 10)
        assert app.session.persona is None
        assert personas.load("pip").student == "" and personas.load("pip").state == "prompted"


async def test_a_recommended_student_is_switched_to_with_its_verdict_kept(
    make_app, tmp_path: Path, smollm_path
) -> None:  # noqa: ANN001
    pip = add_persona(tmp_path)
    register_student(smollm_path)
    run = summary(20, pip.fingerprint())
    line = run["verdict"]["line"]
    assert run["verdict"]["recommended"] and line.endswith(": recommended")
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        text = await offered(pilot, app, Outcome(0, run, "", False))
        assert "keeps 100 % [100–100] of the prompted persona" in text
        assert "student 24/24 (it has learnt its material;" in text
        assert "Enter: Switch" in hint(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.session.persona is not None, "the switch to pip", 30)
        stored = personas.load("pip")
        assert stored.state == "distilled" and stored.student == "pip" and stored.student_verdict == line
        app.chat_screen.action_pick_persona()
        await wait_until(pilot, lambda: isinstance(app.screen, PersonaPickerScreen), "the persona picker", 10)
        await pilot.pause()
        assert "keeps 100 % [100–100] of the prompted persona" in "\n".join(screen_lines(app))


def test_the_persona_detail_says_distilled_with_its_verdict_or_stale(tmp_path: Path) -> None:
    pip = add_persona(tmp_path)
    assert persona_detail(pip).startswith("prompted: ")
    pip.adopt("pip", pip.fingerprint(), "keeps 95 % [85–104] of the prompted persona …: recommended")
    assert persona_detail(pip) == (
        "distilled: answers with its own student 'pip', no prompt\n"
        "keeps 95 % [85–104] of the prompted persona …: recommended"
    )
    pip.system += " Be cheerful."
    detail = persona_detail(pip)
    assert detail.startswith("stale: its prompt changed since 'pip' was distilled; answers prompted (")
