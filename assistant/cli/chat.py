"""`assistant chat` (and plain `assistant`): the chat UI."""

from __future__ import annotations

import argparse

from assistant import AssistantError
from assistant.cli.main import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add the `chat` command to the `assistant` parser."""
    chat = subparsers.add_parser("chat", help="open the chat UI (the default)")
    chat.add_argument("--model", help="model name or GGUF path")
    chat.add_argument("--persona", help="chat as this persona (see `assistant persona list`)")
    chat.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    try:
        from assistant.tui.app import run
    except ImportError as exc:
        raise AssistantError(f"the chat UI is not available: {exc}") from None
    return run(model=getattr(args, "model", None), persona=persona_of(args))


def persona_of(args: argparse.Namespace):  # noqa: ANN201 - an assistant.chat.persona.Persona or None
    """The persona named by ``--persona``, if any (loaded and checked)."""
    from assistant.chat.persona import load

    return load(args.persona) if getattr(args, "persona", None) else None
