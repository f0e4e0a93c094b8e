"""`assistant distill …`: the commands of ``distill_tools.cli`` (the library's own; torch is imported lazily)."""

from __future__ import annotations

from assistant.cli.main import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``distill run | eval | export | from-history | persona`` to the assistant CLI."""
    from distill_tools.cli import add_commands

    distill = subparsers.add_parser("distill", help="build your own student from a teacher (needs the distill extra)")
    add_commands(distill.add_subparsers(dest="distill_command", required=True))
