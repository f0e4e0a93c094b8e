"""`assistant models …`: list, check, import, pull, use and rm models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from assistant import AssistantError
from assistant.chat import persona as personas
from assistant.cli.common import Subparsers, open_store
from assistant.config import load
from assistant.text_safety import sanitize

if TYPE_CHECKING:
    from assistant.models.registry import Registry


def register(subparsers: Subparsers) -> None:
    """Add the `models` subcommand group to the `assistant` parser."""
    models = subparsers.add_parser("models", help="list, check, import, pull, use and remove models")
    sub = models.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="packaged and registered models, with fit against free memory")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=cmd_list)
    check = sub.add_parser("check", help="validate a GGUF file before loading it")
    check.add_argument("path")
    check.add_argument("--json", action="store_true", help="print a JSON object")
    check.set_defaults(handler=cmd_check)
    imp = sub.add_parser("import", help="validate a GGUF file and copy (or link) it into the models folder")
    imp.add_argument("path")
    imp.add_argument("--name", help="the model's name (default: from the file name)")
    imp.add_argument("--link", action="store_true", help="symlink instead of copying")
    imp.set_defaults(handler=cmd_import)
    pull = sub.add_parser("pull", help="download REPO FILE from the Hugging Face Hub, or a catalog model by name")
    pull.add_argument("target", help="hub repo (owner/name) or a name from `assistant models catalog`")
    pull.add_argument("file", nargs="?", help="the .gguf file in the repo")
    pull.add_argument("--name", help="the model's name (default: from the file name)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.set_defaults(handler=cmd_pull)
    scan = sub.add_parser("scan", help="find GGUFs from Ollama, LM Studio, the Hugging Face cache or PATH; link them")
    for source in ("ollama", "lmstudio", "hf-cache"):
        scan.add_argument(f"--{source}", action="store_true", help=f"scan {source}'s models folder")
    scan.add_argument("paths", nargs="*", metavar="PATH", help="a folder (its layout is detected) or a .gguf file")
    scan.add_argument("--dry-run", action="store_true", help="validate and list, register nothing")
    scan.add_argument("--json", action="store_true", help="print a JSON object")
    scan.set_defaults(handler=cmd_scan)
    catalog = sub.add_parser("catalog", help="recommended students and teachers (the catalog shipped with assistant)")
    catalog.set_defaults(handler=cmd_catalog)
    use = sub.add_parser("use", help="make a model the default")
    use.add_argument("name")
    use.set_defaults(handler=cmd_use)
    rm = sub.add_parser("rm", help="remove a model: its entry and its file in the models folder")
    rm.add_argument("name")
    rm.set_defaults(handler=cmd_rm)


def _registry(readonly: bool = False) -> Registry:
    from assistant.models.registry import Registry  # deliberately lazy: it loads the store; off `--help`

    return Registry(open_store(readonly=readonly))


def cmd_import(args: argparse.Namespace) -> int:
    from assistant.models.registry import name_for_file  # deliberately lazy, as above

    _refuse_persona_name(args.name or name_for_file(args.path))
    entry = _registry().import_file(args.path, name=args.name, link=args.link)
    print(f"imported {entry.name} -> {entry.path} (sha256 {entry.sha256[:16]}…)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    # deliberately lazy: they load the store; off `--help`
    from assistant.models.pull import pull, pull_catalog
    from assistant.models.registry import name_for_file

    _refuse_persona_name(args.name or (name_for_file(args.file) if args.file else args.target))
    registry = _registry()
    if args.file:
        entry = pull(registry, args.target, args.file, name=args.name, revision=args.revision)
    else:
        entry = pull_catalog(registry, args.target)
    print(f"pulled {entry.name} -> {entry.path} (sha256 {entry.sha256[:16]}…)")
    return 0


def _refuse_persona_name(name: str) -> None:
    """A model must not take a persona's name (in any case): the persona would answer for it in the server."""
    if persona := personas.same_name(name, personas.names()):
        raise AssistantError(
            f"{name!r} is the name of the persona {persona!r}: a model named so would be hidden behind it "
            "(e.g. for `assistant serve` clients); pick another name with --name"
        )


