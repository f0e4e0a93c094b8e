"""What two commands read of the assistant that runs them: its history (``from-history``) and a persona
(``persona``). distill_tools opens neither; the assistant's command line (``assistant.cli.distill``) reads them
and passes them in as an :class:`App`, the persona as plain data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Persona:
    """A persona to distil."""

    name: str
    context: str  # the full prompt the prompted persona runs with: its system prompt, then each context file
    texts: list[str] = field(default_factory=list)  # what training prompts are made of: the context files' texts,
    # else the system prompt
    model: str = ""  # its base model: a registry name or a GGUF file ('' = the configured default)
    fingerprint: str = ""  # sha256 of ``context`` as the assistant computes it ('' = computed here, the same way)
    answers_with_student: bool = False  # it answers with its student already, distilled from this very context
    retrieve: Callable[..., str] | None = None  # a persona over documents: (question, budget=None) → the message the
    # product sends for it (its passages, then the question); the evaluation compares prompted and student with
    # retrieval; with a budget (tokens), passages are always retrieved within it (training's open-book prompts)


@dataclass(frozen=True)
class App:
    """The assistant's data, read when a command asks for it."""

    exchanges: Callable[[], list[Any]]  # the history's escalated exchanges (question, answer, model, their ids)
    persona: Callable[[str], Persona]  # a persona by name (its context checked to fit its model's window)
    adopt: Callable[[str, str, str], None]  # point persona NAME at its student (registered under its name),
    # distilled from the context with fingerprint FINGERPRINT; VERDICT: its evaluation's one line (``verdict``)
