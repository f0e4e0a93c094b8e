"""`assistant distill …`: the commands of ``distill_tools.cli``, given what two of them read of the assistant.

distill_tools opens neither the history nor the personas: ``from-history`` gets the escalated exchanges and
``persona`` the persona to distil (as plain data, once its context is known to fit its model) from the functions
here, through ``distill_tools.app.App``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.chat import persona as personas
from assistant.cli.common import Subparsers, open_store
from assistant.cli.model_names import opened_registry
from assistant.cli.persona import check_window
from assistant.config import load
from assistant.storage.rows import Exchange

if TYPE_CHECKING:
    from distill_tools.app import Persona


def register(subparsers: Subparsers) -> None:
    """Add ``distill run | eval | export | from-history | persona`` to the assistant CLI."""
    # distill_tools loads when the parser is built, not with this module (its command line imports no torch)
    from distill_tools.app import App
    from distill_tools.cli import add_commands

    distill = subparsers.add_parser("distill", help="build your own student from a teacher (needs the distill extra)")
    app = App(exchanges=escalated_exchanges, persona=persona_source, adopt=adopt)
    add_commands(distill.add_subparsers(dest="distill_command", required=True), app)


def escalated_exchanges() -> list[Exchange]:
    """The teacher's answers in the history, each with the question before it."""
    store = open_store()
    try:
        return store.escalated_exchanges()
    finally:
        store.close()


def persona_source(name: str) -> Persona:
    """Persona ``name`` as distill_tools reads it; refused if its context does not fit its base model's window."""
    from distill_tools.app import Persona  # (as in register: distill_tools is never loaded with this module)

    persona = personas.load(name)
    check_window(persona)
    texts = [c.text for c in persona.contexts] + document_passages(persona) or [persona.system]
    current = persona.student == persona.name and persona.state == "distilled"
    retrieve = retriever(persona) if persona.docs else None
    return Persona(persona.name, persona.context_text(), texts, persona.model, persona.fingerprint(), current, retrieve)


def retriever(persona: personas.Persona) -> Callable[..., str]:
    """For a persona over documents: the message the product sends for a question (the passages ``grounding`` adds
    in the evaluation's window, then the question); with ``budget``, the passages retrieval adds within that many
    tokens (the open-book training prompts). The base model loads on the first question, for counting tokens as the
    chat does."""
    from distill_tools.persona import RETRIEVAL_CTX
    from distill_tools.persona import Settings as Recipe

    loaded: list[Any] = []

    def retrieve(question: str, budget: int | None = None) -> str:
        from assistant.chat import grounding
        from assistant.models.engine import Engine

        if not loaded:
            loaded.append(Engine(opened_registry().resolve(persona.model or load().model.default), RETRIEVAL_CTX))
        store = open_store()
        try:
            docs = [Path(d) for d in persona.docs]
            if budget is not None:
                question_only = [{"role": "user", "content": question}]
                return grounding.retrieve(store, docs, question_only, loaded[0], budget).message(question)
            system = [{"role": "system", "content": persona.context_text()}] if persona.context_text() else []
            history = [*system, {"role": "user", "content": question}]
            found = grounding.ground(store, docs, history, loaded[0], Recipe.eval_max_new_tokens)
            return found.message(question)
        finally:
            store.close()

    return retrieve


def document_passages(persona: personas.Persona) -> list[str]:
    """A persona over documents: every passage of them, so that its questions are made passage by passage and the
    teacher answers each seeing the passages it is about (its ``system``), while the student learns closed-book."""
    if not persona.docs:
        return []
    from assistant.chat import grounding  # deliberately lazy: it loads the engine's module, off the parser's path

    store = open_store()
    try:
        return [text for _, text in grounding.passages(store, [Path(d) for d in persona.docs])]
    finally:
        store.close()


def adopt(name: str, fingerprint: str, verdict: str = "") -> None:
    """Point persona ``name`` at its student, registered under its name and distilled from the prompt whose
    fingerprint is ``fingerprint`` (read again: if it was edited during the run, the student is stale at once);
    ``verdict``: its evaluation's one line, kept with it."""
    persona = personas.load(name)
    persona.adopt(name, fingerprint, verdict)
    personas.save(persona)
