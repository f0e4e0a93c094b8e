"""`assistant persona …`: add, list, show, edit and remove personas."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from assistant.chat import persona as personas
from assistant.chat.persona import Persona, PersonaError
from assistant.cli.common import Subparsers
from assistant.cli.model_names import model_key, opened_registry
from assistant.config import load
from assistant.models.schema import SchemaError, grammar_for, parse_schema
from assistant.text_safety import sanitize

DOCS_HELP = "files and folders every answer is grounded in (indexed when too big for the window; repeatable)"


def register(subparsers: Subparsers) -> None:
    """Add the `persona` subcommand group to the `assistant` parser."""
    group = subparsers.add_parser("persona", help="custom assistants: a system prompt, context files and a model")
    sub = group.add_subparsers(dest="persona_command", required=True)
    add = sub.add_parser("add", help="a new persona from a system prompt file and context files")
    add.add_argument("name")
    add.add_argument("--system", help="system prompt file (text or markdown)")
    add.add_argument("--context", action="append", default=[], help="context file: reference, rules, examples (repeat)")
    add.add_argument("--docs", nargs="+", action="extend", default=[], metavar="PATH", help=DOCS_HELP)
    _settings(add)
    add.set_defaults(handler=cmd_add)
    listing = sub.add_parser("list", help="the personas: prompted, distilled or stale")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="a persona's settings and full prompt")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(handler=cmd_show)
    edit = sub.add_parser("edit", help="change a persona (no options: open it in $EDITOR)")
    edit.add_argument("name")
    edit.add_argument("--system", help="replace the system prompt with this file's text")
    edit.add_argument("--context", action="append", default=None, help="replace the context files (repeat)")
    edit.add_argument("--add-context", action="append", default=[], help="add a context file (repeat)")
    edit.add_argument("--prompted", action="store_true", help="forget the distilled student: run prompted again")
    edit.add_argument("--docs", nargs="*", default=None, metavar="PATH", help="replace the documents (none: drop them)")
    _settings(edit)
    edit.set_defaults(handler=cmd_edit)
    rm = sub.add_parser("rm", help="remove a persona (its distilled model stays in `assistant models`)")
    rm.add_argument("name")
    rm.set_defaults(handler=cmd_rm)


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="base model: registry name or GGUF path (default: the default)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument(
        "--schema", default=None, help="answer with JSON following SCHEMA by default (as ask --schema; '' removes it)"
    )


def cmd_add(args: argparse.Namespace) -> int:
    registry = opened_registry()
    personas.refuse_model_name(args.name, registry.names())
    persona = personas.new(
        args.name,
        args.system,
        args.context,
        model=model_key(registry, args.model) if args.model else "",
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        docs=args.docs,
    )
    persona.schema = _schema(args.schema)
    tokens, n_ctx = check_window(persona)
    personas.save(persona)
    print(
        f"added persona {persona.name!r}: {tokens} context tokens of a {n_ctx}-token window "
        f"(use it: assistant ask --persona {persona.name} …)"
        + (f"; answers grounded in {len(persona.docs)} document path(s)" if persona.docs else "")
    )
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    before = personas.load(args.name)
    if before.student and not before.student_fingerprint:  # distilled before fingerprints: it learnt this prompt
        before.student_fingerprint = before.fingerprint()
    was = before.state
    persona = _edited(before, args)
    check_window(persona)
    personas.save(persona)
    print(f"updated persona {persona.name!r}{_state_change(was, persona)}")
    return 0


def _state_change(was: str, p: Persona) -> str:
    """What an edit did to which model answers (see ``Persona.state``), as the end of the `updated` line."""
    if p.state == was:
        return ""
    if p.state == "stale":
        return (
            f"; its student {p.student!r} was distilled from another system prompt or context, so it answers "
            f"prompted until `assistant distill persona {p.name}` runs again"
        )
    if p.state == "distilled":
        return f"; its student {p.student!r} answers again (it was distilled from this prompt)"
    return "; it answers prompted"


def cmd_rm(args: argparse.Namespace) -> int:
    personas.remove(args.name)
    print(f"removed persona {args.name!r}")
    return 0


def check_window(persona: Persona) -> tuple[int, int]:
    """(context tokens, window) for the persona's base model; refuses a context that does not fit."""
    # deliberately lazy: the registry loads the store (sqlite-utils), kept off `--help`
    from assistant.models.gguf_info import read_info

    config = load()
    path = opened_registry().resolve(persona.model or config.model.default)
    trained = read_info(path).context_length or config.model.n_ctx
    n_ctx = min(config.model.n_ctx, trained)
    tokens = personas.count_tokens(path, persona.context_text())
    personas.check_fits(persona, tokens, n_ctx)
    return tokens, n_ctx


