"""The attach dialog and a distillation in the background (issue 26, row 28): a file name with spaces attaches,
Tab takes the dialog's suggestion, the distillation's bar fits 80 columns, the palette cancels it, and Ctrl+Q asks
before stopping it. Real SmolLM2, real SQLite; no distillation process runs (the job's process is not started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Input
from tui_helpers import screen_lines, send, wait_idle, wait_until

from assistant.tui.distill_job import DistillJob, parse
from assistant.tui.screens.dialogs import ConfirmScreen, TextInputScreen

pytestmark = pytest.mark.anyio
RECORDED = Path(__file__).parent / "data" / "distill_persona_ci_stderr.txt"


def hint(app) -> str:  # noqa: ANN001
    widget = app.screen.query_one("#attach-hint")
    return "" if widget.has_class("-hidden") else str(widget.render())


async def test_a_file_with_spaces_attaches_from_the_dialog_and_tab_completes(make_app, store, tmp_path) -> None:  # noqa: ANN001
    """Ctrl+L with "my notes.txt" put ``@…/my notes.txt`` in the box, which named no file: nothing was attached,
    silently. The dialog writes the path in quotes. Its title says Tab completes, but Tab moved the focus (only
    Right took the suggestion): Tab takes it."""
    notes = tmp_path / "my notes.txt"
    notes.write_text("The launch moved to Thursday.\n", encoding="utf-8")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+l")
        await wait_until(pilot, lambda: isinstance(app.screen, TextInputScreen), "the attach dialog", 10)
        field = app.screen.query_one(Input)
        await pilot.press(*f"{tmp_path}/my")
        await wait_until(pilot, lambda: field._suggestion == str(notes), "the suggestion", 10)  # (no public reader)
        await pilot.press("tab")
        assert field.value == str(notes) and field.has_focus
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.prompt.text == f'@"{notes}" ', "the quoted @path in the box", 10)
        await wait_until(pilot, lambda: "📎 my notes.txt" in hint(app) and "tokens" in hint(app), "the count", 30)
        await send(pilot, app, "When is the launch?")
        await wait_idle(pilot, app, turns=1)
        question = store.messages(app.session.conversation_id)[0]
        assert [r.name for r in store.attachments(question["id"])] == ["my notes.txt"]
        assert question["content"].endswith("my notes.txt When is the launch?")


async def test_the_distillation_bar_fits_80_columns(make_app) -> None:  # noqa: ANN001
    """Below ~140 columns the bar showed only "teacher pa…": the phase, its progress, rate and ETA fit 80."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        bar = app.screen.query_one("#distill-bar")
        bar.begin("pip")
        progress = [p for p in map(parse, RECORDED.read_text(encoding="utf-8").splitlines()) if p is not None]
        for p in progress:
            bar.show(p)
            await pilot.pause()
            line = screen_lines(app, bar)[0]
            assert "pip" in line and p.name.split(" (")[0] in line and "Cancel" in line and "…" not in line, line
            if p.name == "training" and p.done > 1:
                assert f"{p.done}/{p.total}" in line and "/s · ETA " in line, line


@pytest.mark.timeout(120)
async def test_the_palette_cancels_a_distillation_and_quitting_asks_first(make_app, tmp_path) -> None:  # noqa: ANN001
    """Ctrl+Q stopped a distillation without a word, and the palette found nothing for "cancel". Ctrl+Q asks first
    (saying it resumes); the palette's "Cancel distillation" stops it as the bar's Cancel does."""
    cancelled: list[str] = []
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        with pytest.MonkeyPatch.context() as patch:  # a job that runs until cancelled, without a process
            patch.setattr(DistillJob, "start", lambda job: None)
            patch.setattr(DistillJob, "running", property(lambda job: job.name not in cancelled))
            patch.setattr(DistillJob, "cancel", lambda job: cancelled.append(job.name))
            app.chat_screen.distiller.start("pip")
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question", 10)
            question = str(app.screen.query_one(".dialog-text").render())
            assert "pip" in question and "resumes" in question
            await pilot.press("escape")  # keep it running
            await wait_until(pilot, lambda: app.screen is app.chat_screen, "the question to close", 10)
            assert app.is_running and not cancelled
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette", 10)
            await pilot.press(*"cancel dis")
            await wait_until(pilot, lambda: "Cancel distillation" in "".join(screen_lines(app)), "the command", 10)
            await pilot.press("enter")
            await wait_until(pilot, lambda: cancelled == ["pip"], "the cancel", 10)
            assert app.screen.query_one("#distill-bar").text == "cancelling…"
            await pilot.press("ctrl+q")  # nothing runs now: quits at once
            await wait_until(pilot, lambda: not app.is_running, "the app to quit", 10)
