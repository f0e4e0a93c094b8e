"""The ``assistant`` command: one parser assembled from the command groups, one way to fail.

Each group (``ask``, ``chat``, ``history``, ``models``, ``persona``, ``distill``, ``serve``, ``docs``, ``completion``)
lives in its own module with a ``register(subparsers)`` function; every subcommand sets a ``handler``.
What the groups share is in ``assistant.cli.common``: a group never imports this module at its top.
:func:`run` is the one error path: ``python -m distill_tools`` goes through it too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from assistant import AssistantError, __version__
from assistant.cli.chat import cmd_chat
from assistant.cli.common import Handler, Parser
from assistant.cli.common import Subparsers as Subparsers  # re-exported: assistant/cli/distill.py imports it here
from assistant.text_safety import sanitize

GROUPS = (
    "assistant.cli.chat",
    "assistant.cli.ask",
    "assistant.cli.history",
    "assistant.cli.models",
    "assistant.cli.persona",
    "assistant.cli.distill",
    "assistant.cli.serve",
    "assistant.cli.docs",
    "assistant.cli.completion",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="assistant", description="A private, on-device AI assistant.")
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    sub = parser.add_subparsers(dest="command")
    for module in GROUPS:
        importlib.import_module(module).register(sub)
    return parser


def run(args: argparse.Namespace, default: Handler | None = None, prog: str = "assistant") -> int:
    """Run the parsed command: its exit code, or 1 with one sanitised line on stderr for a user error.

    Ctrl-C exits 130; a closed pipe (``assistant history list | head``) exits quietly.
    """
    handler: Handler | None = getattr(args, "handler", default)
    if handler is None:
        raise AssertionError("the parser set no handler")
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at exit
        return code
    except AssistantError as exc:
        print(f"{prog}: error: {' '.join(sanitize(str(exc)).split())}", file=sys.stderr)  # always one line
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv), default=cmd_chat)


if __name__ == "__main__":
    sys.exit(main())
