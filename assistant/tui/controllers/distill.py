"""Distilling a persona in the background: ``distill persona NAME`` runs in its own process (a
:class:`DistillJob`); its progress shows in the bar above the status and the chat goes on meanwhile."""

from __future__ import annotations

from textual.message import Message
from textual.screen import Screen

from assistant.chat import persona as personas
from assistant.chat.session import Session
from assistant.config import Config, models_dir
from assistant.tui.controllers.base import Controller
from assistant.tui.controllers.personas import Personas
from assistant.tui.distill_job import DistillJob, Outcome, Progress
from assistant.tui.screens.dialogs import ConfirmScreen
from assistant.tui.screens.personas import PersonaPickerScreen
from assistant.tui.widgets.distill_bar import DistillBar


class DistillProgress(Message):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class DistillEnded(Message):
    def __init__(self, name: str, outcome: Outcome) -> None:
        super().__init__()
        self.name, self.outcome = name, outcome


class Distiller(Controller):
    """Starts, cancels and reports one persona distillation at a time."""

    def __init__(self, screen: Screen[None], session: Session, config: Config, *, personas: Personas) -> None:
        super().__init__(screen, session, config)
        self.personas = personas
        self.job: DistillJob | None = None  # the run under way (or the last one)
        self.args: list[str] = []  # more arguments for `distill persona` (the tests' tiny recipe: --ci)
        # the run leaves the persona prompted: the offer at its end switches it, after showing the verdict

    @property
    def bar(self) -> DistillBar:
        return self.screen.query_one(DistillBar)

    def ask(self) -> None:
        """Distil the persona in use, or ask which one (one run at a time)."""
        if self.job is not None and self.job.running:
            self.screen.notify(
                f"Already distilling {self.job.name}: Cancel it in the bar first", severity="warning", markup=False
            )
        elif self.session.persona is not None:
            self.start(self.session.persona.name)
        else:
            picker = PersonaPickerScreen(
                personas.all_personas(), "", title="Distil which persona?", offer_none=False, enter="distil it"
            )
            self.screen.app.push_screen(picker, lambda name: self.start(name) if name else None)

    def start(self, name: str) -> None:
        """Run `assistant distill persona NAME` in its own process; its progress shows in the bar."""
        job = DistillJob(
            name,
            lambda p: self.screen.post_message(DistillProgress(p)),
            lambda outcome: self.screen.post_message(DistillEnded(name, outcome)),
            ["--keep-prompted", *self.args],
        )
        try:
            job.start()
        except OSError as exc:
            self.screen.notify(f"cannot start the distillation: {exc}", severity="error", markup=False)
            return
        self.job = job
        self.personas.model_switch.expect(models_dir() / f"{name}.gguf")  # the offer to switch says it is there
        self.bar.begin(name)
        self.screen.notify(
            f"Distilling {name} in the background: keep chatting; Cancel in the bar stops it (it resumes "
            "when started again)",
            markup=False,
        )

    @property
    def running(self) -> str:
        """The persona being distilled ('' when none is)."""
        return self.job.name if self.job is not None and self.job.running else ""

    def cancel(self) -> None:
        """Stop the run as Ctrl-C would (it resumes where it stopped when started again)."""
        if self.running and self.job is not None:
            self.job.cancel()
            self.bar.show_text("cancelling…")
        else:
            self.screen.notify("No distillation is running", severity="warning")

    def quit(self) -> None:
        """The app is quitting: stop the run (as Ctrl-C: it resumes when started again)."""
        if self.job is not None:
            self.job.cancel()

    def ended(self, event: DistillEnded) -> None:
        """Say how the run ended; offer to switch to a student that is ready."""
        self.bar.end()
        outcome, name = event.outcome, event.name
        if outcome.cancelled:
            self.screen.notify(
                f"Distillation of {name} cancelled; start it again to resume where it stopped", markup=False
            )
        elif outcome.returncode != 0 or outcome.summary is None:
            self.screen.notify(
                f"Distilling {name} failed: {outcome.error or f'exit code {outcome.returncode}'}",
                title="Distillation failed",
                severity="error",
                markup=False,
                timeout=20,
            )
        else:
            self.offer(name, outcome.summary)

    def offer(self, name: str, summary: dict) -> None:
        """Show the run's verdict and offer to switch to the student; when it is not recommended, the default is to
        stay prompted. The run left the persona prompted (``--keep-prompted``): Switch points it at its student."""
        verdict = summary.get("verdict") or {}
        line = str(verdict.get("line", ""))
        recommended = bool(verdict.get("recommended", not line))  # a run made before verdicts: as it was offered
        shown = line if recommended else line.removeprefix("not recommended: ")  # the question above says so
        # and whether it fits its own training questions (under-trained, or not carrying over to new wordings)
        said = "\n".join(x for x in (shown, str(verdict.get("fit", ""))) if x)
        if recommended:
            question = f"{name} is distilled: its student answers without the prompt.\n{said}\nSwitch to it now?"
        else:
            question = (
                f"{name} is distilled, but its student is not recommended:\n{said}\n"
                "Stay with the prompted persona (the default), or switch to the student anyway?"
            )

        def switch(yes: bool | None) -> None:
            if yes:
                self.adopt(name, summary, line)
                self.screen.call_later(self.personas.use, name)
            else:
                self.screen.notify(
                    f"{name} stays prompted; its student is the model {name!r} (`assistant distill persona {name}` "
                    "switches the persona to it)",
                    markup=False,
                )

        confirm, cancel = ("Switch", "Not now") if recommended else ("Switch anyway", "Stay prompted")
        self.screen.app.push_screen(
            ConfirmScreen(question, confirm=confirm, cancel=cancel, default_yes=recommended), switch
        )

    def adopt(self, name: str, summary: dict, verdict: str) -> None:
        """Point persona ``name`` at its student (the run's fingerprint: stale at once if edited meanwhile)."""
        try:
            persona = personas.load(name)
            persona.adopt(name, str(summary.get("fingerprint") or persona.fingerprint()), verdict)
            personas.save(persona)
        except personas.PersonaError as exc:
            self.screen.notify(str(exc), severity="error", markup=False)