def cmd_use(args: argparse.Namespace) -> int:
    where = _registry().use(args.name)
    print(f"default model: {args.name} (saved in {where})")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    print(_registry().delete(args.name))
    return 0


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def human_count(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n else "-"


def cmd_list(args: argparse.Namespace) -> int:
    config = load()
    rows = _registry(readonly=True).rows(n_ctx=config.model.n_ctx, default=config.model.default)  # writes nothing
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    header = ("", "NAME", "KIND", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "ORIGIN", "FIT")
    table = [header]
    for r in rows:
        fit = f"{r.fit} ({human_size(r.memory)})" if r.fit else f"unusable: {r.problem}"
        table.append(
            (
                "*" if r.default else "",
                r.name,
                r.kind or "-",
                r.architecture or "-",
                human_count(r.parameters),
                r.quantization or "-",
                str(r.context_length or "-"),
                human_size(r.size) if r.size else "-",
                r.origin,
                fit,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    if any(r.kind == "base" for r in rows):
        print("\nKIND base: a completion model, not tuned for chat (it continues text; answers may echo or ramble)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    # deliberately lazy: psutil stays off `--help`
    from assistant.models.gguf_info import available_memory, estimate_memory, fit_label, read_info

    path, as_json = args.path, args.json
    info = read_info(path)  # a broken file raises ModelFileError: one line, exit 1
    n_ctx = min(load().model.n_ctx, info.context_length or 4096)
    need, free = estimate_memory(info, n_ctx), available_memory()
    fit = fit_label(need, free)
    if as_json:
        print(json.dumps({**info.as_dict(), "memory": need, "available": free, "fit": fit, "n_ctx": n_ctx}))
    else:
        print(
            f"{path}: OK — {info.architecture}, {human_count(info.parameters)} parameters, {info.quantization}, "
            f"context {info.context_length}, vocabulary {info.vocab_size}, {human_size(info.size)}"
        )
        print(f"memory: needs about {human_size(need)} at n_ctx={n_ctx}, {human_size(free)} free: {fit}")
        for warning in info.warnings:
            print(f"warning: {warning}")
    if fit == "won't fit":
        raise AssistantError(f"{path}: needs about {human_size(need)} but only {human_size(free)} is free: won't fit")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from assistant.models.scan import SOURCES, scan  # deliberately lazy: it loads the store; off `--help`

    sources = [s for s in SOURCES if getattr(args, s.replace("-", "_"))]
    if not sources and not args.paths:
        sources = list(SOURCES)
    paths = [Path(p).expanduser() for p in args.paths]
    report = scan(_registry(), sources, paths, dry_run=args.dry_run, reserved=personas.names())
    if args.json:
        print(
            json.dumps(
                {
                    "models": [o.as_dict() for o in report.outcomes],
                    "notes": report.notes,
                    "seconds": round(report.seconds, 3),
                }
            )
        )
        return 0
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for o in report.outcomes:
        print(sanitize(f"{o.status:<15} {o.name:<32} {o.source:<9} {o.detail}  ({o.path})"))
    done = "would register" if args.dry_run else "registered"
    print(
        f"{len(report.outcomes)} found: {report.count(done)} {done}, {report.count('known')} already known, "
        f"{report.count('skipped')} skipped ({report.seconds:.2f} s)"
    )
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from assistant.models.registry import load_catalog  # deliberately lazy: it loads the store; off `--help`

    for e in load_catalog():
        where = f"package {e.package}" if e.package else f"{e.repo} {e.file}"
        size = f"{e.size_mb} MB" if e.size_mb else "?"
        print(f"{e.name:<28} {e.role:<8} {size:>8}  {where}\n{'':<28} {e.licence}: {e.good_at}")
    return 0
