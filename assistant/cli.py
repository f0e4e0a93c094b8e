"""The ``assistant`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from assistant import AssistantError, __version__
from assistant.text_safety import StreamSanitizer, sanitize

Handler = Callable[[argparse.Namespace], int]


def _open_store():  # noqa: ANN202 - lazy imports keep `--help` and `--version` instant
    from assistant.config import database_path
    from assistant.store import Store

    return Store(database_path())


def _load_engine(config, store, name: str | None):  # noqa: ANN001, ANN202
    from assistant.engine import Engine
    from assistant.registry import Registry

    path = Registry(store).resolve(name or config.model.default)
    return Engine(path, n_ctx=config.model.n_ctx, threads=config.model.threads)


# -- ask
def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.config import load
    from assistant.session import Session

    config = load()
    if args.system is not None:
        config.generation.system = args.system
    prompt = " ".join(args.prompt) if args.prompt else ""
    if prompt == "-" or (not prompt and not sys.stdin.isatty()):
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise AssistantError("nothing to ask: give a prompt, e.g. assistant ask \"What is a monad?\"")
    store = _open_store()
    conversation_id = args.conversation
    if args.continue_latest:
        conversation_id = store.latest_conversation_id()
    if conversation_id is not None:
        store.conversation(conversation_id)  # clear error if it does not exist
    engine = _load_engine(config, store, args.model)
    session = Session(store, engine, config, conversation_id)
    stream = session.send(
        prompt, max_tokens=args.max_tokens, temperature=args.temperature, escalate=args.escalate, approve=_approve
    )
    screen = StreamSanitizer()  # model output may hold terminal escape sequences: never pass them through
    try:
        for delta in stream:
            if not args.json:
                sys.stdout.write(screen.feed(delta.text))
                sys.stdout.flush()
    except KeyboardInterrupt:
        stream.close()  # finalises the stored answer as cancelled, keeping the partial text
        print("\n[stopped; the partial answer is saved]", file=sys.stderr)
        return 130
    turn = session.last
    for note in turn.notes:
        print(f"note: {note}", file=sys.stderr)
    if turn.escalated and not args.json:
        print(f"note: answered by the teacher {turn.model} ({turn.route.get('reason', '')})", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
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
                },
                ensure_ascii=False,
            )
        )
    else:
        sys.stdout.write("\n")
    return 0


def _approve(request) -> bool:  # noqa: ANN001 - an assistant.teacher.EscalationRequest
    """`--escalate ask`: show the exact request on the terminal and ask; without a terminal, decline."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"The question would be sent to {request.model}:\n{request.preview()}\nSend it? [y/N] ", end="", file=sys.stderr)
    try:
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except KeyboardInterrupt:
        return False


# -- history
def cmd_history(args: argparse.Namespace) -> int:
    from assistant.store import export_conversation

    store = _open_store()
    if args.history_command == "list":
        for c in store.conversations(limit=args.limit):
            print(sanitize(f"{c['id']:>5}  {c['updated'][:19]}  {c['model'] or '-':<16}  {c['title'] or '(untitled)'}"))
    elif args.history_command == "search":
        for m in store.search(" ".join(args.query), limit=args.limit):
            print(sanitize(f"{m['conversation_id']:>5}  #{m['id']:<6} {m['role']:<9} {m['snippet']}"))
    elif args.history_command == "show":
        print(sanitize(export_conversation(store, args.id, "md")))
    elif args.history_command == "export":
        text = export_conversation(store, args.id, args.format)
        if args.output:
            from assistant.files import atomic_write_text

            atomic_write_text(Path(args.output), text)
        else:
            print(sanitize(text) if sys.stdout.isatty() else text)
    return 0


# -- chat
def cmd_chat(args: argparse.Namespace) -> int:
    try:
        from assistant.tui.app import run
    except ImportError as exc:
        raise AssistantError(f"the chat UI is not available: {exc}") from None
    return run(model=getattr(args, "model", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="A private, on-device AI assistant.")
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    sub = parser.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="open the chat UI (the default)")
    chat.add_argument("--model", help="model name or GGUF path")
    chat.set_defaults(handler=cmd_chat)

    ask = sub.add_parser("ask", help="ask one question, stream the answer")
    ask.add_argument("prompt", nargs="*", help="the question ('-' reads stdin)")
    ask.add_argument("--model", help="model name or GGUF path")
    ask.add_argument("--max-tokens", type=int, default=None)
    ask.add_argument("--temperature", type=float, default=None)
    ask.add_argument("--system", default=None, help="system prompt")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument(
        "--escalate", choices=["never", "ask", "auto"], default=None, help="escalation to the teacher (default: config)"
    )
    ask.add_argument("-c", "--continue", dest="continue_latest", action="store_true", help="continue the latest conversation")
    ask.add_argument("--conversation", type=int, default=None, help="continue conversation ID")
    ask.set_defaults(handler=cmd_ask)

    history = sub.add_parser("history", help="list, search, show, export conversations")
    hsub = history.add_subparsers(dest="history_command", required=True)
    hl = hsub.add_parser("list")
    hl.add_argument("--limit", type=int, default=50)
    hs = hsub.add_parser("search")
    hs.add_argument("query", nargs="+")
    hs.add_argument("--limit", type=int, default=20)
    hsh = hsub.add_parser("show")
    hsh.add_argument("id", type=int)
    he = hsub.add_parser("export")
    he.add_argument("id", type=int)
    he.add_argument("--format", choices=["md", "json"], default="md")
    he.add_argument("-o", "--output", help="write to this file (atomically)")
    history.set_defaults(handler=cmd_history)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommand groups that live beside their own concept (models, distill)."""
    import importlib
    import importlib.util

    modules = ("assistant.models_cli", "assistant.distill_cli", "assistant.serve_cli")
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
