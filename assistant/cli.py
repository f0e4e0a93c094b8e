"""The ``assistant`` command."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from assistant import AssistantError, __version__
from assistant.ask_options import add_arguments as add_ask_arguments
from assistant.text_safety import StreamSanitizer, json_for_terminal, sanitize

Handler = Callable[[argparse.Namespace], int]


def _open_store(readonly: bool = False):  # noqa: ANN202 - lazy imports keep `--help` and `--version` instant
    from assistant.config import database_path
    from assistant.store import Store

    return Store(database_path(), readonly=readonly)


def _text(value: str) -> str:
    """A text argument as typed: bytes that are not UTF-8 become U+FFFD instead of failing later."""
    return os.fsencode(value).decode("utf-8", errors="replace")


def _load_model(config, store, name: str | None):  # noqa: ANN001, ANN202
    from assistant.model_manager import ModelManager

    models = ModelManager(config, store)
    models.load(name or "")
    return models


# -- ask
def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.ask_options import AskOptions
    from assistant.config import load
    from assistant.session import Session

    config = load()
    persona = _persona(args)
    _override(config, args)
    options = AskOptions(args, persona)  # -f files, --schema, --show-reasoning: checked before anything loads
    prompt = " ".join(args.prompt) if args.prompt else ""
    from_stdin = not options.reads_stdin and (prompt == "-" or (not prompt and not sys.stdin.isatty()))
    if from_stdin:
        prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")  # any bytes: invalid ones become U+FFFD
    if not prompt.strip():
        raise AssistantError("nothing to ask: give a prompt, e.g. assistant ask \"What is a monad?\"")
    store = _open_store()
    conversation_id = args.conversation
    if args.continue_latest:
        conversation_id = store.latest_conversation_id()
    if conversation_id is not None:
        store.conversation(conversation_id)  # clear error if it does not exist
    models = _load_model(config, store, args.model or (persona.runtime_model() if persona else None))
    engine = models.engine
    if engine.model.info.base_model:
        from assistant.gguf_info import base_model_note

        print(f"note: {base_model_note(args.model or engine.name)}", file=sys.stderr)
    session = Session(store, models, config, conversation_id, persona=persona)
    prompt = options.prepare(prompt, engine, session, config.generation.max_tokens)
    approve = functools.partial(_approve, stdin_free=not (from_stdin or options.reads_stdin))
    stream = session.send(prompt, escalate=args.escalate, approve=approve, attachments=options.attachments)
    screen = StreamSanitizer()  # model output may hold terminal escape sequences: never pass them through
    try:
        for delta in stream:
            if not args.json:
                sys.stdout.write(screen.feed(options.shown(delta.text)))
                sys.stdout.flush()
    except KeyboardInterrupt:
        stream.close()  # finalises the stored answer as cancelled, keeping the partial text
        print("\n[stopped; the partial answer is saved]", file=sys.stderr)
        return 130
    turn = session.last
    if not args.json:
        sys.stdout.write(screen.feed(options.rest()) + "\n")
        sys.stdout.flush()
    extra = options.finish(turn.answer, turn.stats.finish_reason)
    for note in turn.notes:
        print(sanitize(f"note: {note}"), file=sys.stderr)
    if turn.escalated and not args.json:
        print(sanitize(f"note: answered by the teacher {turn.model} ({turn.route.get('reason', '')})"), file=sys.stderr)
    if turn.stats.finish_reason == "length" and not args.json:
        print(f"note: the answer was cut at the token limit ({turn.stats.completion_tokens} tokens); "
              "raise --max-tokens, or continue it in the chat UI (F5)", file=sys.stderr)
    if args.json:
        print(
            json_for_terminal(json.dumps(
                {
                    "answer": turn.answer,
                    "model": turn.model,
                    "escalated": turn.escalated,
                    "tokens": turn.stats.completion_tokens,
                    "ttft_s": round(turn.stats.ttft_s, 4),
                    "tokens_per_s": round(turn.stats.tokens_per_s, 2),
                    "conversation_id": session.conversation_id,
                    "finish_reason": turn.stats.finish_reason,
                    "notes": turn.notes,
                    "route": turn.route,
                    **extra,
                },
                ensure_ascii=False,
            ))
        )
    return 0


def _override(config, args: argparse.Namespace) -> None:  # noqa: ANN001 - an assistant.config.Config
    """--max-tokens, --temperature and --system override the config, checked as the config file is."""
    from assistant.config import validate

    for option in ("max_tokens", "temperature", "system"):
        if (value := getattr(args, option)) is not None:
            setattr(config.generation, option, value)
    validate(config, "command line")


def _approve(request, stdin_free: bool = True) -> bool | str:  # noqa: ANN001 - an assistant.remote_teacher.EscalationRequest
    """`--escalate ask`: show the exact request and read the answer from stdin (a terminal or a pipe).

    When stdin held the question itself there is nobody to ask: the reason is returned, nothing is sent.
    """
    if not stdin_free:
        return "escalation needs your approval, but stdin held the question (use a terminal, or --escalate auto)"
    print(sanitize(f"The question would be sent to {request.model}:\n{request.preview()}"), file=sys.stderr)
    print("Send it? [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        line = sys.stdin.buffer.readline().decode("utf-8", errors="replace")
    except KeyboardInterrupt:
        return False
    if not line:
        return "escalation needs your approval, but stdin ended without an answer"
    return line.strip().lower() in ("y", "yes")


# -- history
def cmd_history(args: argparse.Namespace) -> int:
    from assistant.store import export_conversation

    if getattr(args, "limit", 1) < 1:
        raise AssistantError(f"--limit must be a positive number, got {args.limit}")
    store = _open_store(readonly=True)
    if args.history_command == "list":
        for c in store.conversations(limit=args.limit):
            print(sanitize(f"{c.id:>5}  {c.updated[:19]}  {c.model or '-':<16}  {c.title or '(untitled)'}"))
    elif args.history_command == "search":
        for m in store.search(" ".join(args.query), limit=args.limit):
            print(sanitize(f"{m.conversation_id:>5}  #{m.id:<6} {m.role:<9} {m.snippet}"))
    elif args.history_command == "show":
        print(sanitize(_with_versions(args, store, export_conversation(store, args.id, "md"), "md")))
    elif args.history_command == "export":
        text = _with_versions(args, store, export_conversation(store, args.id, args.format), args.format)
        if args.output:  # the exact stored text
            from assistant.files import write_user_file

            write_user_file(Path(args.output), text, replace=args.force)
        else:  # a pipe often ends in a terminal too: JSON escapes what the sanitizer would drop, losslessly
            print(json_for_terminal(text) if args.format == "json" else sanitize(text))
    return 0


def _with_versions(args: argparse.Namespace, store, text: str, fmt: str) -> str:  # noqa: ANN001
    from assistant.branches import with_versions

    return with_versions(text, store, args.id, fmt) if args.all_branches else text


# -- chat
def cmd_chat(args: argparse.Namespace) -> int:
    try:
        from assistant.tui.app import run
    except ImportError as exc:
        raise AssistantError(f"the chat UI is not available: {exc}") from None
    return run(model=getattr(args, "model", None), persona=_persona(args))


def _persona(args: argparse.Namespace):  # noqa: ANN202 - an assistant.persona.Persona or None
    from assistant.persona import load

    return load(args.persona) if getattr(args, "persona", None) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="A private, on-device AI assistant.")
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    sub = parser.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="open the chat UI (the default)")
    chat.add_argument("--model", help="model name or GGUF path")
    chat.add_argument("--persona", help="chat as this persona (see `assistant persona list`)")
    chat.set_defaults(handler=cmd_chat)

    ask = sub.add_parser("ask", help="ask one question, stream the answer")
    ask.add_argument("prompt", nargs="*", type=_text, help="the question ('-' reads stdin)")
    ask.add_argument("--model", help="model name or GGUF path")
    ask.add_argument("--max-tokens", type=int, default=None)
    ask.add_argument("--temperature", type=float, default=None)
    ask.add_argument("--system", type=_text, default=None, help="system prompt")
    ask.add_argument("--persona", help="answer as this persona (see `assistant persona list`)")
    ask.add_argument("--json", action="store_true", help="print one JSON object: answer, model, escalated, tokens, "
                     "ttft_s, tokens_per_s, conversation_id, finish_reason, notes, route (the escalation decision)")
    ask.add_argument(
        "--escalate", choices=["never", "ask", "auto"], default=None, help="escalation to the teacher (default: config)"
    )
    ask.add_argument("-c", "--continue", dest="continue_latest", action="store_true", help="continue the latest conversation")
    ask.add_argument("--conversation", type=int, default=None, help="continue conversation ID")
    add_ask_arguments(ask)
    ask.set_defaults(handler=cmd_ask)

    history = sub.add_parser("history", help="list, search, show, export conversations")
    hsub = history.add_subparsers(dest="history_command", required=True)
    hl = hsub.add_parser("list")
    hl.add_argument("--limit", type=int, default=50)
    hs = hsub.add_parser("search")
    hs.add_argument("query", nargs="+", type=_text)
    hs.add_argument("--limit", type=int, default=20)
    hsh = hsub.add_parser("show")
    hsh.add_argument("id", type=int)
    hsh.add_argument("--all-branches", action="store_true", help="also the versions not on screen")
    he = hsub.add_parser("export")
    he.add_argument("id", type=int)
    he.add_argument("--format", choices=["md", "json"], default="md")
    he.add_argument("-o", "--output", help="write to this file (atomically, in an existing folder)")
    he.add_argument("--force", action="store_true", help="replace the output file if it exists")
    he.add_argument("--all-branches", action="store_true", help="also the versions not on screen")
    history.set_defaults(handler=cmd_history)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommand groups that live beside their own concept (models, distill)."""
    import importlib
    import importlib.util

    modules = ("assistant.models_cli", "assistant.distill_cli", "assistant.persona_cli", "assistant.serve_cli")
    return [importlib.import_module(m).register for m in modules if importlib.util.find_spec(m) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = getattr(args, "handler", cmd_chat)
    try:
        return handler(args)
    except AssistantError as exc:
        print(f"assistant: error: {' '.join(sanitize(str(exc)).split())}", file=sys.stderr)  # always one line
        return 1
    except KeyboardInterrupt:
        print("assistant: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `assistant models list | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
