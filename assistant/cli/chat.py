"""`assistant chat` (and plain `assistant`): the chat UI."""

from __future__ import annotations

import argparse

from assistant import AssistantError
from assistant.cli.common import Subparsers, persona_named


def register(subparsers: Subparsers) -> None:
    """Add the `chat` command to the `assistant` parser."""
    chat = subparsers.add_parser("chat", help="open the chat UI (the default)")
    chat.add_argument("--model", help="model name or GGUF path")
    chat.add_argument("--persona", help="chat as this persona (see `assistant persona list`)")
    chat.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    """Open the chat UI; plain `assistant` comes here too, with none of the options set."""
    try:
        from assistant.tui.app import run  # deliberately lazy: textual loads only for the chat UI
    except ImportError as exc:
        raise AssistantError(f"the chat UI is not available: {exc}") from None
    model = getattr(args, "model", None)
    if model:  # a registered model's file stem (as older histories name it) works as its registry name
        from assistant.cli.model_names import model_key, opened_registry

        model = model_key(opened_registry(readonly=True), model)
    return run(model=model, persona=persona_named(getattr(args, "persona", None)))
