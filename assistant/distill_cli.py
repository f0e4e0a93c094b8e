"""The ``assistant distill`` command group; the work lives in ``distill_tools`` (torch is imported lazily)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distill run | eval | export | from-history`` to the assistant CLI."""
    from distill_tools.cli import add_commands

    distill = subparsers.add_parser("distill", help="build your own student from a teacher (needs the distill extra)")
    add_commands(distill.add_subparsers(dest="distill_command", required=True))
