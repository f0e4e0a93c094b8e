"""`assistant history …`: list, search, show and export conversations (read-only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from assistant import AssistantError
from assistant.cli.common import Subparsers, open_store, text_argument
from assistant.storage.files import write_user_file
from assistant.text_safety import json_for_terminal, sanitize

if TYPE_CHECKING:
    from assistant.storage.store import Store


def register(subparsers: Subparsers) -> None:
    """Add the `history` subcommand group to the `assistant` parser."""
    history = subparsers.add_parser("history", help="list, search, show, export conversations")
    sub = history.add_subparsers(dest="history_command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=cmd_list)
    search = sub.add_parser("search")
    search.add_argument("query", nargs="+", type=text_argument)
    search.add_argument("--limit", type=int, default=20)
    search.set_defaults(handler=cmd_search)
    show = sub.add_parser("show")
    show.add_argument("id", type=int)
    show.add_argument("--all-branches", action="store_true", help="also the versions not on screen")
    show.set_defaults(handler=cmd_show)
    export = sub.add_parser("export")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["md", "json"], default="md")
    export.add_argument("-o", "--output", help="write to this file (atomically, in an existing folder)")
    export.add_argument("--force", action="store_true", help="replace the output file if it exists")
    export.add_argument("--all-branches", action="store_true", help="also the versions not on screen")
    export.set_defaults(handler=cmd_export)


def cmd_list(args: argparse.Namespace) -> int:
    """One line a conversation on stdout; none yet is a note on stderr (stdout stays empty for scripts)."""
    limit = _limit(args)
    store = open_store(readonly=True)
    conversations = store.conversations(limit=limit)
    if not conversations:
        print('no conversations yet: ask something, e.g. assistant ask "What is a monad?"', file=sys.stderr)
    shown = _model_names(store, {c.model for c in conversations})
    for c in conversations:
        print(sanitize(f"{c.id:>5}  {c.updated[:19]}  {shown.get(c.model) or '-':<16}  {c.title or '(untitled)'}"))
    return 0


def _model_names(store: Store, stored: set[str]) -> dict[str, str]:
    """The registry name of each stored model name (older histories hold the file's stem); as stored if none."""
    from assistant.models.registry import Registry  # deliberately lazy: as open_store

    if not stored:
        return {}
    try:
        return Registry(store).shown_names(stored)
    except AssistantError:  # the catalog unreadable: the names as stored still say something
        return {name: name for name in stored}


def cmd_search(args: argparse.Namespace) -> int:
    limit = _limit(args)
    for m in open_store(readonly=True).search(" ".join(args.query), limit=limit):
        print(sanitize(f"{m.conversation_id:>5}  #{m.id:<6} {m.role:<9} {m.snippet}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(sanitize(_document(args, "md")))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    text = _document(args, args.format)
    if args.output:  # the exact stored text
        write_user_file(Path(args.output), text, replace=args.force)
    else:  # a pipe often ends in a terminal too: JSON escapes what the sanitizer would drop, losslessly
        print(json_for_terminal(text) if args.format == "json" else sanitize(text))
    return 0


def _limit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise AssistantError(f"--limit must be a positive number, got {args.limit}")
    return args.limit


def _document(args: argparse.Namespace, fmt: str) -> str:
    """Conversation ``args.id`` as Markdown or JSON, with every branch's versions under ``--all-branches``."""
    from assistant.chat.branches import with_versions  # deliberately lazy: sqlite-utils stays off `--help`
    from assistant.storage.store import export_conversation

    store = open_store(readonly=True)
    store.conversation(args.id)  # an unknown id is refused here, in one line
    names = _model_names(store, {m.model for m in store.messages(args.id)}) if fmt == "md" else None
    text = export_conversation(store, args.id, fmt, names)  # older answers hold a file's stem: named as now
    return with_versions(text, store, args.id, fmt) if args.all_branches else text
