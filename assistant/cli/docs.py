"""``assistant docs``: your documents' index (add, list, rm, search), on this machine only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from assistant.cli.common import Subparsers, open_store, text_argument
from assistant.text_safety import json_for_terminal, sanitize

SKIPS_SHOWN = 10


def register(subparsers: Subparsers) -> None:
    docs = subparsers.add_parser("docs", help="index your files and search them (on this machine only)")
    sub = docs.add_subparsers(dest="docs_command", required=True)
    add = sub.add_parser("add", help="index files and folders (again: only what changed)")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(handler=cmd_add)
    listing = sub.add_parser("list", help="the files and folders indexed, with their files and passages")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    rm = sub.add_parser("rm", help="drop files or folders from the index (the files stay)")
    rm.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    rm.set_defaults(handler=cmd_rm)
    search = sub.add_parser("search", help="the passages that best match a question")
    search.add_argument("query", nargs="+", type=text_argument)
    search.add_argument("--limit", type=_positive, default=5, help="how many passages (default 5)")
    search.add_argument("--path", type=Path, action="append", help="only files at or under PATH (repeatable)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=cmd_search)


def cmd_add(args: argparse.Namespace) -> int:
    from assistant.cli.progress import Bar  # deliberately lazy, as the index: `--help` stays fast
    from assistant.documents.index import index_paths

    bar = Bar("indexing")
    try:
        report = index_paths(open_store(), args.paths, progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json_for_terminal(json.dumps(report.as_dict(), ensure_ascii=False)))
        return 0
    print(
        f"{report.added} added, {report.updated} updated, {report.removed} removed, {report.unchanged} unchanged, "
        f"{report.skipped_count} skipped; {report.chunks} passages, "
        f"{report.bytes / 1e6:.2f} MB in {report.seconds:.1f} s"
    )
    for path, reason in report.skipped[:SKIPS_SHOWN]:
        print(f"  skipped {sanitize(path)}: {reason}")
    if report.skipped_count > SKIPS_SHOWN:
        print(f"  … and {report.skipped_count - SKIPS_SHOWN} more skipped (--json lists up to 1,000)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from assistant.storage.documents import roots

    found = roots(open_store())
    if args.json:
        print(json_for_terminal(json.dumps([vars(r) for r in found], ensure_ascii=False)))
    elif not found:
        print("nothing indexed yet: assistant docs add PATH…")
    for root in [] if args.json else found:
        print(f"{sanitize(root.path)}  {root.files} files, {root.chunks} passages, {root.bytes / 1e6:.2f} MB")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from assistant.documents.index import remove_paths

    removed = remove_paths(open_store(), args.paths)
    print(f"{removed} files dropped from the index")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from assistant.documents.search import search

    hits = search(open_store(), " ".join(args.query), limit=args.limit, paths=args.path)
    if args.json:
        print(json_for_terminal(json.dumps([vars(h) for h in hits], ensure_ascii=False)))
        return 0
    for hit in hits:
        print(f"{sanitize(hit.path)}:{hit.start_line}-{hit.end_line}  ({hit.score:.4f})")
        lines = [" ".join(sanitize(line).split()) for line in hit.text.splitlines() if line.strip()]
        for line in lines[:3]:
            print(f"    {line[:150]}")
    if not hits:
        print("no passage matched")
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return number