def cmd_list(args: argparse.Namespace) -> int:
    items = personas.all_personas()
    if args.json:
        print(json.dumps([_summary(p) for p in items], indent=2, ensure_ascii=False))
        return 0
    if not items:
        print("no personas yet: assistant persona add NAME --system FILE [--context FILE …]")
    for p in items:
        how = {
            "distilled": f"distilled → {p.student}",
            "stale": f"stale → prompted on {p.model or 'the default model'}",
        }.get(p.state, f"prompted on {p.model or 'the default model'}")
        print(sanitize(f"{p.name:<20} {how:<36} {len(p.context_text()):>7} chars, {len(p.contexts)} context file(s)"))
    return 0


def _summary(p: Persona) -> dict[str, object]:
    return {
        "name": p.name,
        "model": p.model,
        "student": p.student,
        "state": p.state,
        "distilled": p.distilled,
        "context_files": [c.name for c in p.contexts],
        "context_chars": len(p.context_text()),
        "temperature": p.temperature,
        "max_tokens": p.max_tokens,
        "schema": p.schema,
        "created": p.created,
    }


def cmd_show(args: argparse.Namespace) -> int:
    p = personas.load(args.name)
    if args.json:
        print(json.dumps({**p.as_dict(), "state": p.state}, indent=2, ensure_ascii=False))
        return 0
    lines = [
        f"persona {p.name}",
        f"  base model: {p.model or '(default)'}",
        f"  student: {p.student or '(none: prompted)'}",
        f"  state: {STATES[p.state].format(p=p)}",
        *([f"  verdict: {p.student_verdict or '(none recorded: distilled before verdicts)'}"] if p.student else []),
        f"  temperature: {p.temperature if p.temperature is not None else '(default)'}",
        f"  max tokens: {p.max_tokens or '(default)'}",
        f"  schema: {json.dumps(p.schema) if p.schema else '(none)'}",
        f"  context files: {', '.join(c.name for c in p.contexts) or '(none)'}",
        "",
        p.context_text(),
    ]
    print(sanitize("\n".join(lines)))
    return 0


STATES = {
    "prompted": "prompted (its system prompt and context go before every conversation)",
    "distilled": "distilled (its student answers, with no prompt)",
    "stale": "stale (its system prompt, context or documents changed since its student was distilled: it answers "
    "prompted until `assistant distill persona {p.name}` runs again)",
}


def _edited(p: Persona, args: argparse.Namespace) -> Persona:
    options = (args.system, args.context, args.add_context, args.model, args.temperature, args.max_tokens, args.schema)
    if not args.prompted and args.docs is None and all(o in (None, []) for o in options):
        return _in_editor(p)
    if args.system:
        p.system = personas.read_text_file(args.system, "system prompt")
    if args.context is not None:
        p.contexts = personas.read_contexts(args.context)
    p.contexts += personas.read_contexts(args.add_context, p.contexts)
    if args.model is not None:
        p.model = model_key(opened_registry(), args.model) if args.model else ""
    if args.temperature is not None:
        p.temperature = args.temperature
    if args.max_tokens is not None:
        p.max_tokens = args.max_tokens
    if args.schema is not None:
        p.schema = _schema(args.schema)
    if args.docs is not None:
        p.docs = personas.doc_paths(args.docs)
    if args.prompted:
        p.forget_student()
    return personas.from_dict(p.as_dict(), f"persona {p.name!r}")


def _schema(text: str | None) -> dict[str, object] | None:
    """``--schema`` as stored: a checked JSON Schema (a file's or a string's, or the concise form) whose grammar
    llama.cpp accepts, so that no later ``ask --persona`` fails on it; '' = none."""
    if not text:
        return None
    try:
        schema = parse_schema(text)
        grammar_for(schema)
    except SchemaError as exc:
        raise PersonaError(f"--schema: {exc}") from None
    return schema


def _in_editor(p: Persona) -> Persona:
    """Edit the persona's JSON in $EDITOR (a temporary copy); the file changes only if the result is valid."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise PersonaError("no $EDITOR set: give options instead, e.g. assistant persona edit NAME --system FILE")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"{p.name}.json"
        copy.write_text(json.dumps(p.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if subprocess.call([*shlex.split(editor), str(copy)]) != 0:
            raise PersonaError("the editor failed; the persona is unchanged")
        try:
            data = json.loads(copy.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PersonaError(f"the edited persona is not valid JSON ({exc}); the persona is unchanged") from None
    edited = personas.from_dict(data, "the edited persona")
    if edited.name != p.name:
        raise PersonaError("a persona cannot be renamed by editing; the persona is unchanged")
    if edited.schema is not None and edited.schema != p.schema:
        try:
            grammar_for(edited.schema)
        except SchemaError as exc:
            raise PersonaError(f"schema: {exc}; the persona is unchanged") from None
    if edited.model and edited.model != p.model:
        edited.model = model_key(opened_registry(), edited.model)
    return edited
